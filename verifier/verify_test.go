package verifier_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ptqgate/ptqgate/fixtures/catalogue"
	"github.com/ptqgate/ptqgate/internal/refdata"
	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
	"github.com/ptqgate/ptqgate/reports"
	"github.com/ptqgate/ptqgate/verifier"
	"github.com/ptqgate/ptqgate/verifier/contracts"
)

func findingsText(r *reports.Report) string {
	var b strings.Builder
	for _, f := range r.Findings {
		fmt.Fprintf(&b, "  %s %s [%s] %s\n", f.Severity, f.Rule, f.Target, f.Message)
	}
	return b.String()
}

// want is one expected finding: rule, target ("" = any target) and
// severity ("" = any severity).
type want struct {
	rule, target string
	sev          reports.Severity
}

func (w want) match(f reports.Finding) bool {
	return f.Rule == w.rule && (w.target == "" || f.Target == w.target) && (w.sev == "" || f.Severity == w.sev)
}

func mustGenerate(t *testing.T, f catalogue.Format, o catalogue.Options) *catalogue.Checkpoint {
	t.Helper()
	c, err := catalogue.Generate(f, o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func runVerify(t *testing.T, dir string, tokens []string, tp int) *reports.Report {
	t.Helper()
	opt := verifier.Options{TP: tp, ToolVersion: "test"}
	if tokens != nil {
		ts, err := contracts.ParseTargets(tokens)
		if err != nil {
			t.Fatal(err)
		}
		opt.Targets, opt.Explicit = ts, true
	}
	r, err := verifier.Verify(dir, opt)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return r
}

func quantCfg(c *catalogue.Checkpoint) map[string]any {
	return c.Config["quantization_config"].(map[string]any)
}

// TestMutations applies one defect to a clean checkpoint and checks that
// the expected findings appear (and, for clean variants, that none of
// severity error does).
func TestMutations(t *testing.T) {
	qwen3 := catalogue.Options{KV: true}
	L0 := "model.layers.0"
	cases := []struct {
		name    string
		format  catalogue.Format
		opts    catalogue.Options
		mutate  func(t *testing.T, c *catalogue.Checkpoint)
		after   func(t *testing.T, dir string) // file-level mutation after Write
		targets []string
		tp      int
		want    []want
		clean   bool // no error findings expected
	}{
		{name: "clean FP8 KV", format: catalogue.FP8, opts: qwen3, clean: true,
			want: []want{{"values.fp8-shard-scales", "vllm@main", reports.SeverityWarning}, {"kv.dropped", "sglang@main", reports.SeverityWarning}}},
		{name: "missing expert", format: catalogue.FP8, opts: qwen3, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			for _, n := range c.Names() {
				if strings.HasPrefix(n, L0+".mlp.experts.3.") {
					delete(c.Tensors, n)
				}
			}
		}, want: []want{{"census.expert-missing", "any", reports.SeverityError}}},
		{name: "expert id out of range", format: catalogue.FP8, opts: qwen3, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			for _, n := range c.Names() {
				if rest, ok := strings.CutPrefix(n, L0+".mlp.experts.7."); ok {
					c.Tensors[L0+".mlp.experts.8."+rest] = c.Tensors[n]
				}
			}
		}, want: []want{{"census.expert-range", "any", reports.SeverityError}}},
		{name: "F4 weight dtype", format: catalogue.NVFP4, opts: qwen3, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			w := c.Tensors[L0+".mlp.experts.0.down_proj.weight"]
			w.DType, w.Shape = safetensors.F4, []int64{w.Shape[0], w.Shape[1] * 2}
		}, want: []want{{"census.dtype", "any", reports.SeverityError}}},
		{name: "U8 block scale", format: catalogue.NVFP4, opts: qwen3, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			c.Tensors[L0+".self_attn.o_proj.weight_scale"].DType = safetensors.U8
		}, want: []want{{"census.dtype", "any", reports.SeverityError}}},
		{name: "block scale shape", format: catalogue.NVFP4, opts: qwen3, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			s := c.Tensors[L0+".self_attn.o_proj.weight_scale"]
			s.Shape = []int64{s.Shape[1], s.Shape[0]}
		}, want: []want{{"census.shape", "any", reports.SeverityError}}},
		{name: "zero and NaN block scales", format: catalogue.NVFP4, opts: qwen3, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			s := c.Tensors[L0+".mlp.experts.1.gate_proj.weight_scale"]
			s.Data[0], s.Data[5] = 0x00, 0x7F
		}, want: []want{{"values.block-scale", "any", reports.SeverityError}}},
		{name: "FP8 module with weight_scale_2", format: catalogue.FP8, opts: qwen3, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			c.SetScalar(L0+".self_attn.o_proj.weight_scale_2", 0.1)
		}, want: []want{{"census.format-mismatch", "any", reports.SeverityError}}},
		{name: "NVFP4 tensors under an FP8 config", format: catalogue.NVFP4, opts: qwen3, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			quantCfg(c)["quant_algo"] = "FP8"
		}, want: []want{{"census.format-mismatch", "any", reports.SeverityError}, {"config.conflict", "any", reports.SeverityWarning}}},
		{name: "partial exclusion of qkv", format: catalogue.FP8, opts: qwen3, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			if err := c.SetUnquantized(L0 + ".self_attn.q_proj"); err != nil {
				t.Fatal(err)
			}
			c.SetExclusions(append(exclusions(c), L0+".self_attn.q_proj"))
		}, want: []want{{"exclude.partial-fused", "vllm@main", reports.SeverityError}, {"exclude.partial-fused", "sglang@main", reports.SeverityError}}},
		{name: "excluded lm_head stored quantized", format: catalogue.NVFP4, opts: qwen3, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			src := c.Tensors[L0+".self_attn.o_proj.weight"]
			_ = src
			w := c.Original["lm_head"]
			_ = w
			for _, p := range []string{"weight", "weight_scale", "weight_scale_2", "input_scale"} {
				c.Tensors["lm_head."+p] = c.Tensors[L0+".self_attn.o_proj."+p]
			}
		}, targets: []string{"vllm"}, want: []want{{"census.excluded-quantized", "vllm@main", reports.SeverityError}}},
		{name: "router stored quantized", format: catalogue.FP8, opts: qwen3, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			for _, p := range []string{"weight", "weight_scale", "input_scale"} {
				c.Tensors[L0+".mlp.gate."+p] = c.Tensors[L0+".mlp.experts.0.gate_proj."+p]
			}
		}, want: []want{{"census.bf16-only", "sglang@main", reports.SeverityError}, {"census.bf16-only", "vllm@main", reports.SeverityError}}},
		{name: "Qwen3.5 router not excluded", format: catalogue.NVFP4, opts: catalogue.Options{Model: catalogue.Qwen35MoE, Scope: catalogue.ScopeMLP}, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			var keep []string
			for _, e := range exclusions(c) {
				if !strings.HasSuffix(e, ".mlp.gate") {
					keep = append(keep, e)
				}
			}
			c.SetExclusions(keep)
		}, want: []want{{"census.unexcluded-unquantized", "vllm@main", reports.SeverityError}}},
		{name: "v_scale missing", format: catalogue.FP8, opts: qwen3, targets: []string{"vllm"}, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			delete(c.Tensors, L0+".self_attn.v_proj.v_scale")
		}, want: []want{{"kv.pair", "vllm@main", reports.SeverityWarning}}, clean: true},
		{name: "k_scale missing", format: catalogue.FP8, opts: qwen3, targets: []string{"vllm"}, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			delete(c.Tensors, L0+".self_attn.k_proj.k_scale")
		}, want: []want{{"kv.pair", "vllm@main", reports.SeverityError}}},
		{name: "zero k_scale", format: catalogue.FP8, opts: qwen3, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			c.SetScalar(L0+".self_attn.k_proj.k_scale", 0)
		}, want: []want{{"values.nonpositive", "any", reports.SeverityError}}},
		{name: "per-head KV scale", format: catalogue.FP8, opts: qwen3, targets: []string{"vllm"}, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			c.Tensors[L0+".self_attn.k_proj.k_scale"] = &catalogue.Tensor{DType: safetensors.F32, Shape: []int64{2}, Data: make([]byte, 8)}
		}, want: []want{{"kv.shape", "vllm@main", reports.SeverityError}}},
		{name: "KV enabled without scales", format: catalogue.FP8, opts: qwen3, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			for _, n := range c.Names() {
				if strings.HasSuffix(n, "_scale") && (strings.Contains(n, ".k_proj.k_") || strings.Contains(n, ".v_proj.v_")) {
					delete(c.Tensors, n)
				}
			}
		}, want: []want{{"kv.missing", "vllm@main", reports.SeverityWarning}}, clean: true},
		{name: "KV scales without a KV algo", format: catalogue.FP8, opts: qwen3, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			delete(quantCfg(c), "kv_cache_scheme")
			c.QuantConfig["quantization"].(map[string]any)["kv_cache_quant_algo"] = nil
		}, want: []want{{"kv.unused", "vllm@main", reports.SeverityInfo}}, clean: true},
		{name: "flat kv_cache_quant_algo ignored by vLLM", format: catalogue.FP8, opts: qwen3, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			delete(quantCfg(c), "kv_cache_scheme")
			quantCfg(c)["kv_cache_quant_algo"] = "FP8"
		}, want: []want{{"config.kv-algo", "vllm@main", reports.SeverityWarning}}, clean: true},
		{name: "input scale spread", format: catalogue.FP8, opts: qwen3, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			for _, p := range []string{"gate_proj", "up_proj"} {
				n := L0 + ".mlp.experts.5." + p + ".input_scale"
				x, _ := c.Scalar(n)
				c.SetScalar(n, x*50)
			}
		}, want: []want{{"values.input-scale-spread", "vllm@main", reports.SeverityWarning}, {"values.input-scale-spread", "sglang@main", reports.SeverityWarning}}, clean: true},
		{name: "unit scales", format: catalogue.FP8, opts: catalogue.Options{}, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			for _, n := range c.Names() {
				if strings.HasSuffix(n, ".weight_scale") || strings.HasSuffix(n, ".input_scale") {
					c.SetScalar(n, 1)
				}
			}
		}, want: []want{{"values.unit-scales", "any", reports.SeverityWarning}}, clean: true},
		{name: "NVFP4 q/k/v weight_scale_2 differ", format: catalogue.NVFP4, opts: qwen3, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			n := L0 + ".self_attn.v_proj.weight_scale_2"
			x, _ := c.Scalar(n)
			c.SetScalar(n, x*2)
		}, want: []want{{"values.fused-scale2", "vllm@main", reports.SeverityError}}},
		{name: "dense scale [1,1]", format: catalogue.FP8, opts: qwen3, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			c.Tensors[L0+".self_attn.o_proj.input_scale"].Shape = []int64{1, 1}
		}, want: []want{{"shape.scale", "vllm@main", reports.SeverityError}}},
		{name: "expert scale [1] on old vLLM only", format: catalogue.FP8, opts: qwen3, targets: []string{"vllm@0.20", "vllm@main"}, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			c.Tensors[L0+".mlp.experts.2.down_proj.weight_scale"].Shape = []int64{1}
		}, want: []want{{"shape.scale", "vllm@0.20", reports.SeverityError}}},
		{name: "group size 32", format: catalogue.NVFP4, opts: qwen3, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			quantCfg(c)["group_size"] = 32
		}, want: []want{{"config.group-size", "vllm@main", reports.SeverityError}, {"config.group-size", "sglang@main", reports.SeverityError}}},
		{name: "float32 config dtype", format: catalogue.FP8, opts: qwen3, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			c.Config["dtype"] = "float32"
		}, want: []want{{"config.act-dtype", "vllm@main", reports.SeverityError}}},
		{name: "lower-case algo: SGLang is case-sensitive", format: catalogue.FP8, opts: qwen3, targets: []string{"vllm", "sglang"}, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			quantCfg(c)["quant_algo"] = "fp8"
		}, want: []want{{"config.quant-algo", "sglang@main", reports.SeverityError}}},
		{name: "nested NVFP4 file without required keys", format: catalogue.NVFP4, opts: qwen3, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			delete(c.Config, "quantization_config")
			q := c.QuantConfig["quantization"].(map[string]any)
			delete(q, "group_size")
			delete(q, "kv_cache_quant_algo")
		}, want: []want{{"config.invalid", "vllm@main", reports.SeverityError}, {"config.invalid", "sglang@main", reports.SeverityError}}},
		{name: "nested W4A16 file: vLLM Unknown ModelOpt quant algo", format: catalogue.W4A16NVFP4, opts: qwen3, targets: []string{"vllm"}, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			delete(c.Config, "quantization_config")
		}, want: []want{{"config.quant-algo", "vllm@main", reports.SeverityError}}},
		{name: "quantized tensors without a config", format: catalogue.FP8, opts: qwen3, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			delete(c.Config, "quantization_config")
			c.QuantConfig = nil
		}, want: []want{{"config.missing", "any", reports.SeverityError}}},
		{name: "tp 3", format: catalogue.FP8, opts: qwen3, tp: 3, want: []want{{"tp.divisible", "vllm@main", reports.SeverityError}}},
		{name: "tp 2 is fine", format: catalogue.NVFP4, opts: qwen3, tp: 2, clean: true},
		{name: "unreadable ptqgate_report.json", format: catalogue.FP8, opts: qwen3, after: func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, verifier.ReportFile), []byte("{not json"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, want: []want{{"report.unreadable", "any", reports.SeverityError}}},
		{name: "report agrees with the export", format: catalogue.NVFP4, opts: catalogue.Options{Model: catalogue.Qwen35MoE, Scope: catalogue.ScopeMLP, KV: true, Report: true}, clean: true},
		{name: "report: a KV quantizer without its scale", format: catalogue.FP8, opts: catalogue.Options{KV: true, Report: true}, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			delete(c.Tensors, "model.layers.1.self_attn.v_proj.v_scale")
		}, want: []want{{"report.missing-tensor", "any", reports.SeverityError}}},
		{name: "unknown keys", format: catalogue.FP8, opts: qwen3, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			c.Tensors[L0+".self_attn.o_proj.weight_zero_point"] = c.Tensors[L0+".self_attn.o_proj.input_scale"]
			c.Tensors["model.layers.0.foo.bar"] = c.Tensors[L0+".self_attn.o_proj.input_scale"]
		}, want: []want{{"names.unmapped", "vllm@main", reports.SeverityError}, {"names.unmapped", "sglang@main", ""}}},
		{name: "kv_cache_quant_algo not a string (nested)", format: catalogue.FP8, opts: qwen3, targets: []string{"vllm"}, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			delete(c.Config, "quantization_config")
			c.QuantConfig["quantization"].(map[string]any)["kv_cache_quant_algo"] = 8
		}, want: []want{{"config.invalid", "vllm@main", reports.SeverityError}}},
		{name: "ignore not a list", format: catalogue.FP8, opts: qwen3, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			quantCfg(c)["ignore"] = "lm_head"
		}, want: []want{{"config.invalid", "vllm@main", reports.SeverityError}, {"config.invalid", "sglang@main", reports.SeverityError}}},
		{name: "NVFP4 flat ignore null (SGLang)", format: catalogue.NVFP4, opts: qwen3, targets: []string{"sglang"}, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			quantCfg(c)["ignore"] = nil
		}, want: []want{{"config.invalid", "sglang@main", reports.SeverityError}}},
		{name: "two hf_quant_config files (SGLang)", format: catalogue.FP8, opts: qwen3, targets: []string{"sglang"}, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			delete(c.Config, "quantization_config")
		}, after: func(t *testing.T, dir string) {
			raw, _ := os.ReadFile(filepath.Join(dir, "hf_quant_config.json"))
			os.WriteFile(filepath.Join(dir, "old_hf_quant_config.json"), raw, 0o644)
		}, want: []want{{"config.invalid", "sglang@main", reports.SeverityError}}},
		{name: "null quant_algo in the file", format: catalogue.FP8, opts: qwen3, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			delete(c.Config, "quantization_config")
			c.QuantConfig["quantization"].(map[string]any)["quant_algo"] = nil
		}, want: []want{{"config.quant-algo", "sglang@main", reports.SeverityInfo}, {"config.quant-algo", "vllm@main", reports.SeverityInfo}}},
		{name: "NVFP4 nested file without group_size (SGLang's misleading error)", format: catalogue.NVFP4, opts: qwen3, targets: []string{"sglang"}, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			delete(c.Config, "quantization_config")
			delete(c.QuantConfig["quantization"].(map[string]any), "group_size")
		}, want: []want{{"config.invalid", "sglang@main", reports.SeverityError}}},
		{name: "FP8 pre-fused qkv_proj loads everywhere", format: catalogue.FP8, opts: catalogue.Options{}, targets: []string{"vllm@0.20", "sglang@0.5.9", "sglang"}, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			a := L0 + ".self_attn"
			var w []byte
			var rows int64
			for _, p := range []string{"q_proj", "k_proj", "v_proj"} {
				w = append(w, c.Tensors[a+"."+p+".weight"].Data...)
				rows += c.Tensors[a+"."+p+".weight"].Shape[0]
			}
			c.Tensors[a+".qkv_proj.weight"] = &catalogue.Tensor{DType: safetensors.F8E4M3, Shape: []int64{rows, 64}, Data: w}
			c.Tensors[a+".qkv_proj.weight_scale"] = c.Tensors[a+".q_proj.weight_scale"]
			c.Tensors[a+".qkv_proj.input_scale"] = c.Tensors[a+".q_proj.input_scale"]
			for _, p := range []string{"q_proj", "k_proj", "v_proj"} {
				for _, s := range []string{"weight", "weight_scale", "input_scale"} {
					delete(c.Tensors, a+"."+p+"."+s)
				}
			}
		}, clean: true},
		{name: "expert gate/up input scales differ", format: catalogue.FP8, opts: qwen3, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			n := L0 + ".mlp.experts.1.up_proj.input_scale"
			x, _ := c.Scalar(n)
			c.SetScalar(n, x*1.5)
		}, want: []want{{"values.fused-input-scale", "vllm@main", reports.SeverityWarning}}, clean: true},
		{name: "extra layer", format: catalogue.FP8, opts: qwen3, mutate: func(t *testing.T, c *catalogue.Checkpoint) {
			c.Tensors["model.layers.9.input_layernorm.weight"] = c.Tensors[L0+".input_layernorm.weight"]
		}, want: []want{{"names.unmapped", "vllm@main", ""}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ck := mustGenerate(t, c.format, c.opts)
			if c.mutate != nil {
				c.mutate(t, ck)
			}
			dir := t.TempDir()
			if err := ck.Write(dir); err != nil {
				t.Fatal(err)
			}
			if c.after != nil {
				c.after(t, dir)
			}
			r := runVerify(t, dir, c.targets, c.tp)
			for _, w := range c.want {
				found := false
				for _, f := range r.Findings {
					if w.match(f) {
						found = true
						if f.Source == "" || f.Message == "" {
							t.Errorf("%s finding lacks source or message: %+v", f.Rule, f)
						}
					}
				}
				if !found {
					t.Errorf("no finding %+v; findings:\n%s", w, findingsText(r))
				}
			}
			if c.clean && !r.Clean() {
				t.Errorf("unexpected errors:\n%s", findingsText(r))
			}
			for _, f := range r.Findings {
				if f.Target != reports.TargetAny {
					if tt, err := contracts.ParseTarget(f.Target); err != nil || tt.Token() != f.Target {
						t.Errorf("finding target %q is not a canonical token", f.Target)
					}
				}
			}
		})
	}
}

