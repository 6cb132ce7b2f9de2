package reports

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/renderer"
	"github.com/olekukonko/tablewriter/tw"
)

// TextOptions controls the terminal renderer.
type TextOptions struct {
	// Color enables ANSI colour (only when the output is a terminal).
	Color bool
	// MaxRows limits long lists (findings per severity, quantizers,
	// experts, tensors, diff entries); 0 means all. Sections of more than
	// GroupThreshold quantizers or tensors are grouped by role whatever
	// MaxRows says; the uncalibrated ones are always listed by name.
	MaxRows int
	// Verbose lists info findings one by one; otherwise they are counted
	// per rule in one line (they stay complete in the JSON report).
	Verbose bool
}

// GroupThreshold is the number of quantizers, tensors or experts above
// which the text and Markdown renderers summarise a section (per role, per
// layer) instead of listing every row.
const GroupThreshold = 48

// Widths at which long text columns wrap in terminal tables.
const (
	textMessageWidth = 56
	textEngineWidth  = 44
)

// RenderText writes the human-readable terminal form of a report: a header
// (model, recipe, run), one table per non-empty section and a verdict
// line. It only uses ASCII outside the table borders, and colour only when
// opt.Color is set.
func RenderText(w io.Writer, r *Report, opt TextOptions) error {
	if r == nil {
		return fmt.Errorf("render text: nil report")
	}
	t := &textRenderer{w: w, opt: opt, r: r}
	t.header()
	t.findings()
	t.diff()
	t.uncalibrated()
	t.quantizers()
	t.experts()
	t.expertsWithoutTokens()
	t.inputAmax()
	t.dequant()
	t.tensors()
	t.footer()
	if t.err != nil {
		return fmt.Errorf("render text: %w", t.err)
	}
	return nil
}

type textRenderer struct {
	w   io.Writer
	opt TextOptions
	r   *Report
	err error
}

const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiDim    = "\x1b[2m"
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiCyan   = "\x1b[36m"
)

func (t *textRenderer) paint(code, s string) string {
	if !t.opt.Color || s == "" {
		return s
	}
	return code + s + ansiReset
}

func (t *textRenderer) printf(format string, args ...any) {
	if t.err != nil {
		return
	}
	_, t.err = fmt.Fprintf(t.w, format, args...)
}

func (t *textRenderer) severity(s Severity) string {
	switch s {
	case SeverityError:
		return t.paint(ansiRed+ansiBold, string(s))
	case SeverityWarning:
		return t.paint(ansiYellow, string(s))
	}
	return t.paint(ansiCyan, string(s))
}

// title starts a section: a blank line and the bold title.
func (t *textRenderer) title(color, format string, args ...any) {
	code := ansiBold
	if color != "" {
		code = color + ansiBold
	}
	t.printf("\n%s\n", t.paint(code, fmt.Sprintf(format, args...)))
}

func (t *textRenderer) note(format string, args ...any) {
	t.printf("%s\n", t.paint(ansiDim, fmt.Sprintf(format, args...)))
}

// column describes one table column.
type column struct {
	name  string
	right bool // right-aligned (numbers)
	wrap  int  // wrap width; 0: never wrap
}

// table renders rows under the header, at most MaxRows of them.
func (t *textRenderer) table(cols []column, rows [][]string) {
	if t.err != nil || len(rows) == 0 {
		return
	}
	omitted := 0
	if t.opt.MaxRows > 0 && len(rows) > t.opt.MaxRows {
		omitted = len(rows) - t.opt.MaxRows
		rows = rows[:t.opt.MaxRows]
	}
	align := make([]tw.Align, len(cols))
	header := make([]any, len(cols))
	widths := tw.NewMapper[int, int]()
	for i, c := range cols {
		align[i] = tw.AlignLeft
		if c.right {
			align[i] = tw.AlignRight
		}
		header[i] = c.name
		if c.wrap > 0 {
			widths.Set(i, c.wrap)
		}
	}
	tb := tablewriter.NewTable(t.w,
		tablewriter.WithRenderer(renderer.NewBlueprint()),
		tablewriter.WithHeaderAutoFormat(tw.Off),
		tablewriter.WithHeaderAlignment(tw.AlignLeft),
		tablewriter.WithRowConfig(tw.CellConfig{
			Formatting:   tw.CellFormatting{AutoWrap: tw.WrapNormal},
			Padding:      tw.CellPadding{Global: tw.PaddingDefault},
			Alignment:    tw.CellAlignment{Global: tw.AlignLeft, PerColumn: align},
			ColMaxWidths: tw.CellWidth{PerColumn: widths},
		}),
	)
	tb.Header(header...)
	for _, row := range rows {
		cells := make([]any, len(row))
		for i, c := range row {
			cells[i] = c
		}
		if err := tb.Append(cells...); err != nil {
			t.err = err
			return
		}
	}
	if err := tb.Render(); err != nil {
		t.err = err
		return
	}
	if omitted > 0 {
		t.note("... %d more rows not shown", omitted)
	}
}

