package reports

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
)

func TestNamePatternAndLayerOf(t *testing.T) {
	tests := []struct {
		name, pattern string
		layer         int
	}{
		{"model.layers.3.mlp.experts.gate_up_proj_weight_quantizers.17", "model.layers.*.mlp.experts.gate_up_proj_weight_quantizers.*", 3},
		{"model.language_model.layers.12.self_attn.k_bmm_quantizer", "model.language_model.layers.*.self_attn.k_bmm_quantizer", 12},
		{"model.layers.0.mlp.experts.5.down_proj.weight", "model.layers.*.mlp.experts.*.down_proj.weight", 0},
		{"lm_head.input_quantizer", "lm_head.input_quantizer", -1},
		{"layers.x.q", "layers.x.q", -1},
		{"", "", -1},
	}
	for _, tc := range tests {
		if got := NamePattern(tc.name); got != tc.pattern {
			t.Errorf("NamePattern(%q) = %q, want %q", tc.name, got, tc.pattern)
		}
		if got := LayerOf(tc.name); got != tc.layer {
			t.Errorf("LayerOf(%q) = %d, want %d", tc.name, got, tc.layer)
		}
	}
}

func TestNaturalCompare(t *testing.T) {
	in := []string{"layers.10.x", "layers.2.x", "layers.1.y", "layers.01.x", "a", "layers.1.x", "b2", "b10"}
	slices.SortFunc(in, naturalCompare)
	want := []string{"a", "b2", "b10", "layers.1.x", "layers.01.x", "layers.1.y", "layers.2.x", "layers.10.x"}
	if !slices.Equal(in, want) {
		t.Errorf("natural order %q, want %q", in, want)
	}
}

