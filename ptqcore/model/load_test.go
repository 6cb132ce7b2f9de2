package model_test

import (
	"encoding/json"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ptqgate/ptqgate/internal/refdata"
	"github.com/ptqgate/ptqgate/internal/testckpt"
	"github.com/ptqgate/ptqgate/ptqcore/backend"
	"github.com/ptqgate/ptqgate/ptqcore/backend/cpu"
	"github.com/ptqgate/ptqgate/ptqcore/model"
	"github.com/ptqgate/ptqgate/ptqcore/numerics"
	"github.com/ptqgate/ptqgate/ptqcore/quant"
	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
)

func exitCode(err error) int {
	var c interface{ ExitCode() int }
	if errors.As(err, &c) {
		return c.ExitCode()
	}
	if errors.Is(err, fs.ErrNotExist) {
		return 2
	}
	return 1
}

// rewrite copies the reference checkpoint name into a new folder
// (testckpt.Rewrite), passing each tensor through edit (return keep=false
// to drop it) and the parsed config.json through editConfig.
func rewrite(t *testing.T, name string, edit func(s *safetensors.Source) bool, editConfig func(map[string]any)) string {
	t.Helper()
	dir := testckpt.Rewrite(t, refdata.Dir(name), edit)
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	if editConfig != nil {
		editConfig(cfg)
	}
	raw, err = json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLoadErrors(t *testing.T) {
	const name = "qwen3-moe-tiny"
	emptyDir := t.TempDir()
	badJSON := t.TempDir()
	if err := os.WriteFile(filepath.Join(badJSON, "config.json"), []byte("{\"architectures\": [\"Qwen3MoeForCausalLM\"],"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		dir  func() string
		code int
		msg  []string
	}{
		{"missing dir", func() string { return filepath.Join(emptyDir, "nope") }, 2, []string{"nope"}},
		{"no config.json", func() string { return emptyDir }, 1, []string{"config.json is missing"}},
		{"config does not parse", func() string { return badJSON }, 1, []string{"config.json", "not a JSON object"}},
		{"unknown architecture", func() string {
			return rewrite(t, name, nil, func(c map[string]any) { c["architectures"] = []string{"MixtralForCausalLM"} })
		}, 2, []string{"MixtralForCausalLM", "Qwen3MoeForCausalLM"}},
		{"key of the wrong type", func() string {
			return rewrite(t, name, nil, func(c map[string]any) { c["hidden_size"] = "64" })
		}, 1, []string{"config.json", `"hidden_size"`, "integer"}},
		{"missing required key", func() string {
			return rewrite(t, name, nil, func(c map[string]any) { delete(c, "num_hidden_layers") })
		}, 1, []string{`"num_hidden_layers"`, "missing"}},
		{"unsupported activation", func() string {
			return rewrite(t, name, nil, func(c map[string]any) { c["hidden_act"] = "gelu" })
		}, 2, []string{"hidden_act", "gelu"}},
		{"unsupported rope type", func() string {
			return rewrite(t, name, nil, func(c map[string]any) {
				c["rope_parameters"] = map[string]any{"rope_theta": 1e4, "rope_type": "yarn"}
			})
		}, 2, []string{"yarn"}},
		{"missing tensor", func() string {
			return rewrite(t, name, func(s *safetensors.Source) bool { return s.Name != "model.layers.1.self_attn.k_norm.weight" }, nil)
		}, 1, []string{"model.layers.1.self_attn.k_norm.weight", "missing"}},
		{"missing expert", func() string {
			return rewrite(t, name, func(s *safetensors.Source) bool { return s.Name != "model.layers.0.mlp.experts.5.up_proj.weight" }, nil)
		}, 1, []string{"model.layers.0.mlp.experts.5.up_proj.weight", "missing"}},
		{"mis-shaped tensor", func() string {
			return rewrite(t, name, func(s *safetensors.Source) bool {
				if s.Name == "model.layers.0.self_attn.q_proj.weight" {
					s.Shape = []int64{32, 128}
				}
				return true
			}, nil)
		}, 1, []string{"model.layers.0.self_attn.q_proj.weight", "[32 128]", "[64 64]"}},
		{"config disagrees with experts", func() string {
			return rewrite(t, name, nil, func(c map[string]any) { c["num_local_experts"] = 4 })
		}, 1, []string{"model.layers.0.mlp.gate.weight", "[8 64]"}},
		{"quantized weights", func() string {
			return rewrite(t, name, func(s *safetensors.Source) bool {
				if s.Name == "model.layers.0.self_attn.o_proj.weight" {
					s.DType = safetensors.F8E4M3
					s.Data = s.Data[:len(s.Data)/4]
				}
				return true
			}, nil)
		}, 1, []string{"model.layers.0.self_attn.o_proj.weight", "F8_E4M3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := model.Load(tc.dir())
			if err == nil {
				t.Fatal("Load succeeded")
			}
			if c := exitCode(err); c != tc.code {
				t.Errorf("exit code %d, want %d (%v)", c, tc.code, err)
			}
			for _, m := range tc.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
		})
	}
}

// TestVLMPrefix loads a checkpoint whose text model lives under
// model.language_model (as a vision-language checkpoint stores it) with
// its config under text_config: same modules with the prefix, same logits.
func TestVLMPrefix(t *testing.T) {
	dir := rewrite(t, "qwen3-moe-tiny", func(s *safetensors.Source) bool {
		if strings.HasPrefix(s.Name, "model.") {
			s.Name = "model.language_model." + strings.TrimPrefix(s.Name, "model.")
		}
		return true
	}, func(c map[string]any) {
		text := map[string]any{}
		for k, v := range c {
			if k != "architectures" && k != "transformers_version" {
				text[k] = v
				delete(c, k)
			}
		}
		c["text_config"] = text
		c["model_type"] = "qwen3_moe_vl_test"
		c["dtype"] = "float32"
	})
	m, err := model.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Prefix != "model.language_model" || m.LayersPath() != "model.language_model.layers" || !m.Config.Nested {
		t.Fatalf("prefix %q, layers %q, nested %v", m.Prefix, m.LayersPath(), m.Config.Nested)
	}
	mods := m.Modules()
	if mods[0].Name != "model.language_model.layers.0.self_attn.q_proj" {
		t.Errorf("first module %q", mods[0].Name)
	}
	names := quant.Enumerate(mods)
	if !slices.ContainsFunc(names, func(q quant.Quantizer) bool {
		return q.Name == "model.language_model.layers.1.mlp.experts.gate_up_proj_weight_quantizers.7"
	}) {
		t.Error("no quantizer model.language_model.layers.1.mlp.experts.gate_up_proj_weight_quantizers.7")
	}
	bs := batches(t, "qwen3-moe-tiny")[:1]
	_, got := forward(t, dir, model.ExpertsGrouped, bs)
	_, want := forward(t, refdata.Dir("qwen3-moe-tiny"), model.ExpertsGrouped, bs)
	if !slices.Equal(bits(got[0].Logits), bits(want[0].Logits)) {
		t.Error("logits of the prefixed checkpoint differ")
	}
}

// TestLowPrecision computes qwen3-moe-tiny in bfloat16 and float16 (the
// f32 weights are rounded at load, as transformers casts them): both expert
// modes agree bit for bit, every activation is representable in the dtype,
// and the logits stay near the float32 reference (measured max deviation
// 0.025 for bf16, 0.004 for f16; tolerances 4-5x that).
func TestLowPrecision(t *testing.T) {
	exp := openExpected(t, "qwen3-moe-tiny")
	want := exp.floats(t, "logits.b0")
	for _, tc := range []struct {
		dtype string
		round func(float32) float32
		tol   float64
	}{
		{"bfloat16", numerics.RoundBF16, 0.1},
		{"float16", numerics.RoundF16, 0.02},
	} {
		t.Run(tc.dtype, func(t *testing.T) {
			dir := rewrite(t, "qwen3-moe-tiny", nil, func(c map[string]any) { c["dtype"] = tc.dtype })
			bs := batches(t, "qwen3-moe-tiny")
			m, grouped := forward(t, dir, model.ExpertsGrouped, bs)
			if m.DType.String() != tc.dtype {
				t.Fatalf("model dtype %v", m.DType)
			}
			_, eager := forward(t, dir, model.ExpertsEager, bs)
			for bi := range grouped {
				if !slices.Equal(bits(grouped[bi].Logits), bits(eager[bi].Logits)) {
					t.Errorf("batch %d: grouped and eager logits differ", bi)
				}
			}
			for li, h := range grouped[0].Hidden {
				for i, v := range h {
					if tc.round(v) != v {
						t.Fatalf("hidden.layer%d[%d] = %g is not a %s value", li, i, v, tc.dtype)
					}
				}
			}
			check(t, "logits.b0 ("+tc.dtype+" vs float32 reference)", grouped[0].Logits, want, tc.tol, 0)
		})
	}
}

func TestParseConfig(t *testing.T) {
	base := `"architectures": ["Qwen3MoeForCausalLM"], "vocab_size": 32, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2`
	for _, tc := range []struct {
		name  string
		json  string
		check func(t *testing.T, c *model.Config)
	}{
		{"defaults", `{` + base + `}`, func(t *testing.T, c *model.Config) {
			if c.NumKeyValueHeads != 2 || c.HeadDim != 8 || c.RopeTheta != 10000 || c.RMSNormEps != 1e-6 || c.DType != backend.F32 ||
				c.DecoderSparseStep != 1 || c.NormTopKProb || c.TieWordEmbeddings || c.HiddenAct != "silu" {
				t.Errorf("defaults: %+v", c)
			}
		}},
		{"hub spellings", `{` + base + `, "num_experts": 16, "num_experts_per_tok": 4, "rope_theta": 1e6, "torch_dtype": "bfloat16", "head_dim": 4}`,
			func(t *testing.T, c *model.Config) {
				if c.NumExperts != 16 || c.RopeTheta != 1e6 || c.DType != backend.BF16 || c.DTypeName != "bfloat16" || c.HeadDim != 4 {
					t.Errorf("hub keys: experts %d theta %g dtype %v head_dim %d", c.NumExperts, c.RopeTheta, c.DType, c.HeadDim)
				}
			}},
		{"v5 spellings", `{` + base + `, "num_local_experts": 8, "num_experts_per_tok": 2, "rope_parameters": {"rope_theta": 5e5, "rope_type": "default"}, "dtype": "float16", "mlp_only_layers": [1, 0]}`,
			func(t *testing.T, c *model.Config) {
				if c.NumExperts != 8 || c.RopeTheta != 5e5 || c.DType != backend.F16 || !slices.Equal(c.MLPOnlyLayers, []int{0, 1}) || c.IsMoELayer(0) {
					t.Errorf("v5 keys: experts %d theta %g dtype %v mlp_only %v", c.NumExperts, c.RopeTheta, c.DType, c.MLPOnlyLayers)
				}
			}},
		{"decoder_sparse_step", `{` + base + `, "num_experts": 4, "num_experts_per_tok": 1, "decoder_sparse_step": 2}`,
			func(t *testing.T, c *model.Config) {
				if c.IsMoELayer(0) || !c.IsMoELayer(1) {
					t.Error("decoder_sparse_step 2: want layer 1 MoE, layer 0 dense")
				}
			}},
		{"text_config", `{"architectures": ["X"], "dtype": "bfloat16", "tie_word_embeddings": true, "text_config": {"vocab_size": 32, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "num_experts": 4, "num_experts_per_tok": 2, "model_type": "t"}}`,
			func(t *testing.T, c *model.Config) {
				if !c.Nested || c.VocabSize != 32 || c.NumExperts != 4 || c.DType != backend.BF16 || !c.TieWordEmbeddings || c.TextModelType != "t" {
					t.Errorf("text_config: %+v", c)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := model.ParseConfig("config.json", []byte(tc.json))
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
	for _, tc := range []struct {
		name, json, key string
		code            int
	}{
		{"aliases disagree", `{` + base + `, "num_experts": 4, "num_local_experts": 8, "num_experts_per_tok": 1}`, "num_experts", 1},
		{"kv heads", `{` + base + `, "num_key_value_heads": 3}`, "num_key_value_heads", 1},
		{"top-k above experts", `{` + base + `, "num_experts": 4, "num_experts_per_tok": 5}`, "num_experts_per_tok", 1},
		{"mlp_only_layers", `{` + base + `, "mlp_only_layers": [2]}`, "mlp_only_layers[0]", 1},
		{"not an object", `[1, 2]`, "", 1},
		{"text_config not an object", `{"text_config": 3}`, "text_config", 1},
		{"unknown dtype", `{` + base + `, "dtype": "float8"}`, "", 2},
		{"nested key", `{"architectures": ["X"], "text_config": {"vocab_size": "big"}}`, "text_config.vocab_size", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := model.ParseConfig("config.json", []byte(tc.json))
			if err == nil {
				t.Fatal("parsed")
			}
			if c := exitCode(err); c != tc.code {
				t.Errorf("exit code %d, want %d (%v)", c, tc.code, err)
			}
			if tc.key != "" && !strings.Contains(err.Error(), `"`+tc.key+`"`) {
				t.Errorf("error %q does not name key %q", err, tc.key)
			}
		})
	}
}

// TestModulesAndWeights checks the quantizable modules (ModelOpt's names;
// no router) and the host weights the exporter reads, from both layouts.
func TestModulesAndWeights(t *testing.T) {
	per, err := model.Load(refdata.Dir("qwen3-moe-dense-tiny"))
	if err != nil {
		t.Fatal(err)
	}
	fused, err := model.Load(fusedDir(t, "qwen3-moe-dense-tiny"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range per.Modules() {
		names = append(names, m.Name+":"+m.Kind.String())
	}
	want := []string{
		"model.layers.0.self_attn.q_proj:linear", "model.layers.0.self_attn.k_proj:linear", "model.layers.0.self_attn.v_proj:linear",
		"model.layers.0.self_attn.o_proj:linear", "model.layers.0.self_attn:attention", "model.layers.0.mlp.experts:fused_experts",
		"model.layers.1.self_attn.q_proj:linear", "model.layers.1.self_attn.k_proj:linear", "model.layers.1.self_attn.v_proj:linear",
		"model.layers.1.self_attn.o_proj:linear", "model.layers.1.self_attn:attention",
		"model.layers.1.mlp.gate_proj:linear", "model.layers.1.mlp.up_proj:linear", "model.layers.1.mlp.down_proj:linear",
		"model.layers.2.self_attn.q_proj:linear", "model.layers.2.self_attn.k_proj:linear", "model.layers.2.self_attn.v_proj:linear",
		"model.layers.2.self_attn.o_proj:linear", "model.layers.2.self_attn:attention", "model.layers.2.mlp.experts:fused_experts",
		"lm_head:linear",
	}
	if !slices.Equal(names, want) {
		t.Errorf("modules\n%v\nwant\n%v", names, want)
	}
	if len(per.Unused) != 0 {
		t.Errorf("unused tensors %v", per.Unused)
	}
	for _, name := range []string{"model.layers.0.mlp.experts", "model.layers.2.mlp.experts"} {
		a, _ := per.Experts(name)
		b, ok := fused.Experts(name)
		if !ok || !slices.Equal(a.GateUp.Data, b.GateUp.Data) || !slices.Equal(a.Down.Data, b.Down.Data) {
			t.Errorf("%s: per-expert and fused layouts load different weights", name)
		}
		if len(a.GateUp.Sources) != 2*8 || len(b.GateUp.Sources) != 1 || a.GateUp.Source != safetensors.F32 {
			t.Errorf("%s: sources %d / %d, dtype %s", name, len(a.GateUp.Sources), len(b.GateUp.Sources), a.GateUp.Source)
		}
	}
	// gate rows first: expert 3's gate_proj is rows 0..I-1 of its gate_up slice.
	f, err := safetensors.Open(filepath.Join(refdata.Dir("qwen3-moe-dense-tiny"), "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, part := range []struct {
		tensor string
		got    func(*model.FusedExperts) []float32
	}{
		{"model.layers.2.mlp.experts.3.gate_proj.weight", func(x *model.FusedExperts) []float32 { return x.GateUpWeight(3)[:32*64] }},
		{"model.layers.2.mlp.experts.3.up_proj.weight", func(x *model.FusedExperts) []float32 { return x.GateUpWeight(3)[32*64:] }},
		{"model.layers.2.mlp.experts.3.down_proj.weight", func(x *model.FusedExperts) []float32 { return x.DownWeight(3) }},
	} {
		raw, err := f.ReadTensor(part.tensor)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := numerics.DecodeFloats("F32", raw)
		ex, _ := fused.Experts("model.layers.2.mlp.experts")
		if !slices.Equal(part.got(ex), want) {
			t.Errorf("%s is not where the fused layout puts it", part.tensor)
		}
	}
	if l, ok := per.Linear("model.layers.1.mlp.down_proj"); !ok || l.In != 96 || l.Out != 64 {
		t.Errorf("dense down_proj: %+v", l)
	}
}

// TestTiedEmbeddings: with tie_word_embeddings lm_head is the embedding
// matrix and the file needs no lm_head.weight.
func TestTiedEmbeddings(t *testing.T) {
	dir := rewrite(t, "qwen3-moe-tiny", func(s *safetensors.Source) bool { return s.Name != "lm_head.weight" },
		func(c map[string]any) { c["tie_word_embeddings"] = true })
	m, err := model.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.LMHead.Weight != m.Embed {
		t.Error("lm_head does not share the embedding")
	}
	be := cpu.New()
	if err := m.Prepare(be); err != nil {
		t.Fatal(err)
	}
	out, err := m.Forward(be, batches(t, "qwen3-moe-tiny")[0], model.PassOptions{Head: model.HeadLogits})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range out.Logits {
		if math.IsNaN(float64(v)) {
			t.Fatal("NaN logits")
		}
	}
	if _, err := model.Load(rewrite(t, "qwen3-moe-tiny", func(s *safetensors.Source) bool { return s.Name != "lm_head.weight" }, nil)); err == nil ||
		!strings.Contains(err.Error(), "lm_head.weight") {
		t.Errorf("untied model without lm_head.weight: %v", err)
	}
}

// TestForwardRejectsBadBatches: token ids outside the vocabulary and empty
// sequences are errors, not panics.
func TestForwardRejectsBadBatches(t *testing.T) {
	m, err := model.Load(refdata.Dir("qwen3-moe-tiny"))
	if err != nil {
		t.Fatal(err)
	}
	be := cpu.New()
	if _, err := m.Forward(be, model.NewBatch([][]int32{{1, 2}}), model.PassOptions{}); err == nil {
		t.Error("forward before Prepare succeeded")
	}
	if err := m.Prepare(be); err != nil {
		t.Fatal(err)
	}
	for _, b := range []model.Batch{
		model.NewBatch([][]int32{{1, 256}}),
		model.NewBatch([][]int32{{1, -1}}),
		model.NewBatch([][]int32{{1}, {}}),
		{},
	} {
		if _, err := m.Forward(be, b, model.PassOptions{}); err == nil {
			t.Errorf("batch %v accepted", b)
		}
	}
}
