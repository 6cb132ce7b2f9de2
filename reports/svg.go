package reports

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"slices"
	"strconv"
	"strings"
)

// The SVG charts of the HTML report. Each builder returns markup with
// every dynamic string escaped; colours come from CSS classes (q0…q5,
// zero, none, …) so the page's light and dark palettes apply. Output is
// deterministic: coordinates are rounded and written with strconv.

// heatLevels is the number of colour steps of a heatmap.
const heatLevels = 6

// heatMaxCells is the largest grid drawn; a report claiming more experts
// (a corrupt expert index) gets the tables only.
const heatMaxCells = 1 << 18

// heatTipCells is the grid size up to which every heatmap cell has a
// tooltip.
const heatTipCells = 4096

func esc(s string) string { return html.EscapeString(s) }

// num writes a coordinate with at most one decimal.
func num(v float64) string {
	return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64)
}

// heatScale maps positive counts to colour levels: logarithmic when the
// counts span more than a factor of 10, else linear.
type heatScale struct {
	lo, hi float64
	log    bool
}

func newHeatScale(values []int64) (heatScale, bool) {
	s := heatScale{lo: math.Inf(1), hi: math.Inf(-1)}
	for _, v := range values {
		if v > 0 {
			s.lo = math.Min(s.lo, float64(v))
			s.hi = math.Max(s.hi, float64(v))
		}
	}
	if math.IsInf(s.lo, 1) {
		return s, false
	}
	s.log = s.hi/s.lo > 10
	return s, true
}

// level returns the colour level of a positive count.
func (s heatScale) level(v int64) int {
	if s.hi == s.lo {
		return heatLevels - 2
	}
	var t float64
	if s.log {
		t = math.Log(float64(v)/s.lo) / math.Log(s.hi/s.lo)
	} else {
		t = (float64(v) - s.lo) / (s.hi - s.lo)
	}
	return min(heatLevels-1, max(0, int(t*heatLevels)))
}

// legendItem is one swatch of a chart legend.
type legendItem struct {
	Class, Label string
}

// legend lists the levels that some count falls into, with integer
// ranges, then zero and missing cells when present.
func (s heatScale) legend(values []int64, zero, missing bool) []legendItem {
	used := make([]bool, heatLevels)
	lo := make([]int64, heatLevels)
	hi := make([]int64, heatLevels)
	for _, v := range values {
		if v <= 0 {
			continue
		}
		l := s.level(v)
		if !used[l] || v < lo[l] {
			lo[l] = v
		}
		if !used[l] || v > hi[l] {
			hi[l] = v
		}
		used[l] = true
	}
	var items []legendItem
	if zero {
		items = append(items, legendItem{"zero", "0"})
	}
	for l := range heatLevels {
		if used[l] {
			items = append(items, legendItem{"q" + strconv.Itoa(l), fmtRange(lo[l], hi[l])})
		}
	}
	if missing {
		items = append(items, legendItem{"none", "no data"})
	}
	return items
}

// heatmap draws the layer × expert grid of one metric. Every cell has a
// tooltip with all three counters of the expert.
func heatmap(g expertGrid, m expertMetric) (template.HTML, []legendItem) {
	if len(g.Layers) == 0 || g.Experts == 0 || len(g.Layers)*g.Experts > heatMaxCells {
		return "", nil
	}
	var values []int64
	zero, missing := false, false
	for _, l := range g.Layers {
		for e := range g.Experts {
			x, ok := g.at(l, e)
			switch {
			case !ok:
				missing = true
			case m.Value(x) == 0:
				zero = true
			default:
				values = append(values, m.Value(x))
			}
		}
	}
	scale, _ := newHeatScale(values)

	cw := min(40, max(4, 1080/g.Experts))
	ch := min(26, max(10, cw))
	const left, top = 44.0, 18.0
	gap := 1
	if cw < 6 {
		gap = 0
	}
	width := left + float64(cw*g.Experts) + 4
	height := top + float64(ch*len(g.Layers)) + 4
	var b strings.Builder
	// On narrow screens the map scrolls sideways rather than shrink below
	// 640 px.
	fmt.Fprintf(&b, `<svg class="chart heat" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %s %s" width="%s" height="%s" style="min-width:%spx" role="img" aria-label="%s by layer and expert">`,
		num(width), num(height), num(width), num(height), num(math.Min(width, 640)), esc(m.Title))
	step := 1
	for step*cw < 22 {
		step *= 2
	}
	for e := 0; e < g.Experts; e += step {
		fmt.Fprintf(&b, `<text class="ax" x="%s" y="12" text-anchor="middle">%d</text>`, num(left+float64(e*cw)+float64(cw)/2), e)
	}
	lstep := 1
	for lstep*ch < 12 {
		lstep++
	}
	// Large grids put tooltips on the tokens map only (they name all three
	// counters) and draw the others as one path per colour, which keeps a
	// 40 × 256 report at a few megabytes.
	tips := m.Key == "tokens" || len(g.Layers)*g.Experts <= heatTipCells
	paths := map[string]*strings.Builder{}
	var classes []string
	for i, l := range g.Layers {
		y := top + float64(i*ch)
		if i%lstep == 0 {
			fmt.Fprintf(&b, `<text class="ax" x="%s" y="%s" text-anchor="end">L%d</text>`, num(left-6), num(y+float64(ch)/2+4), l)
		}
		for e := range g.Experts {
			x := left + float64(e*cw)
			cls, tip := "none", fmt.Sprintf("layer %d, expert %d: no data", l, e)
			if ex, ok := g.at(l, e); ok {
				v := m.Value(ex)
				cls = "zero"
				if v > 0 {
					cls = "q" + strconv.Itoa(scale.level(v))
				}
				tip = fmt.Sprintf("layer %d, expert %d: %d tokens; hook calls gate_up %d, down %d", l, e, ex.Tokens, ex.GateUpCalls, ex.DownCalls)
			}
			if tips {
				fmt.Fprintf(&b, `<rect class="%s" x="%s" y="%s" width="%d" height="%d"><title>%s</title></rect>`,
					cls, num(x), num(y), cw-gap, ch-gap, esc(tip))
				continue
			}
			p, ok := paths[cls]
			if !ok {
				p = &strings.Builder{}
				paths[cls] = p
				classes = append(classes, cls)
			}
			fmt.Fprintf(p, "M%s %sh%dv%dh-%dz", num(x), num(y), cw-gap, ch-gap, cw-gap)
		}
	}
	slices.Sort(classes)
	for _, c := range classes {
		fmt.Fprintf(&b, `<path class="%s" d="%s"/>`, c, paths[c].String())
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()), scale.legend(values, zero, missing)
}

