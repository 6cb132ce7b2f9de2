package reports

import (
	"bytes"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// update rewrites the golden files under testdata/ instead of comparing:
// go test ./reports -update
var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./reports -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test ./reports -update rewrites it); first difference:\n%s", name, firstDiff(want, got))
	}
}

// firstDiff shows the first differing line of two texts.
func firstDiff(want, got []byte) string {
	wl, gl := bytes.Split(want, []byte("\n")), bytes.Split(got, []byte("\n"))
	for i := 0; i < max(len(wl), len(gl)); i++ {
		var w, g []byte
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if !bytes.Equal(w, g) {
			return fmt.Sprintf("line %d\nwant: %q\ngot:  %q", i+1, w, g)
		}
	}
	return "(same lines, different bytes)"
}

func ip(v int) *int       { return &v }
func i64(v int64) *int64  { return &v }
func fp(v float64) *Float { return F(v) }

func sampleModel() *Model {
	return &Model{Path: "ckpt/qwen3-moe-tiny", Architecture: "Qwen3MoeForCausalLM", DType: "bf16", Layers: 2, Experts: 4, TopK: 2}
}
func sampleRun() *Run {
	return &Run{StartedAt: "2026-05-04T09:30:00Z", DurationSeconds: 3.25, Host: "ci-runner-7", Device: "cpu",
		Command: []string{"ptqgate", "quantize", "--model", "ckpt/qwen3-moe-tiny"}, Paths: map[string]string{"model": "/src/ckpt/qwen3-moe-tiny"}}
}

// sampleInspect is a small inspect report with a NaN-carrying tensor.
func sampleInspect() *Report {
	r := New(KindInspect, "0.3.0")
	r.Model = sampleModel()
	r.Tensors = []Tensor{
		{Name: "model.embed_tokens.weight", DType: "BF16", Shape: []int64{256, 64}, Bytes: 32768, File: "model.safetensors", Min: fp(-0.11), Max: fp(0.12), NaN: i64(0), Inf: i64(0)},
		{Name: "model.layers.0.mlp.experts.gate_up_proj", DType: "F8_E4M3", Shape: []int64{4, 64, 32}, Bytes: 8192, File: "model.safetensors", Min: fp(-448), Max: fp(448), NaN: i64(0), Inf: i64(0)},
		{Name: "model.layers.0.mlp.experts.gate_up_proj_weight_scale", DType: "F32", Shape: []int64{4}, Bytes: 16, File: "model.safetensors", Min: fp(0.0021), Max: fp(0.0034), NaN: i64(0), Inf: i64(0)},
		{Name: "model.layers.0.mlp.experts.gate_up_proj_input_scale", DType: "F32", Shape: []int64{}, Bytes: 4, File: "model.safetensors", Min: fp(math.NaN()), Max: fp(math.NaN()), NaN: i64(1), Inf: i64(0)},
		{Name: "model.layers.0.mlp.gate.weight", DType: "BF16", Shape: []int64{4, 32}, Bytes: 256, File: "model.safetensors"},
		{Name: "model.layers.10.self_attn.k_scale", DType: "F32", Shape: []int64{}, Bytes: 4, File: "model.safetensors", Min: fp(1), Max: fp(1), NaN: i64(0), Inf: i64(0)},
		{Name: "model.layers.2.self_attn.k_scale", DType: "F32", Shape: []int64{}, Bytes: 4, File: "model.safetensors", Min: fp(0.5), Max: fp(0.5), NaN: i64(0), Inf: i64(0)},
	}
	r.AddFinding(Finding{Rule: "tensor-nonfinite", Severity: SeverityError, Target: TargetAny, Tensor: "model.layers.0.mlp.experts.gate_up_proj_input_scale",
		Message: "scale tensor holds 1 NaN value", Source: "INTERFACES.md"})
	return r
}