func exclusions(c *catalogue.Checkpoint) []string {
	var out []string
	for _, x := range quantCfg(c)["ignore"].([]any) {
		out = append(out, x.(string))
	}
	return out
}

// TestBrokenFolders: corrupt, truncated or missing files are findings or
// a clear error, never a panic.
func TestBrokenFolders(t *testing.T) {
	write := func(t *testing.T, shard int64) string {
		dir := t.TempDir()
		c := mustGenerate(t, catalogue.FP8, catalogue.Options{MaxShardSize: shard})
		if err := c.Write(dir); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	cases := []struct {
		name   string
		shard  int64
		break_ func(t *testing.T, dir string)
		rule   string
	}{
		{"no config.json", 0, func(t *testing.T, d string) { os.Remove(filepath.Join(d, "config.json")) }, "config.json"},
		{"config.json not JSON", 0, func(t *testing.T, d string) { os.WriteFile(filepath.Join(d, "config.json"), []byte("{"), 0o644) }, "config.json"},
		{"config.json an array", 0, func(t *testing.T, d string) { os.WriteFile(filepath.Join(d, "config.json"), []byte("[1]"), 0o644) }, "config.json"},
		{"no weights", 0, func(t *testing.T, d string) { os.Remove(filepath.Join(d, "model.safetensors")) }, "census.file"},
		{"truncated", 0, func(t *testing.T, d string) {
			p := filepath.Join(d, "model.safetensors")
			st, _ := os.Stat(p)
			os.Truncate(p, st.Size()-100)
		}, "census.file"},
		{"garbage file", 0, func(t *testing.T, d string) {
			os.WriteFile(filepath.Join(d, "model.safetensors"), []byte("garbage!"), 0o644)
		}, "census.file"},
		{"huge header length", 0, func(t *testing.T, d string) {
			os.WriteFile(filepath.Join(d, "model.safetensors"), []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '{', '}'}, 0o644)
		}, "census.file"},
		{"missing shard", 64 << 10, func(t *testing.T, d string) { os.Remove(filepath.Join(d, "model-00002-of-00003.safetensors")) }, "census.index-shard"},
		{"index not JSON", 64 << 10, func(t *testing.T, d string) {
			os.WriteFile(filepath.Join(d, "model.safetensors.index.json"), []byte("nope"), 0o644)
		}, "census.index-shard"},
		{"index without a tensor", 64 << 10, func(t *testing.T, d string) {
			p := filepath.Join(d, "model.safetensors.index.json")
			raw, _ := os.ReadFile(p)
			var idx map[string]any
			json.Unmarshal(raw, &idx)
			delete(idx["weight_map"].(map[string]any), "model.norm.weight")
			b, _ := json.Marshal(idx)
			os.WriteFile(p, b, 0o644)
		}, "census.index-shard"},
		{"index shard outside the folder", 64 << 10, func(t *testing.T, d string) {
			p := filepath.Join(d, "model.safetensors.index.json")
			raw, _ := os.ReadFile(p)
			var idx map[string]any
			json.Unmarshal(raw, &idx)
			idx["weight_map"].(map[string]any)["model.norm.weight"] = "../x.safetensors"
			b, _ := json.Marshal(idx)
			os.WriteFile(p, b, 0o644)
		}, "census.index-shard"},
		{"hf_quant_config.json not JSON", 0, func(t *testing.T, d string) {
			os.WriteFile(filepath.Join(d, "hf_quant_config.json"), []byte("]"), 0o644)
		}, "config.invalid"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := write(t, c.shard)
			c.break_(t, dir)
			r, err := verifier.Verify(dir, verifier.Options{})
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			found := false
			for _, f := range r.Findings {
				if f.Rule == c.rule && f.Severity == reports.SeverityError {
					found = true
				}
			}
			if !found || r.Clean() {
				t.Errorf("no %s error:\n%s", c.rule, findingsText(r))
			}
		})
	}
	if _, err := verifier.Verify(filepath.Join(t.TempDir(), "missing"), verifier.Options{}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing folder: %v, want fs.ErrNotExist", err)
	}
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, []byte("x"), 0o644)
	if r, err := verifier.Verify(f, verifier.Options{}); err != nil || r.Clean() {
		t.Errorf("a file instead of a folder: %v", err)
	}
}

