package reports

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

//go:embed html.tmpl
var htmlSource string

var htmlTemplate = template.Must(template.New("report").Parse(htmlSource))

// htmlMaxRows caps each HTML table; the JSON report has every row.
const htmlMaxRows = 2000

// htmlDequantBars is the number of modules in the dequantization chart.
const htmlDequantBars = 30

// RenderHTML writes the report as one self-contained HTML file: inline CSS
// and SVG charts (layer × expert heatmaps of routed tokens and hook calls,
// per-expert input amax spread per layer, dequantization error by module,
// findings by rule and target), then the tables. It has no scripts and
// loads nothing from the network; it follows the reader's light or dark
// colour scheme and prints cleanly. The output is a function of the
// report alone: the same report gives the same bytes.
func RenderHTML(w io.Writer, r *Report) error {
	if r == nil {
		return fmt.Errorf("render html: nil report")
	}
	if err := htmlTemplate.Execute(w, buildHTMLView(r)); err != nil {
		return fmt.Errorf("render html: %w", err)
	}
	return nil
}

// htmlView is what the template renders: everything is pre-formatted.
type htmlView struct {
	Title    string
	Kind     string
	Tool     Tool
	Schema   int
	Passed   bool
	Summary  string
	Subtitle string
	Facts    [][2]string
	Stats    []htmlStat
	Sections []htmlSection
}

type htmlStat struct {
	Label, Value, Class, Href string
}

type htmlSection struct {
	ID, Title string
	Blocks    []htmlBlock
}

// htmlBlock is one part of a section: a heading, a note, a chart with its
// legend, a table; Collapsed wraps it in <details>.
type htmlBlock struct {
	Heading   string
	Note      string
	Chart     template.HTML
	Legend    []legendItem
	Table     *htmlTable
	Collapsed bool
	Class     string
}

type htmlTable struct {
	Head    []htmlCol
	Rows    []htmlRow
	Omitted int
	Class   string
}

type htmlCol struct {
	Name string
	Num  bool
}

type htmlRow struct {
	Class string
	Cells []htmlCell
}

// htmlCell is one table cell: Text (escaped by the template), optionally
// as code, with a CSS class, a tooltip, or a bar chart.
type htmlCell struct {
	Text  string
	Code  bool
	Class string
	Title string
	Bar   template.HTML
	Label string // the column name, shown on narrow screens by "cards" tables
}

func (t *htmlTable) add(class string, cells ...htmlCell) {
	if len(t.Rows) >= htmlMaxRows {
		t.Omitted++
		return
	}
	for i := range cells {
		if i < len(t.Head) {
			cells[i].Label = t.Head[i].Name
			if t.Head[i].Num {
				cells[i].Class = strings.TrimSpace(cells[i].Class + " num")
			}
		}
	}
	t.Rows = append(t.Rows, htmlRow{Class: class, Cells: cells})
}

// IsCards reports whether the table turns into stacked cards on narrow
// screens.
func (t *htmlTable) IsCards() bool { return strings.Contains(t.Class, "cards") }

// HasHead reports whether any column has a name (key/value tables have
// none).
func (t *htmlTable) HasHead() bool {
	for _, c := range t.Head {
		if c.Name != "" {
			return true
		}
	}
	return false
}

func newTable(cols ...string) *htmlTable {
	t := &htmlTable{}
	for _, c := range cols {
		name, isNum := strings.CutPrefix(c, "#")
		t.Head = append(t.Head, htmlCol{Name: name, Num: isNum})
	}
	return t
}

// ncode is a short name that must not wrap (rule, target).
func ncode(s string) htmlCell { return htmlCell{Text: s, Code: s != "", Class: "nw"} }

func txt(s string) htmlCell            { return htmlCell{Text: s} }
func code(s string) htmlCell           { return htmlCell{Text: s, Code: s != ""} }
func cls(s, class string) htmlCell     { return htmlCell{Text: s, Class: class} }
func intCell(n int64) htmlCell         { return htmlCell{Text: strconv.FormatInt(n, 10)} }
func severityCell(s Severity) htmlCell { return htmlCell{Text: string(s), Class: "sev " + sevClass(s)} }

func sevClass(s Severity) string {
	switch s {
	case SeverityError:
		return "err"
	case SeverityWarning:
		return "warn"
	}
	return "info"
}