// sampleCalibration is a small calibration report with one uncalibrated
// quantizer, one expert without tokens and one expert whose hooks did not
// fire.
func sampleCalibration() *Report {
	r := New(KindCalibration, "0.3.0")
	r.Model = sampleModel()
	r.Recipe = &Recipe{Name: "fp8_default-fp8_kv", Source: "preset", Algorithm: "max", UnmatchedPatterns: []string{"*mlp.shared_expert*"}}
	counts := [2][4][3]int64{ // tokens, gate_up, down
		{{40, 3, 3}, {22, 3, 3}, {17, 2, 2}, {5, 0, 0}},
		{{51, 3, 3}, {30, 3, 3}, {0, 0, 0}, {3, 1, 1}},
	}
	for l := range 2 {
		p := fmt.Sprintf("model.layers.%d", l)
		r.Quantizers = append(r.Quantizers,
			Quantizer{Name: p + ".self_attn.k_bmm_quantizer", Enabled: true, Format: "fp8", Amax: ScalarAmax(12.5 + float64(l)), Calls: 3},
			Quantizer{Name: p + ".self_attn.v_bmm_quantizer", Enabled: true, Format: "fp8", Amax: ScalarAmax(4.25), Calls: 3},
			Quantizer{Name: p + ".mlp.experts.gate_up_proj_input_quantizer", Enabled: true, Format: "fp8", Amax: ScalarAmax(6.5 + float64(l)), Calls: 11 - int64(l)},
		)
		down := Quantizer{Name: p + ".mlp.experts.down_proj_input_quantizer", Enabled: true, Format: "fp8", Amax: ScalarAmax(3.75), Calls: 8}
		if l == 0 {
			down.Amax, down.Calls = nil, 0
		}
		r.Quantizers = append(r.Quantizers, down)
		for e := range 4 {
			r.Quantizers = append(r.Quantizers,
				Quantizer{Name: fmt.Sprintf("%s.mlp.experts.gate_up_proj_weight_quantizers.%d", p, e), Enabled: true, Format: "fp8",
					Amax: ScalarAmax(0.25 + 0.125*float64(e)), Calls: counts[l][e][1]})
			tok := counts[l][e]
			x := Expert{Layer: l, Expert: e, Tokens: tok[0], GateUpCalls: tok[1], DownCalls: tok[2]}
			r.Experts = append(r.Experts, x)
			if tok[0] == 0 {
				r.ExpertsWithoutTokens = append(r.ExpertsWithoutTokens, ExpertRef{Layer: l, Expert: e, Name: fmt.Sprintf("%s.mlp.experts.%d", p, e)})
			}
		}
	}
	r.Quantizers = append(r.Quantizers, Quantizer{Name: "lm_head.input_quantizer", Format: "none"})
	r.PerExpertInputAmax = map[string]Float{}
	for l := range 2 {
		for e, v := range []float64{6.5, 2.25, 1.5, 0.75} {
			if l == 1 && e == 2 {
				continue
			}
			r.PerExpertInputAmax[fmt.Sprintf("model.layers.%d.mlp.experts.gate_up_proj_input_quantizer.%d", l, e)] = Float(v + float64(l))
			r.PerExpertInputAmax[fmt.Sprintf("model.layers.%d.mlp.experts.down_proj_input_quantizer.%d", l, e)] = Float(v / 2)
		}
	}
	r.Uncalibrated = []string{"model.layers.0.mlp.experts.down_proj_input_quantizer"}
	r.AddFinding(Finding{Rule: "uncalibrated", Severity: SeverityError, Target: TargetAny, Module: "model.layers.0.mlp.experts",
		Tensor: "model.layers.0.mlp.experts.down_proj_input_quantizer", Message: "enabled quantizer has no amax: its hook saw no input in 3 batches"})
	r.AddFinding(Finding{Rule: "recipe-coverage", Severity: SeverityError, Target: TargetAny,
		Message: "enabling pattern *mlp.shared_expert* matched no quantizer"})
	r.AddFinding(Finding{Rule: "expert-hooks", Severity: SeverityError, Target: TargetAny, Module: "model.layers.0.mlp.experts.3",
		Message: "expert received 5 tokens but its gate_up and down hooks never fired"})
	r.AddFinding(Finding{Rule: "input-amax-spread", Severity: SeverityWarning, Target: TargetAny, Tensor: "model.layers.0.mlp.experts.gate_up_proj_input_quantizer",
		Message: "per-expert input amax spans 8.7x (0.75 to 6.5); the shared scale uses the maximum"})
	r.AddFinding(Finding{Rule: "expert-no-tokens", Severity: SeverityInfo, Target: TargetAny, Module: "model.layers.1.mlp.experts.2",
		Message: "expert received no tokens; its input amax comes from the shared quantizer"})
	r.Run = sampleRun()
	return r
}