// TestUnsupportedFormats: quantization methods or algos without contract
// tables are exit 2 (UnsupportedError); algos no target loads are errors.
func TestUnsupportedFormats(t *testing.T) {
	for _, c := range []struct {
		name        string
		mutate      func(c *catalogue.Checkpoint)
		unsupported bool
	}{
		{"compressed-tensors", func(c *catalogue.Checkpoint) { quantCfg(c)["quant_method"] = "compressed-tensors" }, true},
		{"FP8_PB_WO loads in vLLM", func(c *catalogue.Checkpoint) { quantCfg(c)["quant_algo"] = "FP8_PB_WO" }, true},
		{"INT8_SQ loads nowhere", func(c *catalogue.Checkpoint) {
			quantCfg(c)["quant_algo"] = "INT8_SQ"
			c.QuantConfig["quantization"].(map[string]any)["quant_algo"] = "INT8_SQ"
		}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ck := mustGenerate(t, catalogue.FP8, catalogue.Options{})
			c.mutate(ck)
			dir := t.TempDir()
			if err := ck.Write(dir); err != nil {
				t.Fatal(err)
			}
			r, err := verifier.Verify(dir, verifier.Options{Targets: contracts.DefaultTargets(), Explicit: true})
			var u *verifier.UnsupportedError
			if c.unsupported {
				if !errors.As(err, &u) || u.ExitCode() != 2 {
					t.Errorf("err = %v, want an UnsupportedError", err)
				}
				return
			}
			if err != nil || r.Clean() {
				t.Fatalf("err %v; findings:\n%s", err, findingsText(r))
			}
		})
	}
}

