package reports

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Number formatting shared by the renderers. Everything here is
// deterministic and locale-free.

// fmtFloat formats a value with 4 significant digits; non-finite values
// use the report's spellings "NaN", "+Inf" and "-Inf".
func fmtFloat(v float64) string { return fmtFloatPrec(v, 4) }

func fmtFloatPrec(v float64, prec int) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	}
	if v == math.Trunc(v) && math.Abs(v) < 1e7 {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'g', prec, 64)
}

// fmtAmax formats a quantizer's amax: "null" when never calibrated, the
// value for a per-tensor amax, "max X (N values)" for a vector.
func fmtAmax(a *Amax) string {
	switch {
	case a == nil:
		return "null"
	case len(a.Values) == 0:
		return "[]"
	case a.PerTensor || len(a.Values) == 1:
		return fmtFloat(float64(a.Values[0]))
	}
	bad := 0
	for _, v := range a.Values {
		x := float64(v)
		if math.IsNaN(x) || math.IsInf(x, 0) || x <= 0 {
			bad++
		}
	}
	s := fmt.Sprintf("max %s (%d values)", fmtFloat(a.Max()), len(a.Values))
	if bad > 0 {
		s += fmt.Sprintf(", %d invalid", bad)
	}
	return s
}

func optFloat(f *Float) string {
	if f == nil {
		return "-"
	}
	return fmtFloat(float64(*f))
}

func optInt(i *int64) string {
	if i == nil {
		return "-"
	}
	return strconv.FormatInt(*i, 10)
}

func shapeString(s []int64) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = strconv.FormatInt(d, 10)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// fmtBytes formats a byte count with binary units.
func fmtBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return strconv.FormatFloat(float64(n)/float64(div), 'f', 1, 64) + " " + string("KMGTP"[exp]) + "iB"
}

// fmtRange writes "a" when a == b, else "a-b".
func fmtRange(a, b int64) string {
	if a == b {
		return strconv.FormatInt(a, 10)
	}
	return strconv.FormatInt(a, 10) + "-" + strconv.FormatInt(b, 10)
}

func fmtFloatRange(a, b float64) string {
	if math.IsNaN(a) && math.IsNaN(b) {
		return "-"
	}
	if a == b {
		return fmtFloat(a)
	}
	return fmtFloat(a) + " - " + fmtFloat(b)
}

// fmtValue formats a diff entry's baseline or new value, whatever JSON
// decoded it to.
func fmtValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "-"
	case string:
		return x
	case Float:
		return fmtFloat(float64(x))
	case *Float:
		return optFloat(x)
	case float64:
		return fmtFloat(x)
	case float32:
		return fmtFloat(float64(x))
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case bool:
		return strconv.FormatBool(x)
	case *Amax:
		return fmtAmax(x)
	case fmt.Stringer:
		return x.String()
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// plural writes "1 error", "2 errors".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// summaryLine is the one-line verdict every format ends with.
func summaryLine(r *Report) string {
	s := fmt.Sprintf("%s, %s, %s", plural(r.Summary.Errors, "error", "errors"),
		plural(r.Summary.Warnings, "warning", "warnings"), plural(r.Summary.Infos, "info", "infos"))
	if r.Kind == KindDiff {
		c := countDiff(r.Diff)
		s = fmt.Sprintf("%s, %s, %s; %s", plural(c.Regressions, "regression", "regressions"),
			plural(c.Improvements, "improvement", "improvements"), plural(c.Other, "other change", "other changes"), s)
	}
	return s
}

// passed reports the verdict: no error findings (and, for a diff, no
// regression), which is what the exit code says.
func passed(r *Report) bool {
	if r.Summary.Errors > 0 || !r.Clean() {
		return false
	}
	for _, d := range r.Diff {
		if d.Regression {
			return false
		}
	}
	return true
}

// kindTitle names the report in headings.
func kindTitle(r *Report) string {
	if r.Kind == "" {
		return "report"
	}
	return string(r.Kind) + " report"
}

// modelLine describes the model in one line.
func modelLine(m *Model) string {
	var parts []string
	for _, s := range []string{m.Architecture, m.DType} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	if m.Layers > 0 || m.Experts > 0 {
		parts = append(parts, fmt.Sprintf("%s x %s", plural(m.Layers, "layer", "layers"), plural(m.Experts, "expert", "experts")))
	}
	if m.TopK > 0 {
		parts = append(parts, fmt.Sprintf("top-%d", m.TopK))
	}
	return strings.Join(parts, ", ")
}

// recipeLine describes the recipe in one line.
func recipeLine(rc *Recipe) string {
	var parts []string
	if rc.Source != "" {
		parts = append(parts, rc.Source)
	}
	if rc.Algorithm != "" {
		parts = append(parts, "algorithm "+rc.Algorithm)
	}
	if len(parts) == 0 {
		return rc.Name
	}
	return rc.Name + " (" + strings.Join(parts, ", ") + ")"
}

// runFacts lists the run section as ordered key/value pairs.
func runFacts(run *Run) [][2]string {
	if run == nil {
		return nil
	}
	var kv [][2]string
	add := func(k, v string) {
		if v != "" {
			kv = append(kv, [2]string{k, v})
		}
	}
	add("started", run.StartedAt)
	if run.DurationSeconds > 0 {
		add("duration", strconv.FormatFloat(run.DurationSeconds, 'f', 2, 64)+" s")
	}
	add("host", run.Host)
	add("device", run.Device)
	if len(run.Command) > 0 {
		add("command", strings.Join(run.Command, " "))
	}
	for _, k := range sortedKeys(run.Paths) {
		add("path "+k, run.Paths[k])
	}
	for _, k := range sortedKeys(run.Extra) {
		add(k, fmtValue(run.Extra[k]))
	}
	return kv
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, naturalCompare)
	return keys
}