func buildHTMLView(r *Report) htmlView {
	v := htmlView{
		Title:   "ptqgate " + kindTitle(r),
		Kind:    string(r.Kind),
		Tool:    r.Tool,
		Schema:  r.SchemaVersion,
		Passed:  passed(r),
		Summary: summaryLine(r),
	}
	if m := r.Model; m != nil {
		v.Subtitle = m.Path
		if l := modelLine(m); l != "" {
			v.Facts = append(v.Facts, [2]string{"model", l})
		}
	}
	if rc := r.Recipe; rc != nil {
		v.Facts = append(v.Facts, [2]string{"recipe", recipeLine(rc)})
		if len(rc.UnmatchedPatterns) > 0 {
			v.Facts = append(v.Facts, [2]string{"unmatched patterns", strings.Join(rc.UnmatchedPatterns, ", ")})
		}
		if len(rc.Unconfigured) > 0 {
			v.Facts = append(v.Facts, [2]string{"unconfigured", listSome(rc.Unconfigured, 8)})
		}
	}
	ids := map[string]bool{}
	for _, s := range []htmlSection{
		htmlFindings(r), htmlDiff(r), htmlExperts(r), htmlInputAmax(r), htmlScales(r), htmlQuantizers(r), htmlTensors(r), htmlRun(r),
	} {
		if len(s.Blocks) > 0 {
			v.Sections = append(v.Sections, s)
			ids["#"+s.ID] = true
		}
	}
	v.Stats = htmlStats(r)
	for i := range v.Stats {
		if !ids[v.Stats[i].Href] {
			v.Stats[i].Href = ""
		}
	}
	return v
}

func htmlStats(r *Report) []htmlStat {
	count := func(n int, class string) string {
		if n == 0 {
			return ""
		}
		return class
	}
	stats := []htmlStat{
		{Label: "errors", Value: strconv.Itoa(r.Summary.Errors), Class: count(r.Summary.Errors, "err"), Href: "#findings"},
		{Label: "warnings", Value: strconv.Itoa(r.Summary.Warnings), Class: count(r.Summary.Warnings, "warn"), Href: "#findings"},
		{Label: "infos", Value: strconv.Itoa(r.Summary.Infos), Class: count(r.Summary.Infos, "info"), Href: "#findings"},
	}
	if r.Kind == KindDiff {
		c := countDiff(r.Diff)
		stats = append(stats, htmlStat{Label: "regressions", Value: strconv.Itoa(c.Regressions), Class: count(c.Regressions, "err"), Href: "#diff"},
			htmlStat{Label: "improvements", Value: strconv.Itoa(c.Improvements), Class: count(c.Improvements, "ok"), Href: "#diff"})
	}
	if len(r.Checks) > 0 {
		c := tallyChecks(r)
		class := "ok"
		if c.Failed > 0 {
			class = "err"
		}
		stats = append(stats, htmlStat{Label: "checks passed", Value: fmt.Sprintf("%d/%d", c.Passed, c.Checks), Class: class, Href: "#findings"})
	}
	if len(r.Quantizers) > 0 {
		enabled, cal := 0, 0
		for _, q := range r.Quantizers {
			if q.Enabled {
				enabled++
				if q.Amax.Valid() {
					cal++
				}
			}
		}
		class := "ok"
		if cal < enabled {
			class = "err"
		}
		stats = append(stats, htmlStat{Label: "quantizers calibrated", Value: fmt.Sprintf("%d/%d", cal, enabled), Class: class, Href: "#quantizers"})
	}
	if len(r.Experts) > 0 {
		routed := 0
		for _, e := range r.Experts {
			if e.Tokens > 0 {
				routed++
			}
		}
		stats = append(stats, htmlStat{Label: "experts routed", Value: fmt.Sprintf("%d/%d", routed, len(r.Experts)), Class: count(len(r.Experts)-routed, "warn"), Href: "#experts"})
		if n := len(silentExperts(r)); n > 0 {
			stats = append(stats, htmlStat{Label: "experts with silent hooks", Value: strconv.Itoa(n), Class: "err", Href: "#experts"})
		}
	}
	if ds := sortedDequant(r.DequantError); len(ds) > 0 {
		v := float64(ds[0].RelativeError)
		class := ""
		if !finite(v) {
			class = "err"
		}
		stats = append(stats, htmlStat{Label: "max relative dequant error", Value: fmtFloatPrec(v, 3), Class: class, Href: "#scales"})
	}
	return stats
}

