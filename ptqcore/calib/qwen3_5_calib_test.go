package calib_test

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ptqgate/ptqgate/fixtures"
	"github.com/ptqgate/ptqgate/internal/refdata"
	"github.com/ptqgate/ptqgate/ptqcore/backend/cpu"
	"github.com/ptqgate/ptqgate/ptqcore/calib"
	"github.com/ptqgate/ptqgate/ptqcore/model"
	"github.com/ptqgate/ptqgate/reports"
)

const qwen35Case = "qwen3_5-moe-tiny"

// qwen35AmaxTol is the README's amax tolerance (relative 2e-5).
const qwen35AmaxTol = 2e-5

// qwen35FusedDir copies the reference's fused-experts file and config into
// a checkpoint folder of its own.
func qwen35FusedDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for from, to := range map[string]string{"model_fused.safetensors": "model.safetensors", "config.json": "config.json"} {
		in, err := os.Open(filepath.Join(refdata.Dir(qwen35Case), from))
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(filepath.Join(dir, to))
		if err == nil {
			_, err = io.Copy(out, in)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
		}
		in.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestQwen35MatchesReference compares every quantizer's amax (FP8 on
// everything incl. lm_head and the KV quantizers), the per-expert input
// amax and the per-expert calls and tokens with transformers
// (amax.json, counts.json "eager") for the Qwen3.5-MoE VLM, from both
// expert layouts, in both expert modes and layerwise (which must find
// model.language_model.layers).
func TestQwen35MatchesReference(t *testing.T) {
	ref, err := refdata.LoadAmax(qwen35Case)
	if err != nil {
		t.Fatal(err)
	}
	counts, err := refdata.LoadCounts(qwen35Case)
	if err != nil {
		t.Fatal(err)
	}
	b, err := calib.LoadBatches(filepath.Join(refdata.Dir(qwen35Case), "calib.json"))
	if err != nil {
		t.Fatal(err)
	}
	worst := 0.0
	for _, layout := range []string{"per-expert", "fused"} {
		dir := refdata.Dir(qwen35Case)
		if layout == "fused" {
			dir = qwen35FusedDir(t)
		}
		m := mustLoad(t, dir)
		for _, tc := range []struct {
			mode   model.ExpertsMode
			recipe string
		}{
			{model.ExpertsGrouped, "fp8_all.yaml"},
			{model.ExpertsEager, "fp8_all.yaml"},
			{model.ExpertsGrouped, "fp8_all_layerwise.yaml"},
		} {
			t.Run(fmt.Sprintf("%s/%s/%s", layout, tc.mode, strings.TrimSuffix(tc.recipe, ".yaml")), func(t *testing.T) {
				res := run(t, m, cpu.New(), loadRecipe(t, tc.recipe), b, calib.Options{Experts: tc.mode})
				checkAmax(t, res, ref, qwen35AmaxTol)
				checkCounts(t, res, counts, len(b.Batches))
				if len(res.Uncalibrated) != 0 {
					t.Errorf("uncalibrated: %v", res.Uncalibrated)
				}
				if n := len(res.Quantizers); n != 154-2*4 {
					t.Errorf("%d quantizers, want amax.json's 154 minus the 4 routers' 2", n)
				}
				for name, want := range ref.Amax {
					if q, ok := res.Quantizer(name); ok && len(q.Amax) == 1 {
						worst = max(worst, relErr(float64(q.Amax[0]), want))
					}
				}
				for name, want := range ref.AmaxPerExpertInput {
					worst = max(worst, relErr(float64(res.PerExpertInputAmax[name]), want))
				}
			})
		}
	}
	t.Logf("max relative amax error vs transformers: %.3g", worst)
}

// TestQwen35VLMLayers: the vlm-layers fault with the layerwise
// experts-only preset on the Qwen3.5 VLM fails (exit 1) naming the paths
// searched and where the layers are; without the fault layerwise finds
// model.language_model.layers and matches the full pass bit for bit.
func TestQwen35VLMLayers(t *testing.T) {
	m, b := loadCase(t, qwen35Case)
	r := preset(t, "nvfp4_experts_only-fp8_kv_layerwise")
	res, err := calib.Run(m, cpu.New(), r, b, calib.Options{Faults: calib.Faults{VLMLayers: true}})
	if exitCode(err) != 1 || res == nil {
		t.Fatalf("vlm-layers: err %v, want exit 1 with a report", err)
	}
	fs := findings(res.Report, calib.RuleNoDecoderLayers)
	if len(fs) != 1 || fs[0].Severity != reports.SeverityError || !strings.Contains(fs[0].Message, "searched model.layers;") ||
		!strings.Contains(fs[0].Message, "model.language_model.layers") {
		t.Errorf("no-decoder-layers findings %+v", fs)
	}
	if !strings.Contains(err.Error(), calib.RuleNoDecoderLayers) {
		t.Errorf("error %q does not name the rule", err)
	}
	lw := run(t, m, cpu.New(), r, b, calib.Options{})
	full := run(t, m, cpu.New(), preset(t, "nvfp4_experts_only-fp8_kv"), b, calib.Options{})
	if len(lw.Quantizers) != len(full.Quantizers) {
		t.Fatalf("%d layerwise quantizers, %d full", len(lw.Quantizers), len(full.Quantizers))
	}
	for i := range full.Quantizers {
		a, c := full.Quantizers[i], lw.Quantizers[i]
		if !slices.Equal(a.Amax, c.Amax) || a.Calls != c.Calls {
			t.Errorf("%s: full amax %v calls %d, layerwise amax %v calls %d", a.Name, a.Amax, a.Calls, c.Amax, c.Calls)
		}
	}
	// The experts-only preset with FP8 KV enables the full-attention
	// layer's k/v bmm quantizers only: linear_attn layers have none.
	var kv []string
	for _, q := range lw.Quantizers {
		if q.Enabled && q.Proj == "" {
			kv = append(kv, q.Name)
		}
	}
	want := []string{"model.language_model.layers.3.self_attn.k_bmm_quantizer", "model.language_model.layers.3.self_attn.v_bmm_quantizer"}
	if !slices.Equal(kv, want) {
		t.Errorf("enabled non-expert quantizers %v, want %v", kv, want)
	}
}

// TestQwen35HookBypass: under hook-bypass grouped execution the expert
// input quantizers of all four layers stay uncalibrated (exit 1).
func TestQwen35HookBypass(t *testing.T) {
	m, b := loadCase(t, qwen35Case)
	res, err := calib.Run(m, cpu.New(), preset(t, "nvfp4_experts_only-fp8_kv"), b, calib.Options{Faults: calib.Faults{HookBypass: true}})
	if exitCode(err) != 1 || res == nil {
		t.Fatalf("hook-bypass: err %v, want exit 1", err)
	}
	var want []string
	for l := 0; l < 4; l++ {
		for _, p := range []string{"gate_up_proj", "down_proj"} {
			want = append(want, fmt.Sprintf("model.language_model.layers.%d.mlp.experts.%s_input_quantizer", l, p))
		}
	}
	if !slices.Equal(res.Uncalibrated, want) {
		t.Errorf("uncalibrated %v, want %v", res.Uncalibrated, want)
	}
	if n := len(findings(res.Report, calib.RuleExpertHookMissed)); n != 8 {
		t.Errorf("%d expert-hook-missed findings, want 8", n)
	}
}

// TestQwen35Fixture: the qwen3_5-moe-tiny fixture (bf16, and f32) loads
// and calibrates cleanly, and in bf16 the two expert modes agree bit for
// bit on every amax, every count and the logits (both use the eager
// rounding points).
func TestQwen35Fixture(t *testing.T) {
	for _, tc := range []struct {
		dtype  string
		layout fixtures.Layout
	}{{fixtures.DTypeBF16, fixtures.LayoutPerExpert}, {fixtures.DTypeF32, fixtures.LayoutFused}} {
		t.Run(tc.dtype, func(t *testing.T) {
			opt := fixtureOptions(t, qwen35Case)
			opt.DType, opt.Layout = tc.dtype, tc.layout
			m := mustLoad(t, writeFixture(t, opt))
			if m.Prefix != "model.language_model" || len(m.Unused) == 0 {
				t.Errorf("prefix %q, %d unused tensors", m.Prefix, len(m.Unused))
			}
			b := randomBatches(m.VocabSize(), 3, 2, 20)
			r := loadRecipe(t, "fp8_all.yaml")
			g := run(t, m, cpu.New(), r, b, calib.Options{Experts: model.ExpertsGrouped})
			e := run(t, m, cpu.New(), r, b, calib.Options{Experts: model.ExpertsEager})
			if g.Report.Summary.Errors != 0 || len(g.Uncalibrated) != 0 {
				t.Errorf("errors %+v, uncalibrated %v", g.Report.Findings, g.Uncalibrated)
			}
			for i := range g.Quantizers {
				a, c := g.Quantizers[i], e.Quantizers[i]
				if !slices.Equal(bitsOf(a.Amax), bitsOf(c.Amax)) || a.Calls != c.Calls {
					t.Errorf("%s: grouped amax %v calls %d, eager %v calls %d", a.Name, a.Amax, a.Calls, c.Amax, c.Calls)
				}
			}
			if !slices.EqualFunc(g.Experts, e.Experts, equalExpert) {
				t.Error("expert accounting differs between modes")
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
			if !slices.Equal(bitsOf(logits[0]), bitsOf(logits[1])) {
				t.Error("logits differ between expert modes")
			}
			if tc.dtype == fixtures.DTypeBF16 {
				for _, v := range logits[0] {
					if math.Float32bits(v)&0xffff != 0 {
						t.Fatalf("bf16 logit %g is not a bf16 value", v)
					}
				}
			}
		})
	}
}

func bitsOf(xs []float32) []uint32 {
	out := make([]uint32, len(xs))
	for i, v := range xs {
		out[i] = math.Float32bits(v)
	}
	return out
}