// TestReferenceCheckpoints verifies the HF reference cases (unquantized:
// nothing to verify, clean) and a generic-family checkpoint.
func TestReferenceCheckpoints(t *testing.T) {
	for _, c := range refdata.Cases {
		r, err := verifier.Verify(refdata.Dir(c), verifier.Options{})
		if err != nil || !r.Clean() {
			t.Errorf("%s: %v\n%s", c, err, findingsText(r))
		}
	}
	ck := mustGenerate(t, catalogue.FP8, catalogue.Options{})
	ck.Config["model_type"] = "mystery_moe"
	ck.Config["architectures"] = []any{"MysteryForCausalLM"}
	dir := t.TempDir()
	if err := ck.Write(dir); err != nil {
		t.Fatal(err)
	}
	r := runVerify(t, dir, nil, 0)
	if !r.Clean() {
		t.Errorf("generic family: %s", findingsText(r))
	}
}

// TestDequantReference measures the dequantization error against the
// original weights, in both expert layouts and with the VLM prefix, and
// flags a module whose scale does not fit its weight.
func TestDequantReference(t *testing.T) {
	for _, f := range []catalogue.Format{catalogue.FP8, catalogue.NVFP4} {
		t.Run(string(f), func(t *testing.T) {
			ck := mustGenerate(t, f, catalogue.Options{Model: catalogue.Qwen35MoE, Scope: catalogue.ScopeMLP})
			dir, ref := t.TempDir(), t.TempDir()
			if err := ck.WriteReference(ref); err != nil {
				t.Fatal(err)
			}
			// The outlier: expert 6 of layer 1 dequantizes with a wrong scale.
			n := "model.language_model.layers.1.mlp.experts.6.down_proj.weight_scale"
			if f == catalogue.NVFP4 {
				n += "_2"
			}
			x, _ := ck.Scalar(n)
			ck.SetScalar(n, x*1.4)
			if err := ck.Write(dir); err != nil {
				t.Fatal(err)
			}
			r, err := verifier.Verify(dir, verifier.Options{Reference: ref})
			if err != nil {
				t.Fatal(err)
			}
			lo, hi := 0.005, 0.06
			if f == catalogue.NVFP4 {
				lo, hi = 0.05, 0.15
			}
			if len(r.DequantError) != 4*(8*3+3) {
				t.Errorf("%d dequant_error rows, want %d", len(r.DequantError), 4*(8*3+3))
			}
			outlier := "model.language_model.layers.1.mlp.experts.6.down_proj"
			for _, d := range r.DequantError {
				if d.Module == outlier {
					if d.RelativeError < 0.2 {
						t.Errorf("outlier relative error %v", d.RelativeError)
					}
					continue
				}
				if float64(d.RelativeError) < lo || float64(d.RelativeError) > hi || !(d.MaxAbsError > 0) {
					t.Errorf("%s: relative error %v, max abs %v", d.Module, d.RelativeError, d.MaxAbsError)
				}
			}
			found := false
			for _, fd := range r.Findings {
				if fd.Rule == "reference.outlier" && fd.Module == outlier && fd.Severity == reports.SeverityWarning {
					found = true
				} else if strings.HasPrefix(fd.Rule, "reference.") {
					t.Errorf("unexpected %s %s: %s", fd.Rule, fd.Module, fd.Message)
				}
			}
			if !found {
				t.Errorf("no reference.outlier for %s:\n%s", outlier, findingsText(r))
			}
		})
	}
}

