package calib_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ptqgate/ptqgate/fixtures"
	"github.com/ptqgate/ptqgate/internal/refdata"
	"github.com/ptqgate/ptqgate/internal/testckpt"
	"github.com/ptqgate/ptqgate/ptqcore/backend/cpu"
	"github.com/ptqgate/ptqgate/ptqcore/calib"
	"github.com/ptqgate/ptqgate/ptqcore/model"
	"github.com/ptqgate/ptqgate/ptqcore/quant"
	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
	"github.com/ptqgate/ptqgate/reports"
)

func preset(t *testing.T, name string) *quant.Recipe {
	t.Helper()
	r, err := quant.Load(name)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func exitCode(err error) int {
	var c interface{ ExitCode() int }
	if errors.As(err, &c) {
		return c.ExitCode()
	}
	return 1
}

// findings returns the report's findings of a rule.
func findings(r *reports.Report, rule string) []reports.Finding {
	var out []reports.Finding
	for _, f := range r.Findings {
		if f.Rule == rule {
			out = append(out, f)
		}
	}
	return out
}

// writeFixture writes a fixture checkpoint and returns its folder.
func writeFixture(t *testing.T, opt fixtures.Options) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "model")
	if err := fixtures.Write(dir, opt); err != nil {
		t.Fatal(err)
	}
	return dir
}

func fixtureOptions(t *testing.T, name string) fixtures.Options {
	t.Helper()
	opt, err := fixtures.Defaults(name)
	if err != nil {
		t.Fatal(err)
	}
	return opt
}