// axisScale maps values to a vertical pixel range, linear or logarithmic.
type axisScale struct {
	lo, hi   float64
	log      bool
	top, bot float64 // pixel rows of hi and lo
}

func (a axisScale) y(v float64) float64 {
	var t float64
	if a.log {
		t = (math.Log10(v) - math.Log10(a.lo)) / (math.Log10(a.hi) - math.Log10(a.lo))
	} else {
		t = (v - a.lo) / (a.hi - a.lo)
	}
	return a.bot - t*(a.bot-a.top)
}

// ticks returns axis tick values: powers of ten (and 2×, 5× when the axis
// spans few decades) on a log axis, "nice" steps on a linear one.
func (a axisScale) ticks() []float64 {
	var out []float64
	if a.log {
		lo, hi := math.Floor(math.Log10(a.lo)), math.Ceil(math.Log10(a.hi))
		mults := []float64{1}
		if hi-lo <= 2 {
			mults = []float64{1, 2, 5}
		}
		for d := lo; d <= hi; d++ {
			for _, m := range mults {
				v := m * math.Pow(10, d)
				if v >= a.lo*0.999 && v <= a.hi*1.001 {
					out = append(out, v)
				}
			}
		}
		return out
	}
	step := niceStep((a.hi - a.lo) / 4)
	for v := math.Ceil(a.lo/step) * step; v <= a.hi*1.0001; v += step {
		out = append(out, math.Round(v/step)*step)
	}
	return out
}

// niceStep rounds a raw step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 || math.IsNaN(raw) || math.IsInf(raw, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