// TestDequantReferenceFusedLayout: the reference may store the experts
// fused 3-D ([E, 2I, H] gate rows first, [E, H, I]) and without the VLM
// level.
func TestDequantReferenceFusedLayout(t *testing.T) {
	ck := mustGenerate(t, catalogue.FP8, catalogue.Options{})
	dir, ref := t.TempDir(), t.TempDir()
	if err := ck.Write(dir); err != nil {
		t.Fatal(err)
	}
	refCk := &catalogue.Checkpoint{Config: map[string]any{"model_type": "qwen3_moe"}, Tensors: map[string]*catalogue.Tensor{}}
	for l := 0; l < ck.Info.Layers; l++ {
		ex := fmt.Sprintf("model.layers.%d.mlp.experts", l)
		var gu, dn []float32
		for e := 0; e < ck.Info.Experts; e++ {
			gu = append(gu, ck.Original[fmt.Sprintf("%s.%d.gate_proj", ex, e)]...)
			gu = append(gu, ck.Original[fmt.Sprintf("%s.%d.up_proj", ex, e)]...)
			dn = append(dn, ck.Original[fmt.Sprintf("%s.%d.down_proj", ex, e)]...)
		}
		E, I, H := int64(ck.Info.Experts), int64(ck.Info.MoEInter), int64(ck.Info.Hidden)
		refCk.Tensors[ex+".gate_up_proj"] = f32(gu, E, 2*I, H)
		refCk.Tensors[ex+".down_proj"] = f32(dn, E, H, I)
	}
	if err := refCk.Write(ref); err != nil {
		t.Fatal(err)
	}
	r, err := verifier.Verify(dir, verifier.Options{Reference: ref})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.DequantError) != 2*8*3 {
		t.Fatalf("%d rows:\n%s", len(r.DequantError), findingsText(r))
	}
	for _, d := range r.DequantError {
		if d.RelativeError > 0.06 {
			t.Errorf("%s: %v", d.Module, d.RelativeError)
		}
	}
	if _, err := verifier.Verify(dir, verifier.Options{Reference: filepath.Join(ref, "nope")}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing reference: %v", err)
	}
}