func mustLoad(t *testing.T, dir string) *model.Model {
	t.Helper()
	m, err := model.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestHookBypass: under the hook-bypass fault grouped execution skips the
// expert hooks; the run fails (exit 1) naming the uncalibrated expert
// input quantizers and the experts whose tokens never reached a hook.
// Eager execution is not affected. --allow-uncalibrated turns the errors
// into warnings and keeps the uncalibrated list.
func TestHookBypass(t *testing.T) {
	m, b := loadCase(t, "qwen3-moe-tiny")
	r := preset(t, "nvfp4_experts_only-fp8_kv")
	opt := calib.Options{Experts: model.ExpertsGrouped, Faults: calib.Faults{HookBypass: true}}
	res, err := calib.Run(m, cpu.New(), r, b, opt)
	if err == nil || exitCode(err) != 1 {
		t.Fatalf("hook-bypass: err %v, want a check failure (exit 1)", err)
	}
	if res == nil || res.Report == nil {
		t.Fatal("no result/report with the check failure")
	}
	want := []string{
		"model.layers.0.mlp.experts.gate_up_proj_input_quantizer", "model.layers.0.mlp.experts.down_proj_input_quantizer",
		"model.layers.1.mlp.experts.gate_up_proj_input_quantizer", "model.layers.1.mlp.experts.down_proj_input_quantizer",
	}
	if !slices.Equal(res.Uncalibrated, want) || !slices.Equal(res.Report.Uncalibrated, want) {
		t.Errorf("uncalibrated %v, want %v", res.Uncalibrated, want)
	}
	for _, e := range res.Experts {
		if e.GateUpCalls != 0 || e.DownCalls != 0 {
			t.Errorf("%s: calls %d/%d under hook-bypass", e.Name, e.GateUpCalls, e.DownCalls)
		}
	}
	// Weights are still calibrated from the weights; tokens still counted.
	if q, _ := res.Quantizer("model.layers.0.mlp.experts.gate_up_proj_weight_quantizers.3"); !q.Calibrated() || q.Calls != 0 {
		t.Errorf("expert weight quantizer under hook-bypass: amax %v calls %d", q.Amax, q.Calls)
	}
	if res.Experts[0].Tokens == 0 {
		t.Error("routing tokens not counted")
	}
	unc := findings(res.Report, calib.RuleUncalibrated)
	missed := findings(res.Report, calib.RuleExpertHookMissed)
	if len(unc) != 4 || len(missed) != 4 {
		t.Fatalf("%d uncalibrated and %d hook-missed findings, want 4 and 4", len(unc), len(missed))
	}
	if !strings.Contains(missed[0].Message, "expert(s) 0-7") || missed[0].Severity != reports.SeverityError {
		t.Errorf("hook-missed finding: %+v", missed[0])
	}
	if !strings.Contains(missed[len(missed)-1].Message, "expert(s) 0-6") {
		t.Errorf("layer 1 names experts 0-6 (7 is never routed): %s", missed[len(missed)-1].Message)
	}
	if !strings.Contains(err.Error(), "4 calib.uncalibrated") || !strings.Contains(err.Error(), "calib.expert-hook-missed") {
		t.Errorf("error message %q", err)
	}

	// Eager execution calls the hooks whatever the fault.
	opt.Experts = model.ExpertsEager
	if _, err := calib.Run(m, cpu.New(), r, b, opt); err != nil {
		t.Errorf("eager with hook-bypass: %v", err)
	}

	opt.Experts, opt.AllowUncalibrated = model.ExpertsGrouped, true
	res, err = calib.Run(m, cpu.New(), r, b, opt)
	if err != nil {
		t.Fatalf("--allow-uncalibrated: %v", err)
	}
	if !slices.Equal(res.Uncalibrated, want) || res.Report.Summary.Errors != 0 || res.Report.Summary.Warnings < 8 {
		t.Errorf("--allow-uncalibrated: uncalibrated %v, summary %+v", res.Uncalibrated, res.Report.Summary)
	}
}

// TestPluralMatch: without singular-name normalization the experts-only
// preset's weight pattern matches nothing (coverage error), and the
// default FP8 preset's "*weight_quantizer" misses the per-expert
// quantizers (plural error); both fail with exit 1.
func TestPluralMatch(t *testing.T) {
	m, b := loadCase(t, "qwen3-moe-tiny")
	for _, tc := range []struct {
		recipe string
		rules  []string
	}{
		{"nvfp4_experts_only-fp8_kv", []string{calib.RuleUnmatchedPattern, calib.RulePluralUnmatched}},
		{"fp8_default-fp8_kv", []string{calib.RulePluralUnmatched}},
	} {
		t.Run(tc.recipe, func(t *testing.T) {
			r := preset(t, tc.recipe)
			if _, err := calib.Run(m, cpu.New(), r, b, calib.Options{}); err != nil {
				t.Fatalf("without the fault: %v", err)
			}
			res, err := calib.Run(m, cpu.New(), r, b, calib.Options{Faults: calib.Faults{PluralMatch: true}})
			if exitCode(err) != 1 || res == nil {
				t.Fatalf("plural-match: err %v, want exit 1 with a result", err)
			}
			for _, rule := range tc.rules {
				fs := findings(res.Report, rule)
				var errs int
				for _, f := range fs {
					if f.Severity == reports.SeverityError {
						errs++
						if !strings.Contains(f.Message, "weight_quantizer") {
							t.Errorf("%s finding does not name the pattern: %s", rule, f.Message)
						}
					}
				}
				if errs == 0 {
					t.Errorf("no %s error finding", rule)
				}
			}
			q, _ := res.Quantizer("model.layers.1.mlp.experts.down_proj_weight_quantizers.2")
			if q.Enabled || q.Amax != nil || q.Calls != 0 {
				t.Errorf("expert weight quantizer under plural-match: enabled %v amax %v calls %d", q.Enabled, q.Amax, q.Calls)
			}
			if len(res.Report.Recipe.UnmatchedPatterns) == 0 && tc.recipe == "nvfp4_experts_only-fp8_kv" {
				t.Error("report lists no unmatched patterns")
			}
		})
	}
}

// TestLayerwiseVLM: layerwise calibration finds model.language_model.layers
// and gives the same amax and counts as the full pass; under the vlm-layers
// fault it searches model.layers only and fails (exit 1) naming the paths.
func TestLayerwiseVLM(t *testing.T) {
	_, b := loadCase(t, "qwen3-moe-tiny")
	m := mustLoad(t, testckpt.VLM(t, refdata.Dir("qwen3-moe-tiny")))
	full := run(t, m, cpu.New(), preset(t, "nvfp4_experts_only-fp8_kv"), b, calib.Options{})
	lw := run(t, m, cpu.New(), preset(t, "nvfp4_experts_only-fp8_kv_layerwise"), b, calib.Options{})
	if lw.Report.Recipe.Algorithm != "max (layerwise)" {
		t.Errorf("algorithm %q", lw.Report.Recipe.Algorithm)
	}
	for i := range full.Quantizers {
		a, c := full.Quantizers[i], lw.Quantizers[i]
		if !slices.Equal(a.Amax, c.Amax) || a.Calls != c.Calls {
			t.Errorf("%s: full amax %v calls %d, layerwise amax %v calls %d", a.Name, a.Amax, a.Calls, c.Amax, c.Calls)
		}
	}
	if !slices.EqualFunc(full.Experts, lw.Experts, equalExpert) {
		t.Error("expert accounting differs between full and layerwise calibration")
	}
	if !strings.HasPrefix(full.Quantizers[0].Name, "model.language_model.layers.0.") {
		t.Errorf("quantizer names keep the VLM prefix: %s", full.Quantizers[0].Name)
	}

	res, err := calib.Run(m, cpu.New(), preset(t, "nvfp4_experts_only-fp8_kv_layerwise"), b, calib.Options{Faults: calib.Faults{VLMLayers: true}})
	if exitCode(err) != 1 || res == nil {
		t.Fatalf("vlm-layers: err %v, want exit 1 with a report", err)
	}
	fs := findings(res.Report, calib.RuleNoDecoderLayers)
	if len(fs) != 1 || !strings.Contains(fs[0].Message, "searched model.layers;") || !strings.Contains(fs[0].Message, "model.language_model.layers") {
		t.Errorf("no-decoder-layers findings %+v", fs)
	}
	// The fault does not matter for a text-only checkpoint or a full pass.
	plain, b2 := loadCase(t, "qwen3-moe-tiny")
	if _, err := calib.Run(plain, cpu.New(), preset(t, "nvfp4_experts_only-fp8_kv_layerwise"), b2, calib.Options{Faults: calib.Faults{VLMLayers: true}}); err != nil {
		t.Errorf("vlm-layers on model.layers: %v", err)
	}
	if _, err := calib.Run(m, cpu.New(), preset(t, "nvfp4_experts_only-fp8_kv"), b, calib.Options{Faults: calib.Faults{VLMLayers: true}}); err != nil {
		t.Errorf("vlm-layers without layerwise: %v", err)
	}
}

// TestCalibAllExperts: the extra pass reaches every expert (rows = all
// tokens), feeds the expert input amax, keeps tokens and calls of the
// model's routing, and is identical in both expert modes.
func TestCalibAllExperts(t *testing.T) {
	m, b := loadCase(t, "qwen3-moe-tiny")
	r := loadRecipe(t, "fp8_all.yaml")
	plain := run(t, m, cpu.New(), r, b, calib.Options{})
	grouped := run(t, m, cpu.New(), r, b, calib.Options{AllExperts: true})
	eager := run(t, m, cpu.New(), r, b, calib.Options{AllExperts: true, Experts: model.ExpertsEager})
	tokens := int64(b.Tokens())
	for i, e := range grouped.Experts {
		p := plain.Experts[i]
		if e.AllExpertsRows == nil || *e.AllExpertsRows != tokens {
			t.Errorf("%s: all_experts_rows %v, want %d", e.Name, e.AllExpertsRows, tokens)
		}
		if e.Tokens != p.Tokens || e.GateUpCalls != p.GateUpCalls || e.DownCalls != p.DownCalls {
			t.Errorf("%s: tokens/calls %d/%d/%d changed from %d/%d/%d", e.Name, e.Tokens, e.GateUpCalls, e.DownCalls, p.Tokens, p.GateUpCalls, p.DownCalls)
		}
		if math.IsNaN(float64(e.GateUpInputAmax)) || math.IsNaN(float64(e.DownInputAmax)) {
			t.Errorf("%s: no per-expert input amax after the all-experts pass", e.Name)
		}
		if !math.IsNaN(float64(p.DownInputAmax)) && e.DownInputAmax < p.DownInputAmax {
			t.Errorf("%s: all-experts down input amax %g below the routed one %g", e.Name, e.DownInputAmax, p.DownInputAmax)
		}
	}
	if _, ok := grouped.PerExpertInputAmax["model.layers.1.mlp.experts.down_proj_input_quantizer.7"]; !ok {
		t.Error("the never-routed expert 7 of layer 1 has no per-expert input amax after the all-experts pass")
	}
	if !slices.EqualFunc(grouped.Experts, eager.Experts, equalExpert) {
		t.Error("all-experts accounting differs between modes")
	}
	for i := range grouped.Quantizers {
		g, e, p := grouped.Quantizers[i], eager.Quantizers[i], plain.Quantizers[i]
		if !slices.Equal(g.Amax, e.Amax) || g.Calls != p.Calls {
			t.Errorf("%s: grouped amax %v, eager %v; calls %d, plain %d", g.Name, g.Amax, e.Amax, g.Calls, p.Calls)
		}
		if g.Proj != "" && g.Role == quant.RoleInput && g.Amax[0] < p.Amax[0] {
			t.Errorf("%s: all-experts amax %g below the routed %g", g.Name, g.Amax[0], p.Amax[0])
		}
	}
	if len(grouped.ExpertsWithoutTokens) != 1 {
		t.Errorf("experts without tokens %v (routing is unchanged)", grouped.ExpertsWithoutTokens)
	}
	// The model output does not change.
	be := cpu.New()
	if err := m.Prepare(be); err != nil {
		t.Fatal(err)
	}
	a, err := m.Forward(be, b.Batch(0), model.PassOptions{Head: model.HeadLogits})
	if err != nil {
		t.Fatal(err)
	}
	c, err := m.Forward(be, b.Batch(0), model.PassOptions{Head: model.HeadLogits, AllExperts: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Logits, c.Logits) {
		t.Error("the all-experts pass changed the logits")
	}
}

// TestUnreachableFixture: the fixture option Unreachable really makes
// experts unreachable under the forward: they are the experts without
// tokens, with 0 calls and a weight amax from the weights.
func TestUnreachableFixture(t *testing.T) {
	for _, dtype := range []string{fixtures.DTypeF32, fixtures.DTypeBF16} {
		t.Run(dtype, func(t *testing.T) {
			opt := fixtureOptions(t, "qwen3-moe-dense-tiny")
			opt.DType = dtype
			opt.Unreachable = []fixtures.ExpertRef{{Layer: 0, Expert: 3}, {Layer: 2, Expert: 0}, {Layer: 2, Expert: 6}}
			m := mustLoad(t, writeFixture(t, opt))
			b := randomBatches(m.VocabSize(), 4, 2, 32)
			res := run(t, m, cpu.New(), preset(t, "nvfp4_experts_only-fp8_kv"), b, calib.Options{})
			var got []string
			for _, e := range res.ExpertsWithoutTokens {
				got = append(got, e.Name)
			}
			want := []string{"model.layers.0.mlp.experts.3", "model.layers.2.mlp.experts.0", "model.layers.2.mlp.experts.6"}
			if !slices.Equal(got, want) {
				t.Fatalf("experts without tokens %v, want %v", got, want)
			}
			for _, e := range res.Experts {
				unreachable := slices.Contains(want, e.Name)
				if unreachable != (e.Tokens == 0) {
					t.Errorf("%s: %d tokens (unreachable %v)", e.Name, e.Tokens, unreachable)
				}
				if unreachable && (e.GateUpCalls != 0 || e.DownCalls != 0) {
					t.Errorf("%s: calls %d/%d", e.Name, e.GateUpCalls, e.DownCalls)
				}
				for _, proj := range []string{"gate_up_proj", "down_proj"} {
					q, _ := res.Quantizer(fmt.Sprintf("%s.%s_weight_quantizers.%d", e.Module, proj, e.Expert))
					if !q.Calibrated() {
						t.Errorf("%s: no weight amax", q.Name)
					}
				}
			}
			if n := len(findings(res.Report, calib.RuleExpertWithoutTokens)); n != 3 {
				t.Errorf("%d expert-without-tokens findings, want 3", n)
			}
			if res.Report.Summary.Errors != 0 {
				t.Errorf("errors: %+v", res.Report.Findings)
			}
		})
	}
}

// randomBatches makes deterministic token batches.
func randomBatches(vocab, batches, seqs, length int) *calib.Batches {
	out := &calib.Batches{Path: "generated"}
	x := uint64(12345)
	for i := 0; i < batches; i++ {
		var bt [][]int32
		for s := 0; s < seqs; s++ {
			seq := make([]int32, length)
			for j := range seq {
				x = x*6364136223846793005 + 1442695040888963407
				seq[j] = int32((x >> 33) % uint64(vocab))
			}
			bt = append(bt, seq)
		}
		out.Batches = append(out.Batches, bt)
	}
	return out
}

// TestEagerOrderBF16: with top-8 routing in bf16 the expert sum's order
// matters (transformers' grouped and eager differ); both modes here use
// the eager order and agree bit for bit on amax and logits.
func TestEagerOrderBF16(t *testing.T) {
	opt := fixtureOptions(t, "qwen3-moe-tiny")
	opt.Experts, opt.TopK, opt.Unreachable = 16, 8, nil
	m := mustLoad(t, writeFixture(t, opt))
	b := randomBatches(m.VocabSize(), 2, 2, 24)
	r := loadRecipe(t, "fp8_all.yaml")
	g := run(t, m, cpu.New(), r, b, calib.Options{Experts: model.ExpertsGrouped})
	e := run(t, m, cpu.New(), r, b, calib.Options{Experts: model.ExpertsEager})
	for i := range g.Quantizers {
		if !slices.Equal(g.Quantizers[i].Amax, e.Quantizers[i].Amax) || g.Quantizers[i].Calls != e.Quantizers[i].Calls {
			t.Errorf("%s differs between modes", g.Quantizers[i].Name)
		}
	}
	be := cpu.New()
	if err := m.Prepare(be); err != nil {
		t.Fatal(err)
	}
	var logits [2][]float32
	for i, mode := range []model.ExpertsMode{model.ExpertsGrouped, model.ExpertsEager} {
		out, err := m.Forward(be, b.Batch(0), model.PassOptions{Experts: mode, Head: model.HeadLogits})
		if err != nil {
			t.Fatal(err)
		}
		logits[i] = out.Logits
	}
	if !slices.Equal(logits[0], logits[1]) {
		t.Error("bf16 top-8 logits differ between modes")
	}
}

// TestConstantAmaxAndDisabled (testdata/constant_amax.yaml): constant amax
// count as calibrated with their value (448 for use_constant_amax) and
// still count calls; disabled quantizers report 0 calls and no amax; no
// lm_head quantizer means no final norm is computed.
func TestConstantAmaxAndDisabled(t *testing.T) {
	m, b := loadCase(t, "qwen3-moe-tiny")
	cb := &countingBackend{Backend: cpu.New()}
	res := run(t, m, cb, loadRecipe(t, "constant_amax.yaml"), b, calib.Options{})
	for _, tc := range []struct {
		name  string
		amax  float32
		calls int64
	}{
		{"model.layers.0.self_attn.k_bmm_quantizer", 448, 3},
		{"model.layers.1.mlp.experts.gate_up_proj_input_quantizer", 2688, 21},
	} {
		q, _ := res.Quantizer(tc.name)
		if !q.Constant || !slices.Equal(q.Amax, []float32{tc.amax}) || q.Calls != tc.calls || !q.Calibrated() {
			t.Errorf("%s: constant %v amax %v calls %d, want %g and %d calls", tc.name, q.Constant, q.Amax, q.Calls, tc.amax, tc.calls)
		}
	}
	for _, name := range []string{"model.layers.0.self_attn.q_proj.input_quantizer", "model.layers.0.self_attn.q_proj.weight_quantizer", "lm_head.input_quantizer"} {
		q, _ := res.Quantizer(name)
		if q.Enabled || q.Amax != nil || q.Calls != 0 {
			t.Errorf("disabled %s: amax %v calls %d", name, q.Amax, q.Calls)
		}
	}
	for _, rq := range res.Report.Quantizers {
		if rq.Name == "model.layers.0.self_attn.q_proj.input_quantizer" && (rq.Format != "none" || rq.Amax != nil) {
			t.Errorf("report of a disabled quantizer: %+v", rq)
		}
		if rq.Name == "model.layers.0.mlp.experts.gate_up_proj_weight_quantizers.0" && (rq.Format != "nvfp4" || rq.BlockSize == nil || *rq.BlockSize != 16) {
			t.Errorf("report of an NVFP4 quantizer: %+v", rq)
		}
	}
	// Norms per batch and layer: input, post-attention, q_norm, k_norm; no final norm.
	if want := 4 * len(m.Layers) * len(b.Batches); cb.norms != want {
		t.Errorf("%d RMSNorm launches, want %d (no final norm without lm_head quantizers)", cb.norms, want)
	}
}

// TestInvalidAmax: an all-zero weight gives amax 0 and a NaN weight a NaN
// amax: both fail the run unless --allow-uncalibrated.
func TestInvalidAmax(t *testing.T) {
	opt := fixtureOptions(t, "qwen3-moe-tiny")
	opt.DType = fixtures.DTypeF32
	dir := writeFixture(t, opt)
	poison := func(tensor string, v float32) string {
		return testckpt.Rewrite(t, dir, func(s *safetensors.Source) bool {
			if s.Name == tensor {
				for i := 0; i < len(s.Data); i += 4 {
					binary.LittleEndian.PutUint32(s.Data[i:], math.Float32bits(v))
				}
			}
			return true
		})
	}
	b := randomBatches(256, 2, 2, 8)
	for _, tc := range []struct {
		tensor string
		value  float32
		quant  string
	}{
		{"model.layers.0.self_attn.o_proj.weight", 0, "model.layers.0.self_attn.o_proj.weight_quantizer"},
		{"model.layers.1.self_attn.v_proj.weight", float32(math.NaN()), "model.layers.1.self_attn.v_proj.weight_quantizer"},
	} {
		m := mustLoad(t, poison(tc.tensor, tc.value))
		res, err := calib.Run(m, cpu.New(), preset(t, "fp8_default-fp8_kv"), b, calib.Options{})
		if exitCode(err) != 1 || res == nil {
			t.Fatalf("%s = %g: err %v", tc.tensor, tc.value, err)
		}
		if !slices.Contains(res.Uncalibrated, tc.quant) {
			t.Errorf("%s not in uncalibrated %v", tc.quant, res.Uncalibrated)
		}
		// A NaN weight also poisons every activation after it.
		if !slices.ContainsFunc(findings(res.Report, calib.RuleInvalidAmax), func(f reports.Finding) bool { return f.Module == tc.quant }) {
			t.Errorf("no invalid-amax finding for %s", tc.quant)
		}
		if _, err := calib.Run(m, cpu.New(), preset(t, "fp8_default-fp8_kv"), b, calib.Options{AllowUncalibrated: true}); err != nil {
			t.Errorf("--allow-uncalibrated: %v", err)
		}
	}
}

// TestReport checks the calibration report model and its JSON.
func TestReport(t *testing.T) {
	m, b := loadCase(t, "qwen3-moe-tiny")
	var events []calib.Event
	res := run(t, m, cpu.New(), preset(t, "fp8_default-fp8_kv"), b, calib.Options{
		ToolVersion: "test", Progress: func(e calib.Event) { events = append(events, e) },
	})
	rep := res.Report
	if rep.Kind != reports.KindCalibration || rep.Tool.Version != "test" {
		t.Errorf("kind %q tool %+v", rep.Kind, rep.Tool)
	}
	want := reports.Model{Path: m.Dir, Architecture: "Qwen3MoeForCausalLM", DType: "float32", Layers: 2, Experts: 8, TopK: 2}
	if *rep.Model != want {
		t.Errorf("model %+v, want %+v", *rep.Model, want)
	}
	if rep.Recipe.Name != "fp8_default-fp8_kv" || rep.Recipe.Algorithm != "max" || len(rep.Recipe.UnmatchedPatterns) != 0 {
		t.Errorf("recipe %+v", rep.Recipe)
	}
	if len(rep.Quantizers) != len(res.Quantizers) || len(rep.Experts) != 16 || len(rep.ExpertsWithoutTokens) != 1 {
		t.Errorf("%d quantizers, %d experts, %d without tokens", len(rep.Quantizers), len(rep.Experts), len(rep.ExpertsWithoutTokens))
	}
	if ref := rep.ExpertsWithoutTokens[0]; ref != (reports.ExpertRef{Layer: 1, Expert: 7, Name: "model.layers.1.mlp.experts.7"}) {
		t.Errorf("expert without tokens %+v", ref)
	}
	if rep.Summary.Errors != 0 || rep.Summary.Warnings != 1 {
		t.Errorf("summary %+v", rep.Summary)
	}
	if len(rep.PerExpertInputAmax) != 30 {
		t.Errorf("%d per-expert input amax, want 30", len(rep.PerExpertInputAmax))
	}
	if rep.Run == nil || rep.Run.Extra["tokens"] != b.Tokens() || rep.Run.Extra["experts_impl"] != "grouped" {
		t.Errorf("run %+v", rep.Run)
	}
	var stages []string
	for _, e := range events {
		stages = append(stages, fmt.Sprintf("%s %d/%d", e.Stage, e.Index, e.Total))
	}
	if !slices.Equal(stages, []string{"weights 1/1", "batch 1/3", "batch 2/3", "batch 3/3"}) {
		t.Errorf("progress %v", stages)
	}
	path := filepath.Join(t.TempDir(), "r.json")
	if err := rep.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	back, err := reports.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Quantizers) != len(rep.Quantizers) || back.Quantizers[0].Amax == nil {
		t.Error("report does not round-trip")
	}
}

func TestInvalidTokenIDs(t *testing.T) {
	m, _ := loadCase(t, "qwen3-moe-tiny")
	b := &calib.Batches{Path: "calib.json", Batches: [][][]int32{{{1, 2}}, {{3, 256}}}}
	_, err := calib.Run(m, cpu.New(), preset(t, "fp8_default"), b, calib.Options{})
	if exitCode(err) != 1 || !strings.Contains(err.Error(), "batches[1][0][1]") || !strings.Contains(err.Error(), "256") {
		t.Errorf("token id 256 of vocab 256: %v", err)
	}
}
