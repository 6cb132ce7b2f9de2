package reports

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MarkdownLimit is the size RenderMarkdown stays under, in characters:
// GitHub rejects comments over 65536 characters, and CI scripts often
// wrap the report in a few lines of their own.
const MarkdownLimit = 60000

// markdownRowSteps are the row caps RenderMarkdown tries, largest first,
// until the document fits MarkdownLimit.
var markdownRowSteps = []int{200, 100, 50, 25, 10, 5, 2}

// RenderMarkdown writes a compact GitHub-flavoured Markdown summary of a
// report that fits a pull-request comment: a verdict heading, the errors
// in the open, everything else in collapsible <details> sections. Long
// tables are truncated with a note, shortening them until the whole
// document stays under MarkdownLimit characters.
func RenderMarkdown(w io.Writer, r *Report) error {
	if r == nil {
		return fmt.Errorf("render markdown: nil report")
	}
	var doc string
	for _, n := range markdownRowSteps {
		doc = renderMarkdown(r, n)
		if utf8.RuneCountInString(doc) <= MarkdownLimit {
			break
		}
	}
	if utf8.RuneCountInString(doc) > MarkdownLimit {
		doc = cutMarkdown(doc, MarkdownLimit)
	}
	if _, err := io.WriteString(w, doc); err != nil {
		return fmt.Errorf("render markdown: %w", err)
	}
	return nil
}

// cutMarkdown truncates a document at a line boundary and closes any open
// <details>, as a last resort for reports whose headings alone are huge.
func cutMarkdown(doc string, limit int) string {
	const note = "\n\n_… report truncated to fit a GitHub comment; see the full report._\n"
	runes := []rune(doc)
	keep := max(0, min(len(runes), limit-utf8.RuneCountInString(note)-64))
	cut := string(runes[:keep])
	if i := strings.LastIndexByte(cut, '\n'); i > 0 {
		cut = cut[:i]
	}
	if open := strings.Count(cut, "<details") - strings.Count(cut, "</details>"); open > 0 {
		cut += strings.Repeat("\n\n</details>", open)
	}
	return cut + note
}

type mdRenderer struct {
	b       strings.Builder
	r       *Report
	maxRows int
}

func renderMarkdown(r *Report, maxRows int) string {
	m := &mdRenderer{r: r, maxRows: maxRows}
	m.header()
	m.findings()
	m.diff()
	m.uncalibrated()
	m.experts()
	m.inputAmax()
	m.dequant()
	m.quantizers()
	m.tensors()
	m.footer()
	return m.b.String()
}

func (m *mdRenderer) printf(format string, args ...any) { fmt.Fprintf(&m.b, format, args...) }