func f32(vals []float32, shape ...int64) *catalogue.Tensor {
	b := make([]byte, 4*len(vals))
	for i, v := range vals {
		u := math.Float32bits(v)
		b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
	}
	return &catalogue.Tensor{DType: safetensors.F32, Shape: shape, Data: b}
}

// mixedCheckpoint combines FP8 attention with NVFP4 experts under
// quant_algo MIXED_PRECISION (quantized_layers, no exclusions), as
// ModelOpt writes more than one layer format (modelopt.md §4.7).
func mixedCheckpoint(t *testing.T, dropLayer string) string {
	t.Helper()
	fp8 := mustGenerate(t, catalogue.FP8, catalogue.Options{})
	nv := mustGenerate(t, catalogue.NVFP4, catalogue.Options{})
	layers := map[string]any{}
	for _, n := range nv.Names() {
		if strings.Contains(n, ".self_attn.") {
			nv.Tensors[n] = nil
			delete(nv.Tensors, n)
		}
	}
	for _, n := range fp8.Names() {
		if strings.Contains(n, ".self_attn.") {
			nv.Tensors[n] = fp8.Tensors[n]
		}
	}
	for l := 0; l < nv.Info.Layers; l++ {
		lp := nv.Info.LayerPrefix(l)
		for _, p := range []string{"q_proj", "k_proj", "v_proj", "o_proj"} {
			layers[lp+".self_attn."+p] = map[string]any{"quant_algo": "FP8"}
		}
		layers[lp+".mlp.experts"] = map[string]any{"quant_algo": "NVFP4", "group_size": 16}
	}
	delete(layers, dropLayer)
	q := quantCfg(nv)
	q["quant_algo"], q["quantized_layers"] = "MIXED_PRECISION", layers
	q["ignore"] = []any{}
	delete(q, "config_groups")
	nv.QuantConfig = map[string]any{"producer": q["producer"], "quantization": map[string]any{"quant_algo": "MIXED_PRECISION", "quantized_layers": layers, "kv_cache_quant_algo": nil}}
	dir := t.TempDir()
	if err := nv.Write(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestMixedPrecision(t *testing.T) {
	r := runVerify(t, mixedCheckpoint(t, ""), []string{"vllm", "sglang"}, 0)
	if !r.Clean() {
		t.Fatalf("clean MIXED_PRECISION checkpoint:\n%s", findingsText(r))
	}
	r = runVerify(t, mixedCheckpoint(t, "model.layers.1.mlp.experts"), []string{"vllm", "sglang"}, 0)
	for _, tok := range []string{"vllm@main", "sglang@main"} {
		found := false
		for _, f := range r.Findings {
			found = found || (f.Rule == "census.excluded-quantized" && f.Target == tok && f.Module == "model.layers.1.mlp.experts")
		}
		if !found {
			t.Errorf("%s: no census.excluded-quantized for experts missing from quantized_layers:\n%s", tok, findingsText(r))
		}
	}
}

// TestAllTargetsSkipped: with every target unable to load the format, the
// target-independent census still judges the tensors by the config as
// written (no false missing input_scale for W4A16).
func TestAllTargetsSkipped(t *testing.T) {
	dir := t.TempDir()
	if err := catalogue.Clean(catalogue.W4A16NVFP4, dir, catalogue.Options{}); err != nil {
		t.Fatal(err)
	}
	r := runVerify(t, dir, []string{"sglang@0.5.9", "sglang"}, 0)
	if r.Summary.Errors != 2 {
		t.Errorf("%d errors, want the two config.quant-algo ones:\n%s", r.Summary.Errors, findingsText(r))
	}
	for _, f := range r.Findings {
		if f.Severity == reports.SeverityError && f.Rule != "config.quant-algo" {
			t.Errorf("unexpected %s", f.Rule)
		}
	}
}
