package reports

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// This file holds the views every renderer shares: names grouped by role,
// the layer × expert grid, per-expert input amax statistics and the
// (rule, target) checks behind JUnit test cases. Renderers only format.

// NamePattern replaces every all-digit component of a dotted name by "*",
// so "model.layers.3.mlp.experts.gate_up_proj_weight_quantizers.17"
// becomes "model.layers.*.mlp.experts.gate_up_proj_weight_quantizers.*":
// the role of a quantizer or tensor, independent of layer and expert.
func NamePattern(name string) string {
	parts := strings.Split(name, ".")
	for i, p := range parts {
		if isDigits(p) {
			parts[i] = "*"
		}
	}
	return strings.Join(parts, ".")
}

// LayerOf returns the decoder layer index in a dotted name (the component
// after "layers"), or -1 when the name has none.
func LayerOf(name string) int {
	parts := strings.Split(name, ".")
	for i := 0; i+1 < len(parts); i++ {
		if parts[i] == "layers" && isDigits(parts[i+1]) {
			if n, err := strconv.Atoi(parts[i+1]); err == nil {
				return n
			}
		}
	}
	return -1
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// naturalCompare orders strings with embedded numbers by value, so
// "layers.2" sorts before "layers.10".
func naturalCompare(a, b string) int {
	tie := 0 // numbers equal in value but spelled differently ("1", "01")
	for a != "" && b != "" {
		ca, cb := a[0], b[0]
		if isDigit(ca) && isDigit(cb) {
			na, ra := splitNumber(a)
			nb, rb := splitNumber(b)
			ta, tb := strings.TrimLeft(na, "0"), strings.TrimLeft(nb, "0")
			if c := cmp.Compare(len(ta), len(tb)); c != 0 {
				return c
			}
			if c := strings.Compare(ta, tb); c != 0 {
				return c
			}
			if tie == 0 {
				tie = cmp.Compare(len(na), len(nb))
			}
			a, b = ra, rb
			continue
		}
		if ca != cb {
			return cmp.Compare(ca, cb)
		}
		a, b = a[1:], b[1:]
	}
	return cmp.Or(cmp.Compare(len(a), len(b)), tie)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func splitNumber(s string) (num, rest string) {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

// severityRank orders severities: errors first.
func severityRank(s Severity) int {
	switch s {
	case SeverityError:
		return 0
	case SeverityWarning:
		return 1
	}
	return 2
}

// sortedFindings returns the findings ordered by severity, rule, target,
// tensor, module and message without modifying the report.
func sortedFindings(fs []Finding) []Finding {
	out := slices.Clone(fs)
	slices.SortStableFunc(out, func(a, b Finding) int {
		return cmp.Or(
			cmp.Compare(severityRank(a.Severity), severityRank(b.Severity)),
			naturalCompare(a.Rule, b.Rule),
			compareTargets(a.Target, b.Target),
			naturalCompare(a.Tensor, b.Tensor),
			naturalCompare(a.Module, b.Module),
			strings.Compare(a.Message, b.Message))
	})
	return out
}

// compareTargets orders engine targets with "any" first.
func compareTargets(a, b string) int {
	if a == b {
		return 0
	}
	if a == TargetAny {
		return -1
	}
	if b == TargetAny {
		return 1
	}
	return naturalCompare(a, b)
}

// findingsBySeverity splits sorted findings into errors, warnings, infos.
func findingsBySeverity(fs []Finding) map[Severity][]Finding {
	m := map[Severity][]Finding{}
	for _, f := range sortedFindings(fs) {
		s := f.Severity
		if s != SeverityError && s != SeverityWarning {
			s = SeverityInfo
		}
		m[s] = append(m[s], f)
	}
	return m
}

// displayFindings returns the findings the renderers list. A diff
// report's own regression findings (rules "diff/...") only mirror its
// regression entries, which are shown instead.
func displayFindings(r *Report) []Finding {
	if r.Kind != KindDiff {
		return r.Findings
	}
	var out []Finding
	for _, f := range r.Findings {
		if !strings.HasPrefix(f.Rule, "diff/") {
			out = append(out, f)
		}
	}
	return out
}

// severities in display order.
var severities = []Severity{SeverityError, SeverityWarning, SeverityInfo}

// where names the place a finding is about: its tensor, else its module.
func (f Finding) where() string {
	switch {
	case f.Tensor != "" && f.Module != "" && !strings.HasPrefix(f.Tensor, f.Module):
		return f.Tensor + " (" + f.Module + ")"
	case f.Tensor != "":
		return f.Tensor
	}
	return f.Module
}

// caseResult is one evaluated (rule, target) pair with its findings: a
// JUnit test case and a cell of the rule × target matrix.
type caseResult struct {
	Rule, Target, Description string
	Findings                  []Finding
	Evaluated                 bool // listed in Report.Checks
}

// worst returns the most severe severity among the findings ("" if none).
func (c caseResult) worst() Severity {
	var w Severity
	for _, f := range c.Findings {
		if w == "" || severityRank(f.Severity) < severityRank(w) {
			w = f.Severity
		}
	}
	return w
}

func (c caseResult) count(s Severity) int {
	n := 0
	for _, f := range c.Findings {
		if f.Severity == s || (s == SeverityInfo && severityRank(f.Severity) == 2) {
			n++
		}
	}
	return n
}

// checkResults returns one result per evaluated (rule, target) pair: the
// report's Checks when recorded, plus any (rule, target) that has findings
// but no check, so no finding is ever dropped. Results are ordered by
// target, then rule.
func checkResults(r *Report) []caseResult {
	type key struct{ rule, target string }
	idx := map[key]int{}
	var out []caseResult
	for _, c := range r.Checks {
		k := key{c.Rule, c.Target}
		if _, ok := idx[k]; ok {
			continue
		}
		idx[k] = len(out)
		out = append(out, caseResult{Rule: c.Rule, Target: c.Target, Description: c.Description, Evaluated: true})
	}
	for _, f := range sortedFindings(r.Findings) {
		k := key{f.Rule, f.Target}
		i, ok := idx[k]
		if !ok {
			i = len(out)
			idx[k] = i
			out = append(out, caseResult{Rule: f.Rule, Target: f.Target})
		}
		out[i].Findings = append(out[i].Findings, f)
	}
	slices.SortStableFunc(out, func(a, b caseResult) int {
		return cmp.Or(compareTargets(a.Target, b.Target), naturalCompare(a.Rule, b.Rule))
	})
	return out
}

// describe writes "9 evaluated on a, b: 4 passed, 3 with warnings or
// infos, 2 failed".
func (t checkTally) describe(targets string) string {
	s := fmt.Sprintf("%d evaluated on %s: %d passed", t.Checks, targets, t.Passed)
	if t.Noted > 0 {
		s += fmt.Sprintf(", %d with warnings or infos", t.Noted)
	}
	return s + fmt.Sprintf(", %d failed", t.Failed)
}

// checkTally counts evaluated checks for the summary lines.
type checkTally struct {
	Checks  int
	Passed  int // no findings
	Noted   int // warnings or infos, no error
	Failed  int // at least one error
	Targets []string
}

func tallyChecks(r *Report) checkTally {
	var t checkTally
	seen := map[string]bool{}
	for _, c := range checkResults(r) {
		t.Checks++
		switch {
		case c.count(SeverityError) > 0:
			t.Failed++
		case len(c.Findings) == 0:
			t.Passed++
		default:
			t.Noted++
		}
		if !seen[c.Target] {
			seen[c.Target] = true
			t.Targets = append(t.Targets, c.Target)
		}
	}
	slices.SortFunc(t.Targets, compareTargets)
	return t
}

// quantizerGroup summarises the quantizers of one role (NamePattern).
type quantizerGroup struct {
	Role                string
	Count, Enabled      int
	Calibrated          int // enabled with a valid amax
	Formats             []string
	Layers              []int
	AmaxMin, AmaxMax    float64 // over enabled, calibrated quantizers; NaN if none
	CallsMin, CallsMax  int64   // over enabled quantizers
	hasCalls, firstAmax bool
}

// groupQuantizers groups quantizers by role, in natural order of roles.
func groupQuantizers(qs []Quantizer) []quantizerGroup {
	idx := map[string]int{}
	var gs []quantizerGroup
	for _, q := range qs {
		role := NamePattern(q.Name)
		i, ok := idx[role]
		if !ok {
			i = len(gs)
			idx[role] = i
			gs = append(gs, quantizerGroup{Role: role, AmaxMin: math.NaN(), AmaxMax: math.NaN()})
		}
		g := &gs[i]
		g.Count++
		if f := q.Format; f != "" && !slices.Contains(g.Formats, f) {
			g.Formats = append(g.Formats, f)
		}
		if l := LayerOf(q.Name); l >= 0 && !slices.Contains(g.Layers, l) {
			g.Layers = append(g.Layers, l)
		}
		if !q.Enabled {
			continue
		}
		g.Enabled++
		if !g.hasCalls || q.Calls < g.CallsMin {
			g.CallsMin = q.Calls
		}
		if !g.hasCalls || q.Calls > g.CallsMax {
			g.CallsMax = q.Calls
		}
		g.hasCalls = true
		if q.Amax.Valid() {
			g.Calibrated++
			m := q.Amax.Max()
			if !g.firstAmax || m < g.AmaxMin {
				g.AmaxMin = m
			}
			if !g.firstAmax || m > g.AmaxMax {
				g.AmaxMax = m
			}
			g.firstAmax = true
		}
	}
	for i := range gs {
		slices.Sort(gs[i].Formats)
		slices.Sort(gs[i].Layers)
	}
	slices.SortStableFunc(gs, func(a, b quantizerGroup) int { return naturalCompare(a.Role, b.Role) })
	return gs
}

// uncalibratedQuantizer is an enabled quantizer without a valid amax, or
// a name listed in Report.Uncalibrated.
type uncalibratedQuantizer struct {
	Name   string
	Known  bool // found in Quantizers
	Format string
	Amax   *Amax
	Calls  int64
}

// uncalibratedQuantizers lists Report.Uncalibrated plus every enabled
// quantizer whose amax is missing or invalid, in natural order.
func uncalibratedQuantizers(r *Report) []uncalibratedQuantizer {
	byName := map[string]Quantizer{}
	for _, q := range r.Quantizers {
		byName[q.Name] = q
	}
	seen := map[string]bool{}
	var out []uncalibratedQuantizer
	add := func(name string) {
		if seen[name] {
			return
		}
		seen[name] = true
		u := uncalibratedQuantizer{Name: name}
		if q, ok := byName[name]; ok {
			u.Known, u.Format, u.Amax, u.Calls = true, q.Format, q.Amax, q.Calls
		}
		out = append(out, u)
	}
	for _, n := range r.Uncalibrated {
		add(n)
	}
	for _, q := range r.Quantizers {
		if q.Enabled && !q.Amax.Valid() {
			add(q.Name)
		}
	}
	slices.SortFunc(out, func(a, b uncalibratedQuantizer) int { return naturalCompare(a.Name, b.Name) })
	return out
}

// tensorGroup summarises the tensors of one role.
type tensorGroup struct {
	Role     string
	Count    int
	DTypes   []string
	Shape    string // the common shape, or "mixed"
	Bytes    int64
	Min, Max *Float
	NaN, Inf *int64
}

func groupTensors(ts []Tensor) []tensorGroup {
	idx := map[string]int{}
	var gs []tensorGroup
	for _, t := range ts {
		role := NamePattern(t.Name)
		i, ok := idx[role]
		if !ok {
			i = len(gs)
			idx[role] = i
			gs = append(gs, tensorGroup{Role: role, Shape: shapeString(t.Shape)})
		}
		g := &gs[i]
		g.Count++
		g.Bytes += t.Bytes
		if !slices.Contains(g.DTypes, t.DType) {
			g.DTypes = append(g.DTypes, t.DType)
		}
		if g.Shape != shapeString(t.Shape) {
			g.Shape = "mixed"
		}
		if t.Min != nil && (g.Min == nil || lessFloat(*t.Min, *g.Min)) {
			v := *t.Min
			g.Min = &v
		}
		if t.Max != nil && (g.Max == nil || lessFloat(*g.Max, *t.Max)) {
			v := *t.Max
			g.Max = &v
		}
		g.NaN = addOpt(g.NaN, t.NaN)
		g.Inf = addOpt(g.Inf, t.Inf)
	}
	for i := range gs {
		slices.Sort(gs[i].DTypes)
	}
	slices.SortStableFunc(gs, func(a, b tensorGroup) int { return naturalCompare(a.Role, b.Role) })
	return gs
}

// lessFloat orders floats with NaN last, so it never wins a min or max
// silently: NaN counts are reported separately.
func lessFloat(a, b Float) bool {
	x, y := float64(a), float64(b)
	if math.IsNaN(x) {
		return false
	}
	if math.IsNaN(y) {
		return true
	}
	return x < y
}

func addOpt(acc, v *int64) *int64 {
	if v == nil {
		return acc
	}
	n := *v
	if acc != nil {
		n += *acc
	}
	return &n
}

// expertGrid is the layer × expert view of Report.Experts.
type expertGrid struct {
	Layers  []int // layer indexes present, ascending
	Experts int   // columns: the largest expert index + 1 (at least Model.Experts)
	cells   map[[2]int]Expert
}

func newExpertGrid(r *Report) expertGrid {
	g := expertGrid{cells: map[[2]int]Expert{}}
	for _, e := range r.Experts {
		if e.Layer < 0 || e.Expert < 0 {
			continue
		}
		if _, ok := g.cells[[2]int{e.Layer, e.Expert}]; !ok && !slices.Contains(g.Layers, e.Layer) {
			g.Layers = append(g.Layers, e.Layer)
		}
		g.cells[[2]int{e.Layer, e.Expert}] = e
		g.Experts = max(g.Experts, e.Expert+1)
	}
	if r.Model != nil && len(g.Layers) > 0 {
		g.Experts = max(g.Experts, r.Model.Experts)
	}
	slices.Sort(g.Layers)
	return g
}

func (g expertGrid) at(layer, expert int) (Expert, bool) {
	e, ok := g.cells[[2]int{layer, expert}]
	return e, ok
}

// expertMetric picks one counter of an expert.
type expertMetric struct {
	Key, Title string
	Value      func(Expert) int64
}

var expertMetrics = []expertMetric{
	{"tokens", "routed tokens", func(e Expert) int64 { return e.Tokens }},
	{"gate_up_calls", "gate_up hook calls", func(e Expert) int64 { return e.GateUpCalls }},
	{"down_calls", "down hook calls", func(e Expert) int64 { return e.DownCalls }},
}

// layerExperts summarises one layer of the grid.
type layerExperts struct {
	Layer                   int
	Experts                 int
	Tokens                  int64
	TokensMin, TokensMedian int64
	TokensMax               int64
	NoTokens                int // experts with 0 tokens
	GateUpMin, GateUpMax    int64
	DownMin, DownMax        int64
	Silent                  int // experts with tokens whose hooks did not fire
}

func summarizeLayers(r *Report) []layerExperts {
	byLayer := map[int][]Expert{}
	var layers []int
	for _, e := range r.Experts {
		if _, ok := byLayer[e.Layer]; !ok {
			layers = append(layers, e.Layer)
		}
		byLayer[e.Layer] = append(byLayer[e.Layer], e)
	}
	slices.Sort(layers)
	out := make([]layerExperts, 0, len(layers))
	for _, l := range layers {
		es := byLayer[l]
		s := layerExperts{Layer: l, Experts: len(es)}
		toks := make([]int64, 0, len(es))
		for i, e := range es {
			s.Tokens += e.Tokens
			toks = append(toks, e.Tokens)
			if e.Tokens == 0 {
				s.NoTokens++
			}
			if e.Tokens > 0 && (e.GateUpCalls == 0 || e.DownCalls == 0) {
				s.Silent++
			}
			if i == 0 {
				s.GateUpMin, s.GateUpMax, s.DownMin, s.DownMax = e.GateUpCalls, e.GateUpCalls, e.DownCalls, e.DownCalls
			}
			s.GateUpMin, s.GateUpMax = min(s.GateUpMin, e.GateUpCalls), max(s.GateUpMax, e.GateUpCalls)
			s.DownMin, s.DownMax = min(s.DownMin, e.DownCalls), max(s.DownMax, e.DownCalls)
		}
		slices.Sort(toks)
		s.TokensMin, s.TokensMax = toks[0], toks[len(toks)-1]
		s.TokensMedian = toks[len(toks)/2]
		if len(toks)%2 == 0 {
			s.TokensMedian = (toks[len(toks)/2-1] + toks[len(toks)/2]) / 2
		}
		out = append(out, s)
	}
	return out
}

// silentExperts returns experts that received tokens but whose gate_up or
// down hook never fired: the grouped-GEMM bypass of DESIGN.md.
func silentExperts(r *Report) []Expert {
	var out []Expert
	for _, e := range r.Experts {
		if e.Tokens > 0 && (e.GateUpCalls == 0 || e.DownCalls == 0) {
			out = append(out, e)
		}
	}
	sortExperts(out)
	return out
}

func sortExperts(es []Expert) {
	slices.SortStableFunc(es, func(a, b Expert) int {
		return cmp.Or(cmp.Compare(a.Layer, b.Layer), cmp.Compare(a.Expert, b.Expert))
	})
}

// routingExtremes returns the n most and n least routed experts.
func routingExtremes(r *Report, n int) (most, least []Expert) {
	es := slices.Clone(r.Experts)
	sortExperts(es)
	slices.SortStableFunc(es, func(a, b Expert) int { return cmp.Compare(b.Tokens, a.Tokens) })
	n = min(n, len(es))
	most = slices.Clone(es[:n])
	for i := len(es) - 1; i >= 0 && len(least) < n; i-- {
		if es[i].Tokens > 0 {
			least = append(least, es[i])
		}
	}
	return most, least
}

// expertsByLayer groups expert references by layer, both sorted.
func expertsByLayer(refs []ExpertRef) (layers []int, experts map[int][]int) {
	experts = map[int][]int{}
	for _, e := range refs {
		if _, ok := experts[e.Layer]; !ok {
			layers = append(layers, e.Layer)
		}
		experts[e.Layer] = append(experts[e.Layer], e.Expert)
	}
	slices.Sort(layers)
	for _, l := range layers {
		slices.Sort(experts[l])
	}
	return layers, experts
}

// expertCount writes "3 experts in 2 layers".
func expertCount(refs []ExpertRef) string {
	layers, _ := expertsByLayer(refs)
	return plural(len(refs), "expert", "experts") + " in " + plural(len(layers), "layer", "layers")
}

// amaxSpread is the per-expert input amax of one shared input quantizer.
type amaxSpread struct {
	Quantizer string // the shared input quantizer's name
	Role      string // its NamePattern
	Layer     int
	Experts   []int     // expert indexes, ascending
	Values    []float64 // amax per expert, same order
	Min       float64
	MinExpert int
	Median    float64
	Max       float64
	MaxExpert int
	// SharedAmax is the shared quantizer's amax (nil: never calibrated);
	// SharedFound says whether the report lists that quantizer at all.
	SharedAmax  *Amax
	SharedFound bool
	NonFinite   int // values that are NaN or infinite (excluded from the statistics)
}

// sharedText formats the shared amax: "-" when the quantizer is unknown.
func (s amaxSpread) sharedText() string {
	if !s.SharedFound {
		return "-"
	}
	return fmtAmax(s.SharedAmax)
}

// spreadText formats max/min of the per-expert values, e.g. "8.7x".
func (s amaxSpread) spreadText() string {
	if !(s.Min > 0) || math.IsNaN(s.Max) {
		return "-"
	}
	return strconv.FormatFloat(s.Max/s.Min, 'f', 1, 64) + "x"
}

// perExpertAmax groups Report.PerExpertInputAmax by shared quantizer.
// Keys are "<shared input quantizer name>.<expert>"; keys without an
// expert suffix are ignored.
func perExpertAmax(r *Report) []amaxSpread {
	shared := map[string]*Amax{}
	for _, q := range r.Quantizers {
		shared[q.Name] = q.Amax
	}
	type pt struct {
		e int
		v float64
	}
	byQ := map[string][]pt{}
	for k, v := range r.PerExpertInputAmax {
		i := strings.LastIndexByte(k, '.')
		if i <= 0 || !isDigits(k[i+1:]) {
			continue
		}
		e, err := strconv.Atoi(k[i+1:])
		if err != nil {
			continue
		}
		byQ[k[:i]] = append(byQ[k[:i]], pt{e, float64(v)})
	}
	out := make([]amaxSpread, 0, len(byQ))
	for q, pts := range byQ {
		slices.SortFunc(pts, func(a, b pt) int { return cmp.Compare(a.e, b.e) })
		s := amaxSpread{Quantizer: q, Role: NamePattern(q), Layer: LayerOf(q),
			Min: math.NaN(), Max: math.NaN(), Median: math.NaN(), MinExpert: -1, MaxExpert: -1}
		s.SharedAmax, s.SharedFound = shared[q]
		var finite []float64
		for _, p := range pts {
			s.Experts = append(s.Experts, p.e)
			s.Values = append(s.Values, p.v)
			if math.IsNaN(p.v) || math.IsInf(p.v, 0) {
				s.NonFinite++
				continue
			}
			finite = append(finite, p.v)
			if s.MinExpert < 0 || p.v < s.Min {
				s.Min, s.MinExpert = p.v, p.e
			}
			if s.MaxExpert < 0 || p.v > s.Max {
				s.Max, s.MaxExpert = p.v, p.e
			}
		}
		if len(finite) > 0 {
			slices.Sort(finite)
			s.Median = median(finite)
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b amaxSpread) int { return naturalCompare(a.Quantizer, b.Quantizer) })
	return out
}

func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// sortedDequant returns dequantization errors, largest relative error
// first (non-finite first of all), then by module.
func sortedDequant(ds []DequantError) []DequantError {
	out := slices.Clone(ds)
	key := func(d DequantError) float64 {
		v := float64(d.RelativeError)
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return math.Inf(1)
		}
		return v
	}
	slices.SortStableFunc(out, func(a, b DequantError) int {
		return cmp.Or(cmp.Compare(key(b), key(a)), naturalCompare(a.Module, b.Module))
	})
	return out
}

// isScaleFinding reports whether a finding is about a scale tensor or a
// scale rule: the "scale outliers" of the HTML report.
func isScaleFinding(f Finding) bool {
	return strings.Contains(strings.ToLower(f.Rule), "scale") ||
		strings.Contains(strings.ToLower(f.Tensor), "scale")
}

// diffCounts tallies diff entries by change.
type diffCounts struct{ Regressions, Improvements, Other int }

func countDiff(ds []DiffEntry) diffCounts {
	var c diffCounts
	for _, d := range ds {
		switch {
		case d.Regression:
			c.Regressions++
		case d.Change == ChangeImprovement:
			c.Improvements++
		default:
			c.Other++
		}
	}
	return c
}

// sortedDiff orders diff entries: regressions first, then by what and name.
func sortedDiff(ds []DiffEntry) []DiffEntry {
	out := slices.Clone(ds)
	slices.SortStableFunc(out, func(a, b DiffEntry) int {
		ra, rb := 1, 1
		if a.Regression {
			ra = 0
		}
		if b.Regression {
			rb = 0
		}
		return cmp.Or(cmp.Compare(ra, rb), cmp.Compare(whatRank(a.What), whatRank(b.What)),
			strings.Compare(a.What, b.What), naturalCompare(a.Name, b.Name))
	})
	return out
}

// intRanges writes sorted ints compactly: "0-3, 5, 7-9".
func intRanges(xs []int) string {
	var b strings.Builder
	for i := 0; i < len(xs); {
		j := i
		for j+1 < len(xs) && xs[j+1] == xs[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Itoa(xs[i]))
		if j > i {
			b.WriteString("-")
			b.WriteString(strconv.Itoa(xs[j]))
		}
		i = j + 1
	}
	return b.String()
}

func sortedQuantizers(qs []Quantizer) []Quantizer {
	out := slices.Clone(qs)
	slices.SortStableFunc(out, func(a, b Quantizer) int { return naturalCompare(a.Name, b.Name) })
	return out
}

func sortedTensors(ts []Tensor) []Tensor {
	out := slices.Clone(ts)
	slices.SortStableFunc(out, func(a, b Tensor) int { return naturalCompare(a.Name, b.Name) })
	return out
}