// sampleExport is a small export report with dequantization errors.
func sampleExport() *Report {
	r := New(KindExport, "0.3.0")
	r.Model = sampleModel()
	r.Recipe = &Recipe{Name: "nvfp4_experts_only-fp8_kv", Source: "preset", Algorithm: "max"}
	r.Quantizers = []Quantizer{
		{Name: "model.layers.0.mlp.experts.gate_up_proj_input_quantizer", Enabled: true, Format: "nvfp4", Amax: ScalarAmax(6.5), Calls: 11},
		{Name: "model.layers.0.mlp.experts.gate_up_proj_weight_quantizers.0", Enabled: true, Format: "nvfp4", Amax: VectorAmax([]float64{0.5, 0.75, 0.25, 0.125}), Calls: 3, BlockSize: ip(16)},
		{Name: "model.layers.0.self_attn.k_bmm_quantizer", Enabled: true, Format: "fp8", Amax: ScalarAmax(12.5), Calls: 3},
		{Name: "model.layers.0.self_attn.q_proj.input_quantizer", Format: "none"},
	}
	r.DequantError = []DequantError{
		{Module: "model.layers.0.mlp.experts.gate_up_proj", RelativeError: 0.081, MaxAbsError: 0.0123},
		{Module: "model.layers.0.mlp.experts.down_proj", RelativeError: 0.094, MaxAbsError: 0.0101},
		{Module: "model.layers.1.mlp.experts.gate_up_proj", RelativeError: 0.079, MaxAbsError: 0.0119},
		{Module: "model.layers.1.mlp.experts.down_proj", RelativeError: Float(math.Inf(1)), MaxAbsError: Float(math.Inf(1))},
	}
	r.AddFinding(Finding{Rule: "export-self-check", Severity: SeverityInfo, Target: TargetAny,
		Message: "wrote 2 shards, 118 tensors; hf_quant_config.json quant_algo NVFP4"})
	return r
}

// sampleVerify is a small verify report with findings of every severity
// on two targets, recorded checks and awkward characters in messages.
func sampleVerify() *Report {
	r := New(KindVerify, "0.3.0")
	r.Model = sampleModel()
	r.AddFinding(Finding{Rule: "expert-input-scale", Severity: SeverityError, Target: "vllm@main",
		Tensor: "model.layers.0.mlp.experts.gate_up_proj.input_scale", Module: "model.layers.0.mlp.experts",
		Message:        "input_scale missing for the fused experts | expected shape [] <F32>",
		EngineBehavior: "loads and silently runs with input scale 1.0", Source: "specs/vllm.md §4.2"})
	r.AddFinding(Finding{Rule: "expert-input-scale", Severity: SeverityError, Target: "sglang@main",
		Tensor: "model.layers.0.mlp.experts.gate_up_proj.input_scale", Module: "model.layers.0.mlp.experts",
		Message:        "input_scale missing for the fused experts | expected shape [] <F32>",
		EngineBehavior: "KeyError at load: 'model.layers.0.mlp.experts.w13_input_scale'", Source: "specs/sglang.md §3"})
	r.AddFinding(Finding{Rule: "kv-scale", Severity: SeverityWarning, Target: "vllm@main", Tensor: "model.layers.1.self_attn.k_scale",
		Message: "k_scale is exactly 1.0 in every layer (older toolkits clamped it)", EngineBehavior: "uses the scale as written"})
	r.AddFinding(Finding{Rule: "weight-scale-shards", Severity: SeverityWarning, Target: "sglang@main", Tensor: "model.layers.1.self_attn.qkv_proj.weight_scale",
		Message: "q/k/v weight scales differ (0.0021, 0.0034, 0.0029)", EngineBehavior: "requantizes with the largest scale"})
	r.AddFinding(Finding{Rule: "quant-config", Severity: SeverityInfo, Target: TargetAny, Message: "quant_algo FP8, kv_cache_quant_algo FP8 & producer modelopt 0.47.0"})
	for _, target := range []string{"vllm@main", "sglang@main"} {
		for _, rule := range []struct{ rule, desc string }{
			{"expert-input-scale", "every routed expert has an input_scale the engine reads"},
			{"kv-scale", "KV scales are present, finite and in range"},
			{"weight-scale-shards", "fused shards carry consistent weight scales"},
			{"weight-scale-shape", "weight_scale shapes match the format"},
		} {
			n := 0
			for _, f := range r.Findings {
				if f.Rule == rule.rule && f.Target == target {
					n++
				}
			}
			r.AddCheck(rule.rule, target, rule.desc, n)
		}
	}
	r.AddCheck("quant-config", TargetAny, "hf_quant_config.json is consistent with the tensors", 1)
	r.DequantError = []DequantError{
		{Module: "model.layers.0.self_attn.qkv_proj", RelativeError: 0.031, MaxAbsError: 0.0042},
		{Module: "model.layers.1.self_attn.qkv_proj", RelativeError: 0.029, MaxAbsError: 0.0039},
	}
	r.SortFindings()
	r.Run = &Run{StartedAt: "2026-05-04T09:31:00Z", DurationSeconds: 0.42, Device: "cpu"}
	return r
}