func (t *textRenderer) header() {
	r := t.r
	t.printf("%s\n", t.paint(ansiBold, fmt.Sprintf("ptqgate %s (%s %s)", kindTitle(r), r.Tool.Name, r.Tool.Version)))
	kv := func(k, v string) { t.printf("  %-8s %s\n", k, v) }
	if m := r.Model; m != nil {
		path := m.Path
		if path == "" {
			path = "-"
		}
		kv("model", path)
		if l := modelLine(m); l != "" {
			kv("", l)
		}
	}
	if rc := r.Recipe; rc != nil {
		kv("recipe", recipeLine(rc))
		if len(rc.UnmatchedPatterns) > 0 {
			kv("", t.paint(ansiRed, "unmatched patterns: "+strings.Join(rc.UnmatchedPatterns, ", ")))
		}
		if len(rc.Unconfigured) > 0 {
			kv("", fmt.Sprintf("unconfigured: %s", listSome(rc.Unconfigured, 5)))
		}
	}
	if facts := runFacts(r.Run); len(facts) > 0 {
		parts := make([]string, 0, len(facts))
		for _, f := range facts {
			if f[0] == "command" || strings.HasPrefix(f[0], "path ") {
				continue
			}
			parts = append(parts, f[0]+" "+f[1])
		}
		if len(parts) > 0 {
			kv("run", strings.Join(parts, ", "))
		}
	}
}

// listSome writes up to n items and the count of the others.
func listSome(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:n], ", "), len(items)-n)
}

func (t *textRenderer) findings() {
	r := t.r
	shown := displayFindings(r)
	if len(shown) == 0 {
		return
	}
	results := checkResults(r)
	if len(shown) > 10 && len(results) > 1 {
		var rows [][]string
		for _, c := range results {
			if len(c.Findings) == 0 {
				continue
			}
			rows = append(rows, []string{c.Rule, c.Target, countCell(c.count(SeverityError)), countCell(c.count(SeverityWarning)), countCell(c.count(SeverityInfo))})
		}
		t.title("", "findings by rule and target (%d)", len(rows))
		t.table([]column{{name: "rule"}, {name: "target"}, {name: "errors", right: true}, {name: "warnings", right: true}, {name: "infos", right: true}}, rows)
	}
	groups := findingsBySeverity(shown)
	for _, s := range severities {
		fs := groups[s]
		if len(fs) == 0 {
			continue
		}
		if s == SeverityInfo && !t.opt.Verbose {
			t.title(ansiCyan, "infos (%d): %s", len(fs), ruleCounts(fs))
			t.note("listed one by one with --verbose, and in the JSON report")
			continue
		}
		engine := false
		for _, f := range fs {
			engine = engine || f.EngineBehavior != ""
		}
		cols := []column{{name: "rule"}, {name: "target"}, {name: "tensor / module"}, {name: "message", wrap: textMessageWidth}}
		if engine {
			cols = append(cols, column{name: "engine behavior", wrap: textEngineWidth})
		}
		rows := make([][]string, 0, len(fs))
		for _, f := range fs {
			row := []string{f.Rule, f.Target, f.where(), f.Message}
			if engine {
				row = append(row, f.EngineBehavior)
			}
			rows = append(rows, row)
		}
		color := map[Severity]string{SeverityError: ansiRed, SeverityWarning: ansiYellow, SeverityInfo: ansiCyan}[s]
		t.title(color, "%ss (%d)", s, len(fs))
		t.table(cols, rows)
	}
}

