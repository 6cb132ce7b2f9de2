package reports

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
)

// diffBase is a small clean calibration report that the cases mutate.
func diffBase() *Report {
	r := New(KindCalibration, "1.0.0")
	r.Model = &Model{Architecture: "Qwen3MoeForCausalLM", Layers: 1, Experts: 2, TopK: 1}
	r.Quantizers = []Quantizer{
		{Name: "model.layers.0.mlp.experts.gate_up_proj_input_quantizer", Enabled: true, Format: "fp8", Amax: ScalarAmax(4), Calls: 6},
		{Name: "model.layers.0.mlp.experts.gate_up_proj_weight_quantizers.0", Enabled: true, Format: "fp8", Amax: ScalarAmax(0.5), Calls: 3},
		{Name: "lm_head.input_quantizer", Format: "none"},
	}
	r.Experts = []Expert{{Layer: 0, Expert: 0, Tokens: 10, GateUpCalls: 3, DownCalls: 3}, {Layer: 0, Expert: 1, Tokens: 7, GateUpCalls: 3, DownCalls: 3}}
	r.DequantError = []DequantError{{Module: "model.layers.0.mlp.experts.gate_up_proj", RelativeError: 0.02, MaxAbsError: 0.1}}
	r.AddFinding(Finding{Rule: "kv-scale", Severity: SeverityWarning, Target: "vllm@main", Tensor: "k_scale", Message: "1.0"})
	return r
}