// findingsTable lists findings; withSeverity adds the severity column
// (tables of one severity leave it out).
func findingsTable(fs []Finding, withSeverity bool) *htmlTable {
	engine, source := false, false
	for _, f := range fs {
		engine = engine || f.EngineBehavior != ""
		source = source || f.Source != ""
	}
	cols := []string{"rule", "target", "tensor / module", "message"}
	if withSeverity {
		cols = append([]string{"severity"}, cols...)
	}
	if engine {
		cols = append(cols, "engine behavior")
	}
	if source {
		cols = append(cols, "source")
	}
	t := newTable(cols...)
	t.Class = "cards"
	for _, f := range fs {
		var cells []htmlCell
		if withSeverity {
			cells = append(cells, severityCell(f.Severity))
		}
		cells = append(cells, ncode(f.Rule), ncode(f.Target), code(f.where()), txt(f.Message))
		if engine {
			cells = append(cells, txt(f.EngineBehavior))
		}
		if source {
			cells = append(cells, txt(f.Source))
		}
		t.add("", cells...)
	}
	return t
}

func htmlFindings(r *Report) htmlSection {
	s := htmlSection{ID: "findings", Title: "Findings"}
	shown := displayFindings(r)
	results := checkResults(r)
	if r.Kind != KindDiff && len(results) > 0 {
		s.Blocks = append(s.Blocks, findingsMatrix(results))
	}
	groups := findingsBySeverity(shown)
	titles := map[Severity]string{SeverityError: "Errors", SeverityWarning: "Warnings", SeverityInfo: "Infos"}
	for _, sev := range severities {
		fs := groups[sev]
		if len(fs) == 0 {
			continue
		}
		s.Blocks = append(s.Blocks, htmlBlock{Heading: fmt.Sprintf("%s (%d)", titles[sev], len(fs)), Table: findingsTable(fs, false),
			Collapsed: sev == SeverityInfo || (sev == SeverityWarning && len(fs) > 20), Class: sevClass(sev)})
	}
	return s
}

// findingsMatrix is the rule × target table: each cell counts the
// findings of one check, coloured by the worst severity; evaluated checks
// without findings show as passed.
func findingsMatrix(results []caseResult) htmlBlock {
	var targets, rules []string
	cell := map[[2]string]caseResult{}
	for _, c := range results {
		if !slices.Contains(targets, c.Target) {
			targets = append(targets, c.Target)
		}
		if !slices.Contains(rules, c.Rule) {
			rules = append(rules, c.Rule)
		}
		cell[[2]string{c.Rule, c.Target}] = c
	}
	slices.SortFunc(rules, naturalCompare)
	slices.SortFunc(targets, compareTargets)
	t := newTable(append([]string{"rule"}, targets...)...)
	t.Class = "matrix"
	for _, rule := range rules {
		cells := []htmlCell{ncode(rule)}
		for _, target := range targets {
			c, ok := cell[[2]string{rule, target}]
			switch {
			case !ok:
				cells = append(cells, htmlCell{Text: "·", Class: "na", Title: "not evaluated"})
			case len(c.Findings) == 0:
				cells = append(cells, htmlCell{Text: "pass", Class: "pass", Title: strings.TrimSpace(rule + " [" + target + "] passed. " + c.Description)})
			default:
				parts := []string{}
				for _, sev := range severities {
					if n := c.count(sev); n > 0 {
						parts = append(parts, plural(n, string(sev), string(sev)+"s"))
					}
				}
				cells = append(cells, htmlCell{Text: strconv.Itoa(len(c.Findings)), Class: "m" + sevClass(c.worst()),
					Title: strings.TrimSpace(rule + " [" + target + "]: " + strings.Join(parts, ", ") + ". " + c.Description)})
			}
		}
		t.add("", cells...)
	}
	return htmlBlock{Heading: "By rule and target", Table: t,
		Note: "Each cell is one evaluated check: the number of findings, coloured by the worst severity; \"pass\" when it found nothing."}
}