// ruleCounts summarises findings as "rule (n), rule (m)" in first-seen order.
func ruleCounts(fs []Finding) string {
	counts := map[string]int{}
	var rules []string
	for _, f := range fs {
		if counts[f.Rule] == 0 {
			rules = append(rules, f.Rule)
		}
		counts[f.Rule]++
	}
	parts := make([]string, len(rules))
	for i, r := range rules {
		parts[i] = fmt.Sprintf("%s (%d)", r, counts[r])
	}
	return strings.Join(parts, ", ")
}

func countCell(n int) string {
	if n == 0 {
		return "-"
	}
	return strconv.Itoa(n)
}

func (t *textRenderer) diff() {
	if len(t.r.Diff) == 0 {
		return
	}
	var regress, other [][]string
	for _, d := range sortedDiff(t.r.Diff) {
		row := []string{d.What, d.Name, diffValue(d, d.Baseline), diffValue(d, d.New)}
		if d.Regression {
			regress = append(regress, row)
			continue
		}
		change := d.Change
		if change == "" {
			change = ChangeChanged
		}
		if change == ChangeImprovement {
			change = t.paint(ansiGreen, change)
		}
		other = append(other, append(row, change))
	}
	cols := []column{{name: "what"}, {name: "name"}, {name: "baseline", wrap: 40}, {name: "new", wrap: 40}}
	if len(regress) > 0 {
		t.title(ansiRed, "regressions (%d)", len(regress))
		t.table(cols, regress)
	}
	if len(other) > 0 {
		t.title("", "improvements and other changes (%d)", len(other))
		t.table(append(cols, column{name: "change"}), other)
	}
}

func (t *textRenderer) uncalibrated() {
	us := uncalibratedQuantizers(t.r)
	if len(us) == 0 {
		return
	}
	rows := make([][]string, 0, len(us))
	for _, u := range us {
		if !u.Known {
			rows = append(rows, []string{u.Name, "-", "-", "-"})
			continue
		}
		rows = append(rows, []string{u.Name, u.Format, t.paint(ansiRed, fmtAmax(u.Amax)), strconv.FormatInt(u.Calls, 10)})
	}
	t.title(ansiRed, "uncalibrated quantizers (%d)", len(rows))
	t.table([]column{{name: "quantizer"}, {name: "format"}, {name: "amax", right: true}, {name: "calls", right: true}}, rows)
}

func (t *textRenderer) quantizers() {
	qs := t.r.Quantizers
	if len(qs) == 0 {
		return
	}
	if len(qs) > GroupThreshold {
		gs := groupQuantizers(qs)
		rows := make([][]string, 0, len(gs))
		for _, g := range gs {
			cal := fmt.Sprintf("%d/%d", g.Calibrated, g.Enabled)
			if g.Calibrated < g.Enabled {
				cal = t.paint(ansiRed, cal)
			}
			calls := "-"
			if g.Enabled > 0 {
				calls = fmtRange(g.CallsMin, g.CallsMax)
			}
			rows = append(rows, []string{g.Role, strconv.Itoa(g.Count), layersCell(g.Layers), strings.Join(g.Formats, ", "),
				fmt.Sprintf("%d/%d", g.Enabled, g.Count), cal, fmtFloatRange(g.AmaxMin, g.AmaxMax), calls})
		}
		t.title("", "quantizers: %d in %s", len(qs), plural(len(rows), "role", "roles"))
		t.table([]column{{name: "role"}, {name: "count", right: true}, {name: "layers"}, {name: "format"}, {name: "enabled", right: true},
			{name: "calibrated", right: true}, {name: "amax", right: true}, {name: "calls", right: true}}, rows)
		return
	}
	rows := make([][]string, 0, len(qs))
	for _, q := range sortedQuantizers(qs) {
		amax := fmtAmax(q.Amax)
		if q.Enabled && !q.Amax.Valid() {
			amax = t.paint(ansiRed, amax)
		}
		enabled := "no"
		if q.Enabled {
			enabled = "yes"
		}
		rows = append(rows, []string{q.Name, enabled, q.Format, amax, strconv.FormatInt(q.Calls, 10), optIntPtr(q.Axis), optIntPtr(q.BlockSize)})
	}
	t.title("", "quantizers (%d)", len(rows))
	t.table([]column{{name: "quantizer"}, {name: "enabled"}, {name: "format"}, {name: "amax", right: true}, {name: "calls", right: true},
		{name: "axis", right: true}, {name: "block", right: true}}, rows)
}