// newAxis fits an axis to the finite positive values: log when they span
// more than a factor of 8, else linear from 0.
func newAxis(values []float64, top, bot float64) (axisScale, bool) {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range values {
		if finite(v) && v > 0 {
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
	}
	if math.IsInf(lo, 1) {
		return axisScale{}, false
	}
	a := axisScale{top: top, bot: bot}
	if hi/lo > 8 {
		a.log = true
		a.lo = math.Pow(10, math.Floor(math.Log10(lo)*4)/4)
		a.hi = math.Pow(10, math.Ceil(math.Log10(hi)*4)/4)
		if a.hi <= a.lo {
			a.hi = a.lo * 10
		}
		return a, true
	}
	step := niceStep(hi / 4)
	a.lo, a.hi = 0, math.Ceil(hi*1.05/step)*step
	return a, true
}

// spreadPoint is one layer of an input-amax spread chart.
type spreadPoint struct {
	Layer        int
	Spread       *amaxSpread // nil: no per-expert statistics for this layer
	Uncalibrated bool        // the shared quantizer exists but has no valid amax
}

// amaxSpreadChart draws, per layer, the range of per-expert input amax
// (min to max), its median, the experts as dots (when there are few) and
// the shared quantizer's amax as a diamond. Layers whose shared quantizer
// is uncalibrated get a red cross on the axis.
func amaxSpreadChart(role string, pts []spreadPoint) template.HTML {
	var values []float64
	for _, p := range pts {
		if s := p.Spread; s != nil {
			values = append(values, s.Min, s.Max)
			if s.SharedAmax.Valid() {
				values = append(values, s.SharedAmax.Max())
			}
		}
	}
	const left, top, plotH, bottom = 52.0, 10.0, 200.0, 26.0
	axis, ok := newAxis(values, top, top+plotH)
	if !ok {
		return ""
	}
	bw := math.Min(96, math.Max(12, 900/float64(len(pts))))
	width := left + bw*float64(len(pts)) + 8
	height := top + plotH + bottom
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart spread" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %s %s" width="%s" height="%s" style="min-width:%spx" role="img" aria-label="%s">`,
		num(width), num(height), num(width), num(height), num(math.Min(width, 480)), esc("per-expert input amax of "+role+" by layer"))
	for _, t := range axis.ticks() {
		y := axis.y(t)
		fmt.Fprintf(&b, `<line class="grid" x1="%s" x2="%s" y1="%s" y2="%s"/>`, num(left), num(width-4), num(y), num(y))
		fmt.Fprintf(&b, `<text class="ax" x="%s" y="%s" text-anchor="end">%s</text>`, num(left-6), num(y+4), esc(fmtFloatPrec(t, 3)))
	}
	lstep := 1
	for float64(lstep)*bw < 22 {
		lstep++
	}
	for i, p := range pts {
		cx := left + bw*(float64(i)+0.5)
		if i%lstep == 0 {
			fmt.Fprintf(&b, `<text class="ax" x="%s" y="%s" text-anchor="middle">%d</text>`, num(cx), num(top+plotH+16), p.Layer)
		}
		var tip string
		switch s := p.Spread; {
		case s != nil && s.MinExpert >= 0:
			fmt.Fprintf(&b, `<line class="rng" x1="%s" x2="%s" y1="%s" y2="%s"/>`, num(cx), num(cx), num(axis.y(s.Min)), num(axis.y(s.Max)))
			if len(s.Values) <= 64 {
				for j, v := range s.Values {
					if finite(v) && v > 0 {
						off := (float64(j%5) - 2) * bw / 14
						fmt.Fprintf(&b, `<circle class="dot" cx="%s" cy="%s" r="2"><title>%s</title></circle>`, num(cx+off), num(axis.y(v)),
							esc(fmt.Sprintf("layer %d, expert %d: input amax %s", p.Layer, s.Experts[j], fmtFloat(v))))
					}
				}
			}
			my := axis.y(s.Median)
			fmt.Fprintf(&b, `<line class="med" x1="%s" x2="%s" y1="%s" y2="%s"/>`, num(cx-bw*0.3), num(cx+bw*0.3), num(my), num(my))
			tip = fmt.Sprintf("layer %d: %d experts, min %s (expert %d), median %s, max %s (expert %d), max/min %s, shared amax %s",
				p.Layer, len(s.Values), fmtFloat(s.Min), s.MinExpert, fmtFloat(s.Median), fmtFloat(s.Max), s.MaxExpert, s.spreadText(), s.sharedText())
			if s.SharedAmax.Valid() {
				sy := axis.y(s.SharedAmax.Max())
				fmt.Fprintf(&b, `<path class="shr" d="M%s %sl5 5l-5 5l-5 -5z"/>`, num(cx), num(sy-5))
			}
		default:
			tip = fmt.Sprintf("layer %d: no per-expert input amax", p.Layer)
		}
		if p.Uncalibrated {
			tip += "; the shared input quantizer is uncalibrated"
			y := top + plotH - 8
			fmt.Fprintf(&b, `<path class="bad" d="M%s %sl10 10m0 -10l-10 10"/>`, num(cx-5), num(y-5))
		}
		fmt.Fprintf(&b, `<rect class="hit" x="%s" y="%s" width="%s" height="%s"><title>%s</title></rect>`,
			num(cx-bw/2), num(top), num(bw), num(plotH), esc(tip))
	}
	fmt.Fprintf(&b, `<line class="axis" x1="%s" x2="%s" y1="%s" y2="%s"/>`, num(left), num(width-4), num(top+plotH), num(top+plotH))
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// spreadPoints collects, for one role, the layers that have per-expert
// statistics or a shared quantizer of that role.
func spreadPoints(role string, spreads []amaxSpread, qs []Quantizer) []spreadPoint {
	byLayer := map[int]*spreadPoint{}
	var layers []int
	get := func(l int) *spreadPoint {
		p, ok := byLayer[l]
		if !ok {
			p = &spreadPoint{Layer: l}
			byLayer[l] = p
			layers = append(layers, l)
		}
		return p
	}
	for i := range spreads {
		if s := &spreads[i]; s.Role == role {
			get(s.Layer).Spread = s
		}
	}
	for _, q := range qs {
		if NamePattern(q.Name) == role && q.Enabled && !q.Amax.Valid() {
			get(LayerOf(q.Name)).Uncalibrated = true
		}
	}
	slices.Sort(layers)
	out := make([]spreadPoint, len(layers))
	for i, l := range layers {
		out[i] = *byLayer[l]
	}
	return out
}

// barSVG is a one-row horizontal bar for a table cell: the fraction of
// the row's width that the value takes.
func barSVG(frac float64, class string) template.HTML {
	frac = math.Max(0, math.Min(1, frac))
	return template.HTML(fmt.Sprintf(`<svg class="bar" viewBox="0 0 100 10" preserveAspectRatio="none" aria-hidden="true"><rect class="track" width="100" height="10"/><rect class="%s" width="%s" height="10"/></svg>`,
		esc(class), num(frac*100)))
}