func TestIntRanges(t *testing.T) {
	tests := map[string][]int{"": nil, "5": {5}, "0-3, 5, 7-8": {0, 1, 2, 3, 5, 7, 8}, "1, 3": {1, 3}}
	for want, in := range tests {
		if got := intRanges(in); got != want {
			t.Errorf("intRanges(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestFmtFloat(t *testing.T) {
	tests := map[float64]string{448: "448", 0.5: "0.5", 0.00123456: "0.001235", 1.5e9: "1.5e+09", -2: "-2",
		math.NaN(): "NaN", math.Inf(1): "+Inf", math.Inf(-1): "-Inf"}
	for in, want := range tests {
		if got := fmtFloat(in); got != want {
			t.Errorf("fmtFloat(%v) = %q, want %q", in, got, want)
		}
	}
	amax := map[string]*Amax{"null": nil, "2.5": ScalarAmax(2.5), "max 3 (2 values)": VectorAmax([]float64{1, 3}),
		"max NaN (2 values), 1 invalid": VectorAmax([]float64{1, math.NaN()})}
	for want, a := range amax {
		if got := fmtAmax(a); got != want {
			t.Errorf("fmtAmax = %q, want %q", got, want)
		}
	}
}

func TestCheckResultsKeepsEveryFinding(t *testing.T) {
	r := sampleVerify()
	// A finding whose (rule, target) has no recorded check still gets a case.
	r.AddFinding(Finding{Rule: "unlisted", Severity: SeverityError, Target: "vllm@main", Message: "m"})
	results := checkResults(r)
	n := 0
	for _, c := range results {
		n += len(c.Findings)
	}
	if n != len(r.Findings) {
		t.Errorf("cases hold %d findings, report has %d", n, len(r.Findings))
	}
	if len(results) != len(r.Checks)+1 {
		t.Errorf("%d cases for %d checks + 1 unlisted", len(results), len(r.Checks))
	}
	if results[0].Target != TargetAny {
		t.Errorf("target-independent checks sort first, got %q", results[0].Target)
	}
	// Without checks, one case per (rule, target) of the findings.
	r.Checks = nil
	if got := len(checkResults(r)); got != 6 {
		t.Errorf("derived %d cases, want 6", got)
	}
}

func TestAddCheckMerges(t *testing.T) {
	r := New(KindVerify, "v")
	r.AddCheck("R1", "vllm@main", "", 0)
	r.AddCheck("R1", "vllm@main", "desc", 2)
	r.AddCheck("R1", "sglang@main", "desc", 0)
	if len(r.Checks) != 2 || r.Checks[0].Findings != 2 || r.Checks[0].Description != "desc" {
		t.Errorf("checks %+v", r.Checks)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"checks":[{"rule":"R1","target":"vllm@main","description":"desc","findings":2}`) {
		t.Errorf("checks not encoded: %s", b)
	}
	b, _ = json.Marshal(New(KindVerify, "v"))
	if strings.Contains(string(b), `"checks"`) {
		t.Errorf("empty checks must be omitted (not recorded): %s", b)
	}
}

func TestPerExpertAmax(t *testing.T) {
	r := sampleCalibration()
	r.PerExpertInputAmax["model.layers.1.mlp.experts.gate_up_proj_input_quantizer.9"] = Float(math.NaN())
	r.PerExpertInputAmax["no-expert-suffix"] = 1
	ss := perExpertAmax(r)
	if len(ss) != 4 {
		t.Fatalf("%d spreads, want 4", len(ss))
	}
	s := ss[1] // layer 0 gate_up
	if s.Quantizer != "model.layers.0.mlp.experts.gate_up_proj_input_quantizer" || s.Min != 0.75 || s.MinExpert != 3 ||
		s.Max != 6.5 || s.MaxExpert != 0 || s.Median != 1.875 || !s.SharedFound || s.SharedAmax.Max() != 6.5 || s.spreadText() != "8.7x" {
		t.Errorf("layer 0 gate_up spread %+v", s)
	}
	if !ss[0].SharedFound || ss[0].SharedAmax != nil || ss[0].sharedText() != "null" {
		t.Errorf("uncalibrated shared quantizer: %+v", ss[0])
	}
	if ss[3].NonFinite != 1 || len(ss[3].Values) != 4 || ss[3].Max != 7.5 {
		t.Errorf("NaN must be counted, not used: %+v", ss[3])
	}
}

func TestLayerSummaryAndSilentExperts(t *testing.T) {
	r := sampleCalibration()
	ls := summarizeLayers(r)
	if len(ls) != 2 || ls[0].Silent != 1 || ls[1].NoTokens != 1 || ls[0].TokensMedian != 19 || ls[1].GateUpMax != 3 {
		t.Errorf("layer summary %+v", ls)
	}
	if s := silentExperts(r); len(s) != 1 || s[0].Layer != 0 || s[0].Expert != 3 {
		t.Errorf("silent experts %+v", s)
	}
	most, least := routingExtremes(r, 2)
	if most[0].Tokens != 51 || most[1].Tokens != 40 || least[0].Tokens != 3 || least[1].Tokens != 5 {
		t.Errorf("extremes most %+v least %+v", most, least)
	}
}

func TestGroupQuantizers(t *testing.T) {
	gs := groupQuantizers(realisticReport(3, 8).Quantizers)
	byRole := map[string]quantizerGroup{}
	for _, g := range gs {
		byRole[g.Role] = g
	}
	g := byRole["model.language_model.layers.*.mlp.experts.gate_up_proj_input_quantizer"]
	if g.Count != 3 || g.Enabled != 3 || g.Calibrated != 2 || !slices.Equal(g.Layers, []int{0, 1, 2}) {
		t.Errorf("gate_up input group %+v", g)
	}
	w := byRole["model.language_model.layers.*.mlp.experts.down_proj_weight_quantizers.*"]
	if w.Count != 24 || w.Calibrated != 24 || w.Formats[0] != "nvfp4" || !(w.AmaxMin > 0 && w.AmaxMin <= w.AmaxMax) {
		t.Errorf("down weight group %+v", w)
	}
}