// mdText escapes text for a table cell or a paragraph: HTML is shown as
// text, Markdown punctuation stays literal and newlines become <br>.
func mdText(s string) string {
	var b strings.Builder
	for _, c := range strings.TrimSpace(s) {
		switch c {
		case '&':
			b.WriteString("&amp;")
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '|', '\\', '*', '_', '`', '[', ']', '~', '#':
			b.WriteByte('\\')
			b.WriteRune(c)
		case '\n':
			b.WriteString("<br>")
		case '\r':
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

// mdCode writes a name as inline code (no autolinks, no @mentions).
func mdCode(s string) string {
	if s == "" {
		return ""
	}
	if strings.ContainsAny(s, "`\n\r") {
		return mdText(s)
	}
	return "`" + strings.ReplaceAll(s, "|", `\|`) + "`"
}

// table writes a GitHub table of at most maxRows rows, with a note on the
// rows left out. right marks right-aligned (numeric) columns.
func (m *mdRenderer) table(header []string, right []bool, rows [][]string) {
	if len(rows) == 0 {
		return
	}
	omitted := 0
	if len(rows) > m.maxRows {
		omitted = len(rows) - m.maxRows
		rows = rows[:m.maxRows]
	}
	m.printf("| %s |\n|", strings.Join(header, " | "))
	for i := range header {
		if i < len(right) && right[i] {
			m.printf("--:|")
		} else {
			m.printf("---|")
		}
	}
	m.printf("\n")
	for _, row := range rows {
		m.printf("| %s |\n", strings.Join(row, " | "))
	}
	if omitted > 0 {
		m.printf("\n_… %s not shown; see the full report (`ptqgate report FILE --format html`)._\n", plural(omitted, "more row", "more rows"))
	}
}

// open starts a section: a heading when open, else a collapsed <details>.
// It returns the function that closes the section.
func (m *mdRenderer) open(title string, collapsed bool) func() {
	if !collapsed {
		m.printf("\n#### %s\n\n", title)
		return func() {}
	}
	m.printf("\n<details><summary><b>%s</b></summary>\n\n", title)
	return func() { m.printf("\n</details>\n") }
}

func (m *mdRenderer) header() {
	r := m.r
	icon := "✅"
	if !passed(r) {
		icon = "❌"
	} else if r.Summary.Warnings > 0 {
		icon = "⚠️"
	}
	m.printf("### %s ptqgate %s: %s\n\n", icon, kindTitle(r), summaryLine(r))
	if md := r.Model; md != nil {
		line := mdCode(md.Path)
		if l := modelLine(md); l != "" {
			if line != "" {
				line += " · "
			}
			line += mdText(l)
		}
		m.printf("- **model** %s\n", line)
	}
	if rc := r.Recipe; rc != nil {
		line := mdCode(rc.Name)
		if rest := strings.TrimPrefix(recipeLine(rc), rc.Name); rest != "" {
			line += " " + mdText(strings.TrimSpace(rest))
		}
		m.printf("- **recipe** %s\n", line)
		if len(rc.UnmatchedPatterns) > 0 {
			m.printf("- **unmatched recipe patterns** %s\n", codeList(rc.UnmatchedPatterns, 10))
		}
		if len(rc.Unconfigured) > 0 {
			m.printf("- **unconfigured quantizers** %s\n", codeList(rc.Unconfigured, 5))
		}
	}
	if len(r.Checks) > 0 {
		c := tallyChecks(r)
		targets := make([]string, len(c.Targets))
		for i, t := range c.Targets {
			targets[i] = mdCode(t)
		}
		m.printf("- **checks** %s\n", c.describe(strings.Join(targets, ", ")))
	}
	if facts := runFacts(r.Run); len(facts) > 0 {
		var parts []string
		for _, f := range facts {
			if f[0] == "started" || f[0] == "duration" || f[0] == "device" || f[0] == "host" {
				parts = append(parts, mdText(f[0]+" "+f[1]))
			}
		}
		if len(parts) > 0 {
			m.printf("- **run** %s\n", strings.Join(parts, ", "))
		}
	}
}

func codeList(items []string, n int) string {
	out := make([]string, 0, min(n, len(items)))
	for _, s := range items[:min(n, len(items))] {
		out = append(out, mdCode(s))
	}
	s := strings.Join(out, ", ")
	if len(items) > n {
		s += fmt.Sprintf(" and %d more", len(items)-n)
	}
	return s
}

func (m *mdRenderer) findings() {
	shown := displayFindings(m.r)
	groups := findingsBySeverity(shown)
	if len(shown) > 10 {
		results := checkResults(m.r)
		var rows [][]string
		for _, c := range results {
			if len(c.Findings) == 0 {
				continue
			}
			rows = append(rows, []string{mdCode(c.Rule), mdCode(c.Target), countCell(c.count(SeverityError)), countCell(c.count(SeverityWarning)), countCell(c.count(SeverityInfo))})
		}
		end := m.open(fmt.Sprintf("Findings by rule and target (%d)", len(rows)), true)
		m.table([]string{"rule", "target", "errors", "warnings", "infos"}, []bool{false, false, true, true, true}, rows)
		end()
	}
	titles := map[Severity]string{SeverityError: "Errors", SeverityWarning: "Warnings", SeverityInfo: "Infos"}
	for _, s := range severities {
		fs := groups[s]
		if len(fs) == 0 {
			continue
		}
		engine := false
		for _, f := range fs {
			engine = engine || f.EngineBehavior != ""
		}
		header := []string{"rule", "target", "tensor / module", "message"}
		if engine {
			header = append(header, "engine behavior")
		}
		rows := make([][]string, 0, len(fs))
		for _, f := range fs {
			row := []string{mdCode(f.Rule), mdCode(f.Target), mdCode(f.where()), mdText(f.Message)}
			if engine {
				row = append(row, mdText(f.EngineBehavior))
			}
			rows = append(rows, row)
		}
		end := m.open(fmt.Sprintf("%s (%d)", titles[s], len(fs)), s != SeverityError)
		m.table(header, nil, rows)
		end()
	}
}

func (m *mdRenderer) diff() {
	if len(m.r.Diff) == 0 {
		return
	}
	var regress, other [][]string
	for _, d := range sortedDiff(m.r.Diff) {
		row := []string{mdCode(d.What), mdCode(d.Name), mdText(diffValue(d, d.Baseline)), mdText(diffValue(d, d.New))}
		if d.Regression {
			regress = append(regress, row)
			continue
		}
		change := d.Change
		if change == "" {
			change = ChangeChanged
		}
		other = append(other, append(row, change))
	}
	header := []string{"what", "name", "baseline", "new"}
	if len(regress) > 0 {
		end := m.open(fmt.Sprintf("Regressions (%d)", len(regress)), false)
		m.table(header, nil, regress)
		end()
	}
	if len(other) > 0 {
		end := m.open(fmt.Sprintf("Improvements and other changes (%d)", len(other)), true)
		m.table(append(header, "change"), nil, other)
		end()
	}
}

func (m *mdRenderer) uncalibrated() {
	us := uncalibratedQuantizers(m.r)
	if len(us) == 0 {
		return
	}
	rows := make([][]string, 0, len(us))
	for _, u := range us {
		if !u.Known {
			rows = append(rows, []string{mdCode(u.Name), "-", "-", "-"})
			continue
		}
		rows = append(rows, []string{mdCode(u.Name), mdText(u.Format), mdText(fmtAmax(u.Amax)), strconv.FormatInt(u.Calls, 10)})
	}
	end := m.open(fmt.Sprintf("Uncalibrated quantizers (%d)", len(rows)), false)
	m.table([]string{"quantizer", "format", "amax", "calls"}, []bool{false, false, true, true}, rows)
	end()
}

func (m *mdRenderer) quantizers() {
	qs := m.r.Quantizers
	if len(qs) == 0 {
		return
	}
	if len(qs) > GroupThreshold {
		gs := groupQuantizers(qs)
		rows := make([][]string, 0, len(gs))
		for _, g := range gs {
			calls := "-"
			if g.Enabled > 0 {
				calls = fmtRange(g.CallsMin, g.CallsMax)
			}
			rows = append(rows, []string{mdCode(g.Role), strconv.Itoa(g.Count), layersCell(g.Layers), mdText(strings.Join(g.Formats, ", ")),
				fmt.Sprintf("%d/%d", g.Enabled, g.Count), fmt.Sprintf("%d/%d", g.Calibrated, g.Enabled), mdText(fmtFloatRange(g.AmaxMin, g.AmaxMax)), calls})
		}
		end := m.open(fmt.Sprintf("Quantizers: %d in %s", len(qs), plural(len(rows), "role", "roles")), true)
		m.table([]string{"role", "count", "layers", "format", "enabled", "calibrated", "amax", "calls"},
			[]bool{false, true, false, false, true, true, true, true}, rows)
		end()
		return
	}
	rows := make([][]string, 0, len(qs))
	for _, q := range sortedQuantizers(qs) {
		enabled := "no"
		if q.Enabled {
			enabled = "yes"
		}
		rows = append(rows, []string{mdCode(q.Name), enabled, mdText(q.Format), mdText(fmtAmax(q.Amax)), strconv.FormatInt(q.Calls, 10)})
	}
	end := m.open(fmt.Sprintf("Quantizers (%d)", len(rows)), true)
	m.table([]string{"quantizer", "enabled", "format", "amax", "calls"}, []bool{false, false, false, true, true}, rows)
	end()
}

func (m *mdRenderer) experts() {
	r := m.r
	if len(r.Experts) == 0 && len(r.ExpertsWithoutTokens) == 0 {
		return
	}
	var parts []string
	if len(r.Experts) > 0 {
		parts = append(parts, plural(len(r.Experts), "expert", "experts"))
	}
	if n := len(r.ExpertsWithoutTokens); n > 0 {
		parts = append(parts, fmt.Sprintf("%d without tokens", n))
	}
	silent := silentExperts(r)
	if len(silent) > 0 {
		parts = append(parts, fmt.Sprintf("%d whose hooks never fired", len(silent)))
	}
	end := m.open("Experts: "+strings.Join(parts, ", "), len(silent) == 0)
	defer end()
	if len(r.Experts) > 0 {
		var rows [][]string
		for _, l := range summarizeLayers(r) {
			rows = append(rows, []string{strconv.Itoa(l.Layer), strconv.Itoa(l.Experts), strconv.FormatInt(l.Tokens, 10),
				fmt.Sprintf("%d / %d / %d", l.TokensMin, l.TokensMedian, l.TokensMax), strconv.Itoa(l.NoTokens),
				fmtRange(l.GateUpMin, l.GateUpMax), fmtRange(l.DownMin, l.DownMax), strconv.Itoa(l.Silent)})
		}
		m.table([]string{"layer", "experts", "tokens", "min / median / max", "no tokens", "gate_up calls", "down calls", "routed, no calls"},
			[]bool{true, true, true, true, true, true, true, true}, rows)
	}
	if len(silent) > 0 {
		refs := make([]ExpertRef, len(silent))
		for i, e := range silent {
			refs[i] = ExpertRef{Layer: e.Layer, Expert: e.Expert}
		}
		m.printf("\n**Experts that received tokens but whose hooks never fired** (%s)\n\n", expertCount(refs))
		m.expertRefs(refs)
	}
	if len(r.ExpertsWithoutTokens) > 0 {
		m.printf("\n**Experts without tokens** (%s)\n\n", expertCount(r.ExpertsWithoutTokens))
		m.expertRefs(r.ExpertsWithoutTokens)
	}
}

func (m *mdRenderer) expertRefs(refs []ExpertRef) {
	layers, experts := expertsByLayer(refs)
	rows := make([][]string, 0, len(layers))
	for _, l := range layers {
		rows = append(rows, []string{strconv.Itoa(l), strconv.Itoa(len(experts[l])), intRanges(experts[l])})
	}
	m.table([]string{"layer", "count", "experts"}, []bool{true, true, false}, rows)
}

func (m *mdRenderer) inputAmax() {
	ss := perExpertAmax(m.r)
	if len(ss) == 0 {
		return
	}
	rows := make([][]string, 0, len(ss))
	for _, s := range ss {
		rows = append(rows, []string{mdCode(s.Quantizer), strconv.Itoa(len(s.Values)), mdText(fmtFloat(s.Min)), mdText(fmtFloat(s.Median)),
			mdText(fmtFloat(s.Max)), s.spreadText(), mdText(s.sharedText())})
	}
	end := m.open(fmt.Sprintf("Per-expert input amax (%d shared input quantizers)", len(rows)), true)
	m.table([]string{"shared input quantizer", "experts", "min", "median", "max", "max/min", "shared amax"},
		[]bool{false, true, true, true, true, true, true}, rows)
	end()
}

func (m *mdRenderer) dequant() {
	ds := sortedDequant(m.r.DequantError)
	if len(ds) == 0 {
		return
	}
	rows := make([][]string, 0, len(ds))
	for _, d := range ds {
		rows = append(rows, []string{mdCode(d.Module), mdText(fmtFloat(float64(d.RelativeError))), mdText(fmtFloat(float64(d.MaxAbsError)))})
	}
	end := m.open(fmt.Sprintf("Dequantization error, largest first (%d modules)", len(rows)), true)
	m.table([]string{"module", "relative error", "max abs error"}, []bool{false, true, true}, rows)
	end()
}

func (m *mdRenderer) tensors() {
	ts := m.r.Tensors
	if len(ts) == 0 {
		return
	}
	if len(ts) > GroupThreshold {
		gs := groupTensors(ts)
		rows := make([][]string, 0, len(gs))
		for _, g := range gs {
			rows = append(rows, []string{mdCode(g.Role), strconv.Itoa(g.Count), mdText(strings.Join(g.DTypes, ", ")), mdText(g.Shape),
				mdText(fmtBytes(g.Bytes)), mdText(optFloat(g.Min)), mdText(optFloat(g.Max)), optInt(g.NaN), optInt(g.Inf)})
		}
		end := m.open(fmt.Sprintf("Tensors: %d in %s", len(ts), plural(len(rows), "role", "roles")), true)
		m.table([]string{"role", "count", "dtype", "shape", "bytes", "min", "max", "nan", "inf"},
			[]bool{false, true, false, false, true, true, true, true, true}, rows)
		end()
		return
	}
	rows := make([][]string, 0, len(ts))
	for _, x := range sortedTensors(ts) {
		rows = append(rows, []string{mdCode(x.Name), mdText(x.DType), mdText(shapeString(x.Shape)), strconv.FormatInt(x.Bytes, 10),
			mdText(optFloat(x.Min)), mdText(optFloat(x.Max)), optInt(x.NaN), optInt(x.Inf)})
	}
	end := m.open(fmt.Sprintf("Tensors (%d)", len(rows)), true)
	m.table([]string{"tensor", "dtype", "shape", "bytes", "min", "max", "nan", "inf"},
		[]bool{false, false, false, true, true, true, true, true}, rows)
	end()
}

func (m *mdRenderer) footer() {
	m.printf("\n<sub>%s %s · report schema %d</sub>\n", mdText(m.r.Tool.Name), mdText(m.r.Tool.Version), m.r.SchemaVersion)
}

// diffValue formats a diff entry's value; a missing amax is "null".
func diffValue(d DiffEntry, v any) string {
	if v == nil && d.What == WhatQuantizerAmax {
		return "null"
	}
	return fmtValue(v)
}