// sampleBaseline is the calibration report before the regression: every
// quantizer calibrated, every expert's hooks fired.
func sampleBaseline() *Report {
	r := sampleCalibration()
	r.Findings, r.Summary = nil, Summary{}
	r.Uncalibrated = nil
	for i := range r.Quantizers {
		if r.Quantizers[i].Enabled && r.Quantizers[i].Amax == nil {
			r.Quantizers[i].Amax, r.Quantizers[i].Calls = ScalarAmax(3.5), 8
		}
	}
	for i := range r.Experts {
		e := &r.Experts[i]
		if e.Tokens > 0 && e.GateUpCalls == 0 {
			e.GateUpCalls, e.DownCalls = 2, 2
		}
	}
	r.AddFinding(Finding{Rule: "expert-no-tokens", Severity: SeverityInfo, Target: TargetAny, Module: "model.layers.1.mlp.experts.2",
		Message: "expert received no tokens; its input amax comes from the shared quantizer"})
	r.AddFinding(Finding{Rule: "input-amax-spread", Severity: SeverityWarning, Target: TargetAny, Tensor: "model.layers.1.mlp.experts.gate_up_proj_input_quantizer",
		Message: "per-expert input amax spans 4.4x"})
	r.DequantError = []DequantError{{Module: "model.layers.0.mlp.experts.gate_up_proj", RelativeError: 0.03, MaxAbsError: 0.01}}
	return r
}

// sampleDiff compares sampleBaseline with sampleCalibration.
func sampleDiff() *Report {
	cur := sampleCalibration()
	cur.DequantError = []DequantError{{Module: "model.layers.0.mlp.experts.gate_up_proj", RelativeError: 0.09, MaxAbsError: 0.02}}
	return Diff(sampleBaseline(), cur, DefaultDiffOptions())
}

// sampleReports are the small hand-built reports of every kind that the
// golden files render.
func sampleReports() map[string]*Report {
	return map[string]*Report{
		"inspect":     sampleInspect(),
		"calibration": sampleCalibration(),
		"export":      sampleExport(),
		"verify":      sampleVerify(),
		"diff":        sampleDiff(),
	}
}

var sampleNames = []string{"inspect", "calibration", "export", "verify", "diff"}

