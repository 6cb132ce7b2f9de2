package export_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ptqgate/ptqgate/fixtures"
	"github.com/ptqgate/ptqgate/internal/refdata"
	"github.com/ptqgate/ptqgate/ptqcore/backend/cpu"
	"github.com/ptqgate/ptqgate/ptqcore/calib"
	"github.com/ptqgate/ptqgate/ptqcore/export"
	"github.com/ptqgate/ptqgate/ptqcore/model"
	"github.com/ptqgate/ptqgate/ptqcore/numerics"
	"github.com/ptqgate/ptqgate/ptqcore/quant"
	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
)

// perExpertName is the only form an expert tensor may take in an export:
// the per-expert split projections (vLLM and SGLang key their fused-MoE
// loaders on these names; a fused 3-D tensor flips them onto another path).
var perExpertName = regexp.MustCompile(`\.mlp\.experts\.\d+\.(gate|up|down)_proj\.(weight|weight_scale|weight_scale_2|input_scale)$`)

// TestQwen35Export exports the bf16 Qwen3.5-MoE VLM fixture (per-expert
// and fused source layouts) calibrated with the FP8 and the NVFP4
// experts-only presets, and checks what the toolkit's exporter writes for
// this family: per-expert split expert tensors only, the vision tower
// copied byte for byte in its source dtype and excluded, the Gated
// DeltaNet's unquantized parts (conv1d, A_log, dt_bias, norm) kept,
// in_proj_a/in_proj_b, routers and shared_expert_gate unquantized and
// excluded, the shared expert quantized like any Linear, and KV scales
// only for the full-attention layer.
func TestQwen35Export(t *testing.T) {
	b, err := calib.LoadBatches(filepath.Join(refdata.Dir("qwen3_5-moe-tiny"), "calib.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, layout := range []fixtures.Layout{fixtures.LayoutPerExpert, fixtures.LayoutFused} {
		opt, err := fixtures.Defaults("qwen3_5-moe-tiny")
		if err != nil {
			t.Fatal(err)
		}
		opt.Layout = layout
		src := filepath.Join(t.TempDir(), "src")
		if err := fixtures.Write(src, opt); err != nil {
			t.Fatal(err)
		}
		m, err := model.Load(src)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			recipe      string
			algo        string
			expertDType safetensors.DType
			dense       bool // the attention, linear_attn and shared expert projections are quantized
		}{
			{"fp8_default-fp8_kv", "FP8", safetensors.F8E4M3, true},
			{"nvfp4_experts_only-fp8_kv", "NVFP4", safetensors.U8, false},
		} {
			t.Run(fmt.Sprintf("%s/%s", layout, tc.recipe), func(t *testing.T) {
				r, err := quant.Load(tc.recipe)
				if err != nil {
					t.Fatal(err)
				}
				res, err := calib.Run(m, cpu.New(), r, b, calib.Options{})
				if err != nil {
					t.Fatal(err)
				}
				out := filepath.Join(t.TempDir(), "out")
				x, err := export.Export(export.FromCalibration(res), res.Report, export.Options{Out: out, DType: export.DTypeAuto})
				if err != nil {
					t.Fatal(err)
				}
				if x.QuantAlgo != tc.algo || x.KVCacheQuantAlgo != "FP8" {
					t.Errorf("quant_algo %q, kv %q", x.QuantAlgo, x.KVCacheQuantAlgo)
				}
				checkQwen35Export(t, src, out, x, res, tc.expertDType, tc.dense)
			})
		}
	}
}