func htmlDiff(r *Report) htmlSection {
	s := htmlSection{ID: "diff", Title: "Changes against the baseline"}
	if len(r.Diff) == 0 {
		return s
	}
	regress := newTable("what", "name", "baseline", "new")
	other := newTable("what", "name", "baseline", "new", "change")
	regress.Class, other.Class = "cards", "cards"
	for _, d := range sortedDiff(r.Diff) {
		cells := []htmlCell{ncode(d.What), code(d.Name), txt(diffValue(d, d.Baseline)), txt(diffValue(d, d.New))}
		if d.Regression {
			regress.add("", cells...)
			continue
		}
		change := d.Change
		if change == "" {
			change = ChangeChanged
		}
		c := txt(change)
		if change == ChangeImprovement {
			c.Class = "okc"
		}
		other.add("", append(cells, c)...)
	}
	if len(regress.Rows) > 0 {
		s.Blocks = append(s.Blocks, htmlBlock{Heading: fmt.Sprintf("Regressions (%d)", len(regress.Rows)+regress.Omitted), Table: regress, Class: "err"})
	}
	if len(other.Rows) > 0 {
		s.Blocks = append(s.Blocks, htmlBlock{Heading: fmt.Sprintf("Improvements and other changes (%d)", len(other.Rows)+other.Omitted), Table: other,
			Collapsed: len(regress.Rows) > 0 && len(other.Rows) > 20})
	}
	return s
}

func htmlExperts(r *Report) htmlSection {
	s := htmlSection{ID: "experts", Title: "Experts"}
	if len(r.Experts) > 0 {
		g := newExpertGrid(r)
		for _, m := range expertMetrics {
			chart, legend := heatmap(g, m)
			if chart == "" {
				continue
			}
			s.Blocks = append(s.Blocks, htmlBlock{Heading: titleCase(m.Title) + " by layer and expert", Chart: chart, Legend: legend})
		}
		t := newTable("#layer", "#experts", "#tokens", "#min / median / max", "#no tokens", "#gate_up calls", "#down calls", "#routed, no calls")
		for _, l := range summarizeLayers(r) {
			silent := intCell(int64(l.Silent))
			if l.Silent > 0 {
				silent.Class = "errc"
			}
			noTok := intCell(int64(l.NoTokens))
			if l.NoTokens > 0 {
				noTok.Class = "warnc"
			}
			t.add("", intCell(int64(l.Layer)), intCell(int64(l.Experts)), intCell(l.Tokens),
				txt(fmt.Sprintf("%d / %d / %d", l.TokensMin, l.TokensMedian, l.TokensMax)), noTok,
				txt(fmtRange(l.GateUpMin, l.GateUpMax)), txt(fmtRange(l.DownMin, l.DownMax)), silent)
		}
		t.Class = "auto"
		s.Blocks = append(s.Blocks, htmlBlock{Heading: "Per layer", Table: t})
	}
	if silent := silentExperts(r); len(silent) > 0 {
		refs := make([]ExpertRef, len(silent))
		for i, e := range silent {
			refs[i] = ExpertRef{Layer: e.Layer, Expert: e.Expert}
		}
		s.Blocks = append(s.Blocks, htmlBlock{Heading: "Experts that received tokens but whose hooks never fired (" + expertCount(refs) + ")",
			Table: expertRefTable(refs), Class: "err",
			Note: "Their calibration hooks saw no input although the router sent them tokens: the grouped-GEMM bypass. Their input quantizers are not calibrated from their own inputs."})
	}
	if refs := r.ExpertsWithoutTokens; len(refs) > 0 {
		s.Blocks = append(s.Blocks, htmlBlock{Heading: "Experts without tokens (" + expertCount(refs) + ")", Table: expertRefTable(refs),
			Note: "The calibration data routed no token to these experts."})
	}
	return s
}