func TestDiff(t *testing.T) {
	type want struct {
		what, change string
		regression   bool
	}
	tests := []struct {
		name   string
		mutate func(b, n *Report)
		opt    DiffOptions
		want   []want // every entry, in order
		rules  []string
	}{
		{name: "identical", mutate: func(b, n *Report) {}},
		{name: "amax lost", mutate: func(b, n *Report) { n.Quantizers[0].Amax = nil },
			want: []want{{WhatQuantizerAmax, ChangeRegression, true}}, rules: []string{RuleDiffAmaxLost}},
		{name: "amax became NaN", mutate: func(b, n *Report) { n.Quantizers[0].Amax = ScalarAmax(math.NaN()) },
			want: []want{{WhatQuantizerAmax, ChangeRegression, true}}, rules: []string{RuleDiffAmaxInvalid}},
		{name: "amax became zero", mutate: func(b, n *Report) { n.Quantizers[1].Amax = ScalarAmax(0) },
			want: []want{{WhatQuantizerAmax, ChangeRegression, true}}, rules: []string{RuleDiffAmaxInvalid}},
		{name: "amax recovered", mutate: func(b, n *Report) { b.Quantizers[0].Amax = nil },
			want: []want{{WhatQuantizerAmax, ChangeImprovement, false}}},
		{name: "amax changed", mutate: func(b, n *Report) { n.Quantizers[0].Amax = ScalarAmax(4.5) },
			want: []want{{WhatQuantizerAmax, ChangeChanged, false}}},
		{name: "amax within tolerance", mutate: func(b, n *Report) { n.Quantizers[0].Amax = ScalarAmax(4 * (1 + 1e-9)) },
			opt: DefaultDiffOptions()},
		{name: "amax noise compared exactly", mutate: func(b, n *Report) { n.Quantizers[0].Amax = ScalarAmax(4 * (1 + 1e-9)) },
			want: []want{{WhatQuantizerAmax, ChangeChanged, false}}},
		{name: "quantizer disabled is not a lost amax", mutate: func(b, n *Report) {
			n.Quantizers[0].Enabled, n.Quantizers[0].Amax, n.Quantizers[0].Format = false, nil, "none"
		}, want: []want{{WhatQuantizerEnabled, ChangeChanged, false}, {WhatQuantizerFormat, ChangeChanged, false}}},
		{name: "newly uncalibrated", mutate: func(b, n *Report) { n.Uncalibrated = []string{"other.input_quantizer"} },
			want: []want{{WhatQuantizerUncalibrated, ChangeRegression, true}}, rules: []string{RuleDiffUncalibrated}},
		{name: "lost amax is flagged once", mutate: func(b, n *Report) {
			n.Quantizers[0].Amax = nil
			n.Uncalibrated = []string{n.Quantizers[0].Name}
		}, want: []want{{WhatQuantizerAmax, ChangeRegression, true}}, rules: []string{RuleDiffAmaxLost}},
		{name: "expert lost its calls", mutate: func(b, n *Report) { n.Experts[1].GateUpCalls, n.Experts[1].DownCalls = 0, 0 },
			want:  []want{{WhatExpertGateUpCalls, ChangeRegression, true}, {WhatExpertDownCalls, ChangeRegression, true}},
			rules: []string{RuleDiffExpertCallsLost, RuleDiffExpertCallsLost}},
		{name: "expert calls and tokens changed", mutate: func(b, n *Report) { n.Experts[0].GateUpCalls, n.Experts[0].Tokens = 2, 4 },
			want: []want{{WhatExpertGateUpCalls, ChangeChanged, false}, {WhatExpertTokens, ChangeChanged, false}}},
		{name: "expert hooks fixed", mutate: func(b, n *Report) { b.Experts[0].DownCalls = 0 },
			want: []want{{WhatExpertDownCalls, ChangeImprovement, false}}},
		{name: "new error finding", mutate: func(b, n *Report) {
			n.AddFinding(Finding{Rule: "expert-input-scale", Severity: SeverityError, Target: "vllm@main", Tensor: "x.input_scale", Message: "missing"})
		}, want: []want{{WhatFinding, ChangeRegression, true}}, rules: []string{RuleDiffNewError}},
		{name: "error that the baseline had is not new", mutate: func(b, n *Report) {
			f := Finding{Rule: "expert-input-scale", Severity: SeverityError, Target: "vllm@main", Tensor: "x.input_scale", Message: "missing"}
			b.AddFinding(f)
			f.Message = "worded differently"
			n.AddFinding(f)
		}},
		{name: "warning escalated to error", mutate: func(b, n *Report) { n.Findings[0].Severity = SeverityError; n.Summarize() },
			want: []want{{WhatFinding, ChangeRegression, true}, {WhatFinding, ChangeImprovement, false}}, rules: []string{RuleDiffNewError}},
		{name: "same error on another target is new", mutate: func(b, n *Report) {
			f := Finding{Rule: "r", Severity: SeverityError, Target: "vllm@main", Tensor: "t"}
			b.AddFinding(f)
			n.AddFinding(f)
			f.Target = "sglang@main"
			n.AddFinding(f)
		}, want: []want{{WhatFinding, ChangeRegression, true}}, rules: []string{RuleDiffNewError}},
		{name: "new warning is neutral, resolved warning an improvement", mutate: func(b, n *Report) {
			n.Findings[0].Tensor = "v_scale"
		}, want: []want{{WhatFinding, ChangeImprovement, false}, {WhatFinding, ChangeAdded, false}}},
		{name: "dequant grew past ratio and floor", mutate: func(b, n *Report) { n.DequantError[0].RelativeError = 0.031 },
			want: []want{{WhatDequantError, ChangeRegression, true}}, rules: []string{RuleDiffDequantGrew}},
		{name: "dequant grew within ratio", mutate: func(b, n *Report) { n.DequantError[0].RelativeError = 0.029 },
			want: []want{{WhatDequantError, ChangeChanged, false}}},
		{name: "dequant grew under the floor", mutate: func(b, n *Report) {
			b.DequantError[0].RelativeError, n.DequantError[0].RelativeError = 1e-5, 9e-4
		}, opt: DiffOptions{DequantFloor: 1e-3}, want: []want{{WhatDequantError, ChangeChanged, false}}},
		{name: "dequant threshold option", mutate: func(b, n *Report) { n.DequantError[0].RelativeError = 0.05 },
			opt: DiffOptions{DequantRatio: 3}, want: []want{{WhatDequantError, ChangeChanged, false}}},
		{name: "dequant became NaN", mutate: func(b, n *Report) { n.DequantError[0].RelativeError = Float(math.NaN()) },
			want: []want{{WhatDequantError, ChangeRegression, true}}, rules: []string{RuleDiffDequantGrew}},
		{name: "dequant shrank", mutate: func(b, n *Report) { n.DequantError[0].RelativeError = 0.01 },
			want: []want{{WhatDequantError, ChangeImprovement, false}}},
		{name: "sections only in one report are not compared", mutate: func(b, n *Report) {
			n.Experts, n.Quantizers, n.DequantError = nil, nil, nil
		}},
		{name: "quantizers added and removed", mutate: func(b, n *Report) { n.Quantizers[2].Name = "lm_head.weight_quantizer" },
			want: []want{{WhatQuantizer, ChangeRemoved, false}, {WhatQuantizer, ChangeAdded, false}}},
		{name: "model changed", mutate: func(b, n *Report) { n.Model.Experts = 4 },
			want: []want{{WhatModel, ChangeChanged, false}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, n := diffBase(), diffBase()
			tc.mutate(b, n)
			d := Diff(b, n, tc.opt)
			if d.Kind != KindDiff || d.Tool.Version != "1.0.0" {
				t.Errorf("kind %q, tool %+v", d.Kind, d.Tool)
			}
			if len(d.Diff) != len(tc.want) {
				t.Fatalf("entries %+v, want %+v", d.Diff, tc.want)
			}
			for i, w := range tc.want {
				e := d.Diff[i]
				if e.What != w.what || e.Change != w.change || e.Regression != w.regression {
					t.Errorf("entry %d = %+v, want %+v", i, e, w)
				}
			}
			var rules []string
			for _, f := range d.Findings {
				if f.Severity != SeverityError || f.Target != TargetAny {
					t.Errorf("regression finding %+v must be an error for any target", f)
				}
				rules = append(rules, f.Rule)
			}
			if len(rules) != len(tc.rules) {
				t.Fatalf("findings %v, want %v", rules, tc.rules)
			}
			for i := range rules {
				if rules[i] != tc.rules[i] {
					t.Errorf("findings %v, want %v", rules, tc.rules)
				}
			}
			if d.Summary.Errors != len(tc.rules) || passed(d) != (len(tc.rules) == 0) {
				t.Errorf("summary %+v, passed %v", d.Summary, passed(d))
			}
		})
	}
}