func checkQwen35Export(t *testing.T, src, out string, x *export.Result, res *calib.Result, expertDType safetensors.DType, dense bool) {
	t.Helper()
	ck, err := safetensors.OpenCheckpoint(out)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	sck, err := safetensors.OpenCheckpoint(src)
	if err != nil {
		t.Fatal(err)
	}
	defer sck.Close()
	dtypeOf := func(name string) safetensors.DType {
		info, ok := ck.Tensor(name)
		if !ok {
			return "missing"
		}
		return info.DType
	}
	const lm = "model.language_model.layers."
	// Experts: per-expert split names only, never a fused 3-D tensor.
	for _, n := range ck.Names() {
		if strings.Contains(n, ".mlp.experts.") && !perExpertName.MatchString(n) {
			t.Errorf("expert tensor %s is not a per-expert split projection", n)
		}
	}
	var gateInput []byte
	for l := 0; l < 4; l++ {
		for e := 0; e < 8; e++ {
			for _, proj := range []string{"gate_proj", "up_proj", "down_proj"} {
				base := fmt.Sprintf("%s%d.mlp.experts.%d.%s", lm, l, e, proj)
				if dt := dtypeOf(base + ".weight"); dt != expertDType {
					t.Errorf("%s.weight: %s, want %s", base, dt, expertDType)
				}
				for _, s := range []string{".weight_scale", ".input_scale"} {
					if dtypeOf(base+s) == "missing" {
						t.Errorf("%s%s missing", base, s)
					}
				}
			}
			// gate_proj input scales: one shared value per layer.
			raw, err := ck.ReadTensor(fmt.Sprintf("%s%d.mlp.experts.%d.gate_proj.input_scale", lm, l, e))
			if err != nil {
				t.Fatal(err)
			}
			if e == 0 {
				gateInput = raw
			} else if !bytes.Equal(raw, gateInput) {
				t.Errorf("layer %d expert %d: gate_proj input_scale differs from expert 0's", l, e)
			}
		}
	}
	// The vision tower: every tensor copied byte for byte in bf16, excluded.
	visual := 0
	for _, n := range sck.Names() {
		if !strings.HasPrefix(n, "model.visual.") {
			continue
		}
		visual++
		a, err := sck.ReadTensor(n)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ck.ReadTensor(n)
		if err != nil || dtypeOf(n) != safetensors.BF16 || !bytes.Equal(a, got) {
			t.Errorf("vision tensor %s not copied in its source dtype (%s, %v)", n, dtypeOf(n), err)
		}
	}
	if visual != 21 {
		t.Errorf("%d vision tensors in the fixture, want 21", visual)
	}
	excluded := func(module string) bool {
		for _, e := range x.ExcludeModules {
			if ok, _ := filepath.Match(e, module); ok || e == module {
				return true
			}
		}
		return false
	}
	for _, mod := range []string{"model.visual", "model.visual.blocks.0.attn.qkv", "lm_head"} {
		if !excluded(mod) {
			t.Errorf("%s is not in exclude_modules %v", mod, x.ExcludeModules)
		}
	}
	quantized := safetensors.BF16
	if dense {
		quantized = safetensors.F8E4M3
	}
	for l := 0; l < 4; l++ {
		p := fmt.Sprintf("%s%d.", lm, l)
		for _, mod := range []string{"mlp.gate", "mlp.shared_expert_gate"} {
			if dtypeOf(p+mod+".weight") != safetensors.BF16 || !excluded(p+mod) {
				t.Errorf("%s%s: %s, excluded %v (want bf16, excluded)", p, mod, dtypeOf(p+mod+".weight"), excluded(p+mod))
			}
		}
		for _, proj := range []string{"gate_proj", "up_proj", "down_proj"} {
			if dt := dtypeOf(p + "mlp.shared_expert." + proj + ".weight"); dt != quantized {
				t.Errorf("%smlp.shared_expert.%s.weight: %s, want %s", p, proj, dt, quantized)
			}
		}
		if l == 3 {
			for _, proj := range []string{"q_proj", "k_proj", "v_proj", "o_proj"} {
				if dt := dtypeOf(p + "self_attn." + proj + ".weight"); dt != quantized {
					t.Errorf("%sself_attn.%s.weight: %s, want %s", p, proj, dt, quantized)
				}
			}
			for _, kv := range []string{"k", "v"} {
				name := fmt.Sprintf("%sself_attn.%s_proj.%s_scale", p, kv, kv)
				raw, err := ck.ReadTensor(name)
				if err != nil {
					t.Errorf("%s: %v", name, err)
					continue
				}
				got, _ := numerics.DecodeFloats("F32", raw)
				q, _ := res.Quantizer(fmt.Sprintf("%sself_attn.%s_bmm_quantizer", p, kv))
				if want := export.KVScale(q.Amax[0]); len(got) != 1 || got[0] != want {
					t.Errorf("%s = %v, want amax/448 = %g", name, got, want)
				}
			}
			continue
		}
		la := p + "linear_attn."
		for _, n := range []string{"conv1d.weight", "A_log", "dt_bias", "norm.weight"} {
			a, _ := sck.ReadTensor(la + n)
			got, err := ck.ReadTensor(la + n)
			if err != nil || !bytes.Equal(a, got) {
				t.Errorf("%s%s not kept as it was: %v", la, n, err)
			}
		}
		if info, _ := ck.Tensor(la + "conv1d.weight"); !slices.Equal(info.Shape, []int64{96, 1, 4}) {
			t.Errorf("conv1d.weight shape %v", info.Shape)
		}
		for _, proj := range []string{"in_proj_a", "in_proj_b"} {
			if dtypeOf(la+proj+".weight") != safetensors.BF16 || !excluded(la+proj) {
				t.Errorf("%s%s: %s, excluded %v (default-disabled: want bf16, excluded)", la, proj, dtypeOf(la+proj+".weight"), excluded(la+proj))
			}
		}
		for _, proj := range []string{"in_proj_qkv", "in_proj_z", "out_proj"} {
			if dt := dtypeOf(la + proj + ".weight"); dt != quantized {
				t.Errorf("%s%s.weight: %s, want %s", la, proj, dt, quantized)
			}
		}
		for _, n := range ck.Names() {
			if strings.HasPrefix(n, p) && (strings.HasSuffix(n, "k_scale") || strings.HasSuffix(n, "v_scale")) {
				t.Errorf("linear-attention layer %d has a KV scale %s", l, n)
			}
		}
	}
	var hq struct {
		Quantization struct {
			QuantAlgo      string   `json:"quant_algo"`
			ExcludeModules []string `json:"exclude_modules"`
		} `json:"quantization"`
	}
	raw, err := os.ReadFile(filepath.Join(out, "hf_quant_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &hq); err != nil {
		t.Fatal(err)
	}
	if hq.Quantization.QuantAlgo != x.QuantAlgo || !slices.Equal(hq.Quantization.ExcludeModules, x.ExcludeModules) {
		t.Errorf("hf_quant_config.json quantization %+v, export result %s %v", hq.Quantization, x.QuantAlgo, x.ExcludeModules)
	}
}