func titleCase(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func expertRefTable(refs []ExpertRef) *htmlTable {
	layers, experts := expertsByLayer(refs)
	t := newTable("#layer", "#count", "experts")
	t.Class = "auto"
	for _, l := range layers {
		t.add("", intCell(int64(l)), intCell(int64(len(experts[l]))), txt(intRanges(experts[l])))
	}
	return t
}

func htmlInputAmax(r *Report) htmlSection {
	s := htmlSection{ID: "amax", Title: "Per-expert input amax"}
	spreads := perExpertAmax(r)
	if len(spreads) == 0 {
		return s
	}
	var roles []string
	for _, sp := range spreads {
		if !slices.Contains(roles, sp.Role) {
			roles = append(roles, sp.Role)
		}
	}
	slices.SortFunc(roles, naturalCompare)
	for _, role := range roles {
		pts := spreadPoints(role, spreads, r.Quantizers)
		chart := amaxSpreadChart(role, pts)
		if chart == "" {
			continue
		}
		legend := []legendItem{{"lrng", "min to max over experts"}, {"lmed", "median"}, {"ldot", "one expert"}, {"lshr", "shared amax (exported scale)"}}
		for _, p := range pts {
			if p.Uncalibrated {
				legend = append(legend, legendItem{"lbad", "shared quantizer uncalibrated"})
				break
			}
		}
		s.Blocks = append(s.Blocks, htmlBlock{Heading: role, Chart: chart, Legend: legend})
	}
	t := newTable("shared input quantizer", "#experts", "#min", "#median", "#max", "#max/min", "#shared amax")
	for _, sp := range spreads {
		shared := txt(sp.sharedText())
		if sp.SharedFound && !sp.SharedAmax.Valid() {
			shared.Class = "errc"
		}
		t.add("", code(sp.Quantizer), intCell(int64(len(sp.Values))),
			htmlCell{Text: fmtFloat(sp.Min), Title: "expert " + strconv.Itoa(sp.MinExpert)}, txt(fmtFloat(sp.Median)),
			htmlCell{Text: fmtFloat(sp.Max), Title: "expert " + strconv.Itoa(sp.MaxExpert)}, txt(sp.spreadText()), shared)
	}
	s.Blocks = append(s.Blocks, htmlBlock{Heading: "Statistics per shared input quantizer", Table: t, Collapsed: len(spreads) > 16})
	return s
}

func htmlScales(r *Report) htmlSection {
	s := htmlSection{ID: "scales", Title: "Scale outliers and dequantization error"}
	var scaleFindings []Finding
	for _, f := range sortedFindings(displayFindings(r)) {
		if isScaleFinding(f) {
			scaleFindings = append(scaleFindings, f)
		}
	}
	if len(scaleFindings) > 0 {
		s.Blocks = append(s.Blocks, htmlBlock{Heading: fmt.Sprintf("Findings about scales (%d)", len(scaleFindings)), Table: findingsTable(scaleFindings, true)})
	}
	ds := sortedDequant(r.DequantError)
	if len(ds) == 0 {
		return s
	}
	hi := 0.0
	for _, d := range ds {
		if v := float64(d.RelativeError); finite(v) {
			hi = math.Max(hi, v)
		}
	}
	top := newTable("module", "#relative error", "")
	top.Class = "bars"
	for i, d := range ds {
		if i == htmlDequantBars {
			break
		}
		v := float64(d.RelativeError)
		frac, class := 1.0, "bad"
		if finite(v) {
			class = "fill"
			if hi > 0 {
				frac = v / hi
			}
		}
		val := txt(fmtFloatPrec(v, 3))
		if !finite(v) {
			val.Class = "errc"
		}
		top.add("", code(d.Module), val, htmlCell{Bar: barSVG(frac, class)})
	}
	note := "Relative error of each module's dequantized weights against the reference, largest first."
	if len(ds) > htmlDequantBars {
		note += fmt.Sprintf(" The %d largest of %d modules.", htmlDequantBars, len(ds))
	}
	s.Blocks = append(s.Blocks, htmlBlock{Heading: "Dequantization error by module", Note: note, Table: top})
	if len(ds) > htmlDequantBars {
		t := newTable("module", "#relative error", "#max abs error")
		for _, d := range ds {
			t.add("", code(d.Module), txt(fmtFloat(float64(d.RelativeError))), txt(fmtFloat(float64(d.MaxAbsError))))
		}
		s.Blocks = append(s.Blocks, htmlBlock{Heading: fmt.Sprintf("All modules (%d)", len(ds)), Table: t, Collapsed: true})
	}
	return s
}

func htmlQuantizers(r *Report) htmlSection {
	s := htmlSection{ID: "quantizers", Title: "Quantizers"}
	if us := uncalibratedQuantizers(r); len(us) > 0 {
		t := newTable("quantizer", "format", "#amax", "#calls")
		for _, u := range us {
			if !u.Known {
				t.add("", code(u.Name), txt("-"), txt("-"), txt("-"))
				continue
			}
			t.add("", code(u.Name), txt(u.Format), cls(fmtAmax(u.Amax), "errc"), intCell(u.Calls))
		}
		s.Blocks = append(s.Blocks, htmlBlock{Heading: fmt.Sprintf("Uncalibrated (%d)", len(us)), Table: t, Class: "err"})
	}
	qs := r.Quantizers
	if len(qs) == 0 {
		return s
	}
	g := newTable("role", "#count", "layers", "format", "#enabled", "#calibrated", "#amax", "#calls")
	g.Class = "auto"
	for _, q := range groupQuantizers(qs) {
		calls := "-"
		if q.Enabled > 0 {
			calls = fmtRange(q.CallsMin, q.CallsMax)
		}
		calib := txt(fmt.Sprintf("%d/%d", q.Calibrated, q.Enabled))
		if q.Calibrated < q.Enabled {
			calib.Class = "errc"
		}
		g.add("", code(q.Role), intCell(int64(q.Count)), txt(layersCell(q.Layers)), txt(strings.Join(q.Formats, ", ")),
			txt(fmt.Sprintf("%d/%d", q.Enabled, q.Count)), calib, txt(fmtFloatRange(q.AmaxMin, q.AmaxMax)), txt(calls))
	}
	s.Blocks = append(s.Blocks, htmlBlock{Heading: "By role", Table: g})
	t := newTable("quantizer", "enabled", "format", "#amax", "#calls", "#axis", "#block")
	for _, q := range sortedQuantizers(qs) {
		amax := txt(fmtAmax(q.Amax))
		if q.Enabled && !q.Amax.Valid() {
			amax.Class = "errc"
		}
		enabled := "no"
		if q.Enabled {
			enabled = "yes"
		}
		t.add("", code(q.Name), txt(enabled), txt(q.Format), amax, intCell(q.Calls), txt(optIntPtr(q.Axis)), txt(optIntPtr(q.BlockSize)))
	}
	s.Blocks = append(s.Blocks, htmlBlock{Heading: fmt.Sprintf("All quantizers (%d)", len(qs)), Table: t, Collapsed: true})
	return s
}

func htmlTensors(r *Report) htmlSection {
	s := htmlSection{ID: "tensors", Title: "Tensors"}
	ts := r.Tensors
	if len(ts) == 0 {
		return s
	}
	bad := func(n *int64) htmlCell {
		c := txt(optInt(n))
		if n != nil && *n > 0 {
			c.Class = "errc"
		}
		return c
	}
	if len(ts) > GroupThreshold {
		g := newTable("role", "#count", "dtype", "shape", "#bytes", "#min", "#max", "#nan", "#inf")
		for _, x := range groupTensors(ts) {
			g.add("", code(x.Role), intCell(int64(x.Count)), txt(strings.Join(x.DTypes, ", ")), txt(x.Shape), txt(fmtBytes(x.Bytes)),
				txt(optFloat(x.Min)), txt(optFloat(x.Max)), bad(x.NaN), bad(x.Inf))
		}
		s.Blocks = append(s.Blocks, htmlBlock{Heading: "By role", Table: g})
	}
	t := newTable("tensor", "dtype", "shape", "#bytes", "file", "#min", "#max", "#nan", "#inf")
	for _, x := range sortedTensors(ts) {
		t.add("", code(x.Name), txt(x.DType), txt(shapeString(x.Shape)), intCell(x.Bytes), txt(x.File), txt(optFloat(x.Min)), txt(optFloat(x.Max)), bad(x.NaN), bad(x.Inf))
	}
	s.Blocks = append(s.Blocks, htmlBlock{Heading: fmt.Sprintf("All tensors (%d)", len(ts)), Table: t, Collapsed: len(ts) > GroupThreshold})
	return s
}

func htmlRun(r *Report) htmlSection {
	s := htmlSection{ID: "run", Title: "Run"}
	facts := runFacts(r.Run)
	if len(facts) == 0 {
		return s
	}
	t := newTable("", "")
	t.Class = "kv auto"
	for _, f := range facts {
		t.add("", txt(f[0]), code(f[1]))
	}
	s.Blocks = append(s.Blocks, htmlBlock{Table: t})
	return s
}