func TestDiffChecksAndRoundTrip(t *testing.T) {
	d := sampleDiff()
	if len(d.Checks) != 6 {
		t.Errorf("diff evaluated %d checks, want one per regression rule: %+v", len(d.Checks), d.Checks)
	}
	for _, c := range d.Checks {
		n := 0
		for _, f := range d.Findings {
			if f.Rule == c.Rule {
				n++
			}
		}
		if c.Findings != n {
			t.Errorf("check %s counts %d findings, report has %d", c.Rule, c.Findings, n)
		}
	}
	// Rendering the diff after a JSON round trip (values decode as
	// float64 and strings) gives the same text.
	var before, after, js bytes.Buffer
	if err := RenderText(&before, d, TextOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if err := RenderText(&after, &back, TextOptions{}); err != nil {
		t.Fatal(err)
	}
	if before.String() != after.String() {
		t.Errorf("text differs after a JSON round trip:\n%s", firstDiff(before.Bytes(), after.Bytes()))
	}
}

func TestDiffNilAndDeterminism(t *testing.T) {
	if d := Diff(nil, nil, DiffOptions{}); d.Kind != KindDiff || len(d.Diff) != 0 || !passed(d) {
		t.Errorf("nil reports: %+v", d)
	}
	a, _ := json.Marshal(sampleDiff())
	b, _ := json.Marshal(sampleDiff())
	if !bytes.Equal(a, b) {
		t.Errorf("Diff is not deterministic")
	}
}