// realisticReport builds a deterministic export report of a model with
// the given shape: per-expert accounting with skewed routing, a few
// experts without tokens and one layer whose hooks were bypassed,
// per-expert input amax, findings of every severity, dequantization errors
// and recorded checks. It is what the HTML screenshots and the size tests
// use.
func realisticReport(layers, experts int) *Report {
	rng := rand.New(rand.NewPCG(7, 11))
	r := New(KindExport, "0.3.0")
	r.Model = &Model{Path: "/models/qwen3.5-moe-a3b", Architecture: "Qwen3_5MoeForConditionalGeneration", DType: "bf16", Layers: layers, Experts: experts, TopK: 8}
	r.Recipe = &Recipe{Name: "nvfp4_experts_only-fp8_kv", Source: "preset", Algorithm: "max"}
	r.PerExpertInputAmax = map[string]Float{}
	const batches = 16
	bypassed := layers - 1
	for l := range layers {
		p := fmt.Sprintf("model.language_model.layers.%d", l)
		r.Quantizers = append(r.Quantizers,
			Quantizer{Name: p + ".self_attn.k_bmm_quantizer", Enabled: true, Format: "fp8", Amax: ScalarAmax(8 + 4*rng.Float64()), Calls: batches},
			Quantizer{Name: p + ".self_attn.v_bmm_quantizer", Enabled: true, Format: "fp8", Amax: ScalarAmax(2 + rng.Float64()), Calls: batches})
		var shared [2]float64
		var sharedCalls [2]int64
		for e := range experts {
			// Zipf-like routing: a few hot experts, a long tail, some cold.
			w := 1 / math.Pow(float64((e*7+l*3)%experts+1), 0.9)
			tokens := int64(w * 4000 * (0.5 + rng.Float64()))
			if rng.IntN(23) == 0 {
				tokens = 0
			}
			calls := min(int64(batches), tokens/3+1)
			if tokens == 0 {
				calls = 0
			}
			gu, dn := calls, calls
			if l == bypassed {
				gu, dn = 0, 0
			}
			r.Experts = append(r.Experts, Expert{Layer: l, Expert: e, Tokens: tokens, GateUpCalls: gu, DownCalls: dn})
			if tokens == 0 {
				r.ExpertsWithoutTokens = append(r.ExpertsWithoutTokens, ExpertRef{Layer: l, Expert: e, Name: fmt.Sprintf("%s.mlp.experts.%d", p, e)})
			}
			for i, proj := range []string{"gate_up_proj", "down_proj"} {
				amax := math.Exp(rng.NormFloat64()*0.6) * (2.5 + float64(i)*4 + float64(l))
				if l != bypassed && tokens > 0 {
					r.PerExpertInputAmax[fmt.Sprintf("%s.mlp.experts.%s_input_quantizer.%d", p, proj, e)] = Float(amax)
					shared[i] = math.Max(shared[i], amax)
					sharedCalls[i] += calls
				}
				wq := Quantizer{Name: fmt.Sprintf("%s.mlp.experts.%s_weight_quantizers.%d", p, proj, e), Enabled: true, Format: "nvfp4",
					Amax: ScalarAmax(0.05 + 0.2*rng.Float64()), Calls: calls, BlockSize: ip(16)}
				if l == bypassed {
					wq.Calls = 0
				}
				r.Quantizers = append(r.Quantizers, wq)
			}
		}
		for i, proj := range []string{"gate_up_proj", "down_proj"} {
			q := Quantizer{Name: fmt.Sprintf("%s.mlp.experts.%s_input_quantizer", p, proj), Enabled: true, Format: "nvfp4", Calls: sharedCalls[i]}
			if l != bypassed {
				q.Amax = ScalarAmax(shared[i])
			} else {
				r.Uncalibrated = append(r.Uncalibrated, q.Name)
				r.AddFinding(Finding{Rule: "uncalibrated", Severity: SeverityError, Target: TargetAny, Tensor: q.Name,
					Message: "enabled quantizer has no amax: grouped expert execution bypassed the hook (0 calls in 16 batches)"})
			}
			r.Quantizers = append(r.Quantizers, q)
			r.DequantError = append(r.DequantError, DequantError{Module: fmt.Sprintf("%s.mlp.experts.%s", p, proj),
				RelativeError: Float(0.07 + 0.03*rng.Float64()), MaxAbsError: Float(0.01 + 0.01*rng.Float64())})
		}
		r.DequantError = append(r.DequantError, DequantError{Module: p + ".self_attn.qkv_proj", RelativeError: Float(0.02 + 0.01*rng.Float64()), MaxAbsError: Float(0.004)})
	}
	r.DequantError[len(r.DequantError)-2].RelativeError = Float(math.NaN())
	for _, target := range []string{"vllm@main", "sglang@main"} {
		r.AddFinding(Finding{Rule: "expert-input-scale", Severity: SeverityError, Target: target,
			Tensor:  fmt.Sprintf("model.language_model.layers.%d.mlp.experts.gate_up_proj_input_scale", bypassed),
			Message: "input_scale missing for the fused experts", EngineBehavior: map[string]string{
				"vllm@main": "loads and silently runs with input scale 1.0", "sglang@main": "KeyError at load"}[target], Source: map[string]string{
				"vllm@main": "specs/vllm.md", "sglang@main": "specs/sglang.md"}[target]})
	}
	r.AddFinding(Finding{Rule: "input-scale-spread", Severity: SeverityWarning, Target: "vllm@main", Tensor: "model.language_model.layers.1.mlp.experts.down_proj_input_scale",
		Message: "per-expert input amax spans 14x; the shared scale clips nothing but wastes 3.8 bits on cold experts", EngineBehavior: "uses one input scale for all experts"})
	r.AddFinding(Finding{Rule: "kv-scale", Severity: SeverityWarning, Target: "sglang@main", Tensor: "model.language_model.layers.0.self_attn.k_scale",
		Message: "k_scale is exactly 1.0", EngineBehavior: "uses the scale as written"})
	for _, e := range r.ExpertsWithoutTokens[:min(3, len(r.ExpertsWithoutTokens))] {
		r.AddFinding(Finding{Rule: "expert-no-tokens", Severity: SeverityInfo, Target: TargetAny, Module: e.Name,
			Message: "expert received no tokens in 16 batches; its weights are quantized from the weights alone"})
	}
	for _, target := range []string{"vllm@main", "sglang@main"} {
		for _, rule := range []string{"expert-input-scale", "input-scale-spread", "kv-scale", "weight-scale-shape", "quant-config"} {
			n := 0
			for _, f := range r.Findings {
				if f.Rule == rule && f.Target == target {
					n++
				}
			}
			r.AddCheck(rule, target, "", n)
		}
	}
	r.SortFindings()
	r.Run = &Run{StartedAt: "2026-05-04T09:30:00Z", DurationSeconds: 812.4, Host: "gpu-node-3", Device: "cuda"}
	return r
}