func optIntPtr(p *int) string {
	if p == nil {
		return "-"
	}
	return strconv.Itoa(*p)
}

func layersCell(ls []int) string {
	if len(ls) == 0 {
		return "-"
	}
	return intRanges(ls)
}

func (t *textRenderer) experts() {
	r := t.r
	if len(r.Experts) == 0 {
		return
	}
	layers := summarizeLayers(r)
	zero := func(n int) string {
		if n == 0 {
			return "0"
		}
		return t.paint(ansiYellow, strconv.Itoa(n))
	}
	rows := make([][]string, 0, len(layers))
	for _, l := range layers {
		silent := strconv.Itoa(l.Silent)
		if l.Silent > 0 {
			silent = t.paint(ansiRed, silent)
		}
		rows = append(rows, []string{strconv.Itoa(l.Layer), strconv.Itoa(l.Experts), strconv.FormatInt(l.Tokens, 10),
			fmt.Sprintf("%d / %d / %d", l.TokensMin, l.TokensMedian, l.TokensMax), zero(l.NoTokens),
			fmtRange(l.GateUpMin, l.GateUpMax), fmtRange(l.DownMin, l.DownMax), silent})
	}
	t.title("", "experts per layer (%d layers)", len(rows))
	t.table([]column{{name: "layer", right: true}, {name: "experts", right: true}, {name: "tokens", right: true},
		{name: "min / median / max", right: true}, {name: "no tokens", right: true}, {name: "gate_up calls", right: true},
		{name: "down calls", right: true}, {name: "routed, no calls", right: true}}, rows)

	if silent := silentExperts(r); len(silent) > 0 {
		refs := make([]ExpertRef, len(silent))
		for i, e := range silent {
			refs[i] = ExpertRef{Layer: e.Layer, Expert: e.Expert}
		}
		t.title(ansiRed, "experts that received tokens but whose hooks never fired: %s", expertCount(refs))
		t.expertRefs(refs)
	}
	if len(r.Experts) <= GroupThreshold {
		es := append([]Expert(nil), r.Experts...)
		sortExperts(es)
		t.title("", "experts (%d)", len(es))
		t.expertTable(es)
		return
	}
	most, least := routingExtremes(r, 5)
	t.title("", "most routed experts")
	t.expertTable(most)
	if len(least) > 0 {
		t.title("", "least routed experts with tokens")
		t.expertTable(least)
	}
}

func (t *textRenderer) expertTable(es []Expert) {
	all := false
	for _, e := range es {
		all = all || e.AllExpertsRows != nil
	}
	cols := []column{{name: "layer", right: true}, {name: "expert", right: true}, {name: "tokens", right: true},
		{name: "gate_up calls", right: true}, {name: "down calls", right: true}}
	if all {
		cols = append(cols, column{name: "all-experts rows", right: true})
	}
	num := func(n int64) string {
		if n == 0 {
			return t.paint(ansiYellow, "0")
		}
		return strconv.FormatInt(n, 10)
	}
	rows := make([][]string, 0, len(es))
	for _, e := range es {
		row := []string{strconv.Itoa(e.Layer), strconv.Itoa(e.Expert), num(e.Tokens), num(e.GateUpCalls), num(e.DownCalls)}
		if all {
			row = append(row, optInt(e.AllExpertsRows))
		}
		rows = append(rows, row)
	}
	t.table(cols, rows)
}

func (t *textRenderer) expertsWithoutTokens() {
	refs := t.r.ExpertsWithoutTokens
	if len(refs) == 0 {
		return
	}
	t.title(ansiYellow, "experts without tokens: %s", expertCount(refs))
	t.expertRefs(refs)
}

// expertRefs lists experts compactly: one row per layer with the expert
// indexes as ranges.
func (t *textRenderer) expertRefs(refs []ExpertRef) {
	layers, experts := expertsByLayer(refs)
	rows := make([][]string, 0, len(layers))
	for _, l := range layers {
		rows = append(rows, []string{strconv.Itoa(l), strconv.Itoa(len(experts[l])), intRanges(experts[l])})
	}
	t.table([]column{{name: "layer", right: true}, {name: "count", right: true}, {name: "experts", wrap: 60}}, rows)
}

func (t *textRenderer) inputAmax() {
	ss := perExpertAmax(t.r)
	if len(ss) == 0 {
		return
	}
	rows := make([][]string, 0, len(ss))
	for _, s := range ss {
		shared := s.sharedText()
		if s.SharedFound && !s.SharedAmax.Valid() {
			shared = t.paint(ansiRed, shared)
		}
		rows = append(rows, []string{s.Quantizer, strconv.Itoa(len(s.Values)), fmtFloat(s.Min), fmtFloat(s.Median), fmtFloat(s.Max), s.spreadText(), shared})
	}
	t.title("", "per-expert input amax (%d shared input quantizers)", len(rows))
	t.table([]column{{name: "shared input quantizer"}, {name: "experts", right: true}, {name: "min", right: true}, {name: "median", right: true},
		{name: "max", right: true}, {name: "max/min", right: true}, {name: "shared amax", right: true}}, rows)
}

func (t *textRenderer) dequant() {
	ds := sortedDequant(t.r.DequantError)
	if len(ds) == 0 {
		return
	}
	rows := make([][]string, 0, len(ds))
	for _, d := range ds {
		rows = append(rows, []string{d.Module, fmtFloat(float64(d.RelativeError)), fmtFloat(float64(d.MaxAbsError))})
	}
	t.title("", "dequantization error, largest first (%d modules)", len(rows))
	t.table([]column{{name: "module"}, {name: "relative error", right: true}, {name: "max abs error", right: true}}, rows)
}

func (t *textRenderer) tensors() {
	ts := t.r.Tensors
	if len(ts) == 0 {
		return
	}
	if len(ts) > GroupThreshold {
		gs := groupTensors(ts)
		rows := make([][]string, 0, len(gs))
		for _, g := range gs {
			rows = append(rows, []string{g.Role, strconv.Itoa(g.Count), strings.Join(g.DTypes, ", "), g.Shape, fmtBytes(g.Bytes),
				optFloat(g.Min), optFloat(g.Max), t.badCount(g.NaN), t.badCount(g.Inf)})
		}
		t.title("", "tensors: %d in %s", len(ts), plural(len(rows), "role", "roles"))
		t.table([]column{{name: "role"}, {name: "count", right: true}, {name: "dtype"}, {name: "shape"}, {name: "bytes", right: true},
			{name: "min", right: true}, {name: "max", right: true}, {name: "nan", right: true}, {name: "inf", right: true}}, rows)
		return
	}
	rows := make([][]string, 0, len(ts))
	for _, x := range sortedTensors(ts) {
		rows = append(rows, []string{x.Name, x.DType, shapeString(x.Shape), strconv.FormatInt(x.Bytes, 10), x.File,
			optFloat(x.Min), optFloat(x.Max), t.badCount(x.NaN), t.badCount(x.Inf)})
	}
	t.title("", "tensors (%d)", len(rows))
	t.table([]column{{name: "tensor"}, {name: "dtype"}, {name: "shape"}, {name: "bytes", right: true}, {name: "file"},
		{name: "min", right: true}, {name: "max", right: true}, {name: "nan", right: true}, {name: "inf", right: true}}, rows)
}

func (t *textRenderer) badCount(n *int64) string {
	if n != nil && *n > 0 {
		return t.paint(ansiRed, optInt(n))
	}
	return optInt(n)
}

func (t *textRenderer) footer() {
	r := t.r
	t.printf("\n")
	if len(r.Checks) > 0 {
		c := tallyChecks(r)
		t.printf("checks: %s\n", c.describe(strings.Join(c.Targets, ", ")))
	}
	verdict := t.paint(ansiGreen+ansiBold, "PASSED")
	if !passed(r) {
		verdict = t.paint(ansiRed+ansiBold, "FAILED")
	}
	t.printf("%s: %s\n", verdict, summaryLine(r))
}
