package quant

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// recipeWith wraps quant_cfg entries (YAML lines indented by 4) in a recipe.
func recipeWith(entries string) string {
	return "quantize:\n  algorithm: max\n  quant_cfg:\n    - quantizer_name: '*'\n      enable: false\n" + entries
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		code  int
		want  []string // substrings of the message
	}{
		{"yaml syntax", map[string]string{"r.yaml": "quantize: [\n"}, 1, []string{"r.yaml", "does not parse"}},
		{"unknown top-level key", map[string]string{"r.yaml": "metadata: {recipe_type: ptq}\nquantise: {}\n"}, 1, []string{"r.yaml:2", "quantise", "unknown key"}},
		{"unknown metadata key", map[string]string{"r.yaml": "metadata: {recipe_type: ptq, author: x}\nquantize: {quant_cfg: []}\n"}, 1, []string{"metadata.author", "unknown key"}},
		{"unknown quantize key", map[string]string{"r.yaml": "quantize: {quant_cfg: [], calib_size: 3}\n"}, 1, []string{"quantize.calib_size", "unknown key"}},
		{"unknown entry key", map[string]string{"r.yaml": recipeWith("    - quantizer_name: '*x'\n      enabled: false\n")}, 1, []string{"r.yaml:7", "quantize.quant_cfg[1].enabled", "unknown key"}},
		{"unknown cfg key", map[string]string{"r.yaml": recipeWith("    - quantizer_name: '*x'\n      cfg: {num_bits: e4m3, axes: 0}\n")}, 1, []string{"quant_cfg[1].cfg.axes", "unknown key"}},
		{"unknown block_sizes key", map[string]string{"r.yaml": recipeWith("    - quantizer_name: '*x'\n      cfg: {num_bits: e2m1, block_sizes: {-1: 16, type: dynamic, scale: e4m3}}\n")}, 1, []string{"cfg.block_sizes.scale", "unknown key"}},
		{"unknown algorithm key", map[string]string{"r.yaml": "quantize:\n  algorithm: {method: max, foo: 1}\n  quant_cfg: []\n"}, 1, []string{"quantize.algorithm.foo", "unknown key"}},
		{"missing quant_cfg", map[string]string{"r.yaml": "metadata: {recipe_type: ptq}\nquantize: {algorithm: max}\n"}, 1, []string{"quantize.quant_cfg", "missing"}},
		{"entry without cfg or enable", map[string]string{"r.yaml": recipeWith("    - quantizer_name: '*x'\n")}, 1, []string{"quant_cfg[1]", "must specify cfg, enable, or both"}},
		{"empty cfg enabling", map[string]string{"r.yaml": recipeWith("    - quantizer_name: '*x'\n      cfg: {}\n")}, 1, []string{"quant_cfg[1].cfg", "at least one quantizer attribute"}},
		{"cfg only enable true", map[string]string{"r.yaml": recipeWith("    - quantizer_name: '*x'\n      cfg: {enable: true}\n")}, 1, []string{"quant_cfg[1].cfg", "only {enable: true}"}},
		{"bad num_bits", map[string]string{"r.yaml": recipeWith("    - quantizer_name: '*x'\n      cfg: {num_bits: e4x3}\n")}, 1, []string{"cfg.num_bits", "eXmY"}},
		{"bad float format", map[string]string{"r.yaml": recipeWith("    - quantizer_name: '*x'\n      cfg: {num_bits: e7m7}\n")}, 1, []string{"cfg.num_bits", "unsupported float format e7m7"}},
		{"non-bool enable", map[string]string{"r.yaml": recipeWith("    - quantizer_name: '*x'\n      enable: 'no'\n")}, 1, []string{"quant_cfg[1].enable", "true or false"}},
		{"both constant amax", map[string]string{"r.yaml": recipeWith("    - quantizer_name: '*x'\n      cfg: {num_bits: e4m3, use_constant_amax: true, constant_amax: 3.0}\n")}, 1, []string{"mutually exclusive"}},
		{"constant amax not positive", map[string]string{"r.yaml": recipeWith("    - quantizer_name: '*x'\n      cfg: {num_bits: e4m3, constant_amax: 0}\n")}, 1, []string{"cfg.constant_amax", "positive"}},
		{"axis with block sizes", map[string]string{"r.yaml": recipeWith("    - quantizer_name: '*x'\n      cfg: {num_bits: e2m1, axis: 0, block_sizes: {-1: 16}}\n")}, 1, []string{"axis must be null"}},
		{"dynamic blocks on two axes", map[string]string{"r.yaml": recipeWith("    - quantizer_name: '*x'\n      cfg: {num_bits: e2m1, block_sizes: {-1: 16, -2: 16, type: dynamic}}\n")}, 1, []string{"exactly one axis"}},
		{"learn_amax", map[string]string{"r.yaml": recipeWith("    - quantizer_name: '*x'\n      cfg: {num_bits: e4m3, learn_amax: true}\n")}, 1, []string{"learn_amax"}},
		{"entry not a mapping", map[string]string{"r.yaml": recipeWith("    - '*x'\n")}, 1, []string{"quant_cfg[1]", "must be a mapping"}},
		{"duplicate key", map[string]string{"r.yaml": "quantize: {quant_cfg: []}\nquantize: {quant_cfg: []}\n"}, 1, []string{"duplicate key"}},
		{"three documents", map[string]string{"r.yaml": "a: 1\n---\nb: 2\n---\nc: 3\n"}, 1, []string{"more than two YAML documents"}},
		{"import without imports", map[string]string{"r.yaml": recipeWith("    - $import: base\n")}, 1, []string{"$import base", "declares no imports"}},
		{"unknown import alias", map[string]string{"r.yaml": "imports: {a: configs/numerics/fp8}\n" + recipeWith("    - $import: b\n")}, 1, []string{"$import b", "not declared"}},
		{"missing unit", map[string]string{"r.yaml": "imports: {a: configs/ptq/units/nope}\n" + recipeWith("    - $import: a\n")}, 1, []string{"cannot find unit", "configs/ptq/units/nope", "built-in units"}},
		{"circular import", map[string]string{
			"r.yaml":   "imports: {a: u/a}\n" + recipeWith("    - $import: a\n"),
			"u/a.yaml": "imports: {b: u/b}\n---\n- $import: b\n",
			"u/b.yaml": "imports: {a: u/a}\n---\n- $import: a\n"}, 1, []string{"circular import", "u/a.yaml -> ", "u/b.yaml -> "}},
		{"list import with extra keys", map[string]string{"r.yaml": "imports: {a: configs/ptq/units/kv_fp8}\n" + recipeWith("    - $import: a\n      enable: false\n")}, 1, []string{"only key is $import"}},
		{"attribute unit in list position", map[string]string{"r.yaml": "imports: {a: configs/numerics/fp8}\n" + recipeWith("    - $import: a\n")}, 1, []string{"QuantizerAttributeConfig", "import it under cfg"}},
		{"list unit in cfg position", map[string]string{"r.yaml": "imports: {a: configs/ptq/units/default_disabled_quantizers}\n" + recipeWith("    - quantizer_name: '*x'\n      cfg: {$import: a}\n")}, 1, []string{"holds a list"}},

		// exit 2: well-formed but unsupported
		{"algorithm awq", map[string]string{"r.yaml": "quantize:\n  algorithm: awq_lite\n  quant_cfg: []\n"}, 2, []string{"r.yaml:2", "quantize.algorithm", `"awq_lite" is not supported`}},
		{"algorithm mapping mse", map[string]string{"r.yaml": "quantize:\n  algorithm: {method: mse, fp8_scale_sweep: true}\n  quant_cfg: []\n"}, 2, []string{`"mse" is not supported`}},
		{"algorithm null", map[string]string{"r.yaml": "quantize:\n  algorithm: null\n  quant_cfg: []\n"}, 2, []string{"no calibration"}},
		{"layerwise checkpoint", map[string]string{"r.yaml": "quantize:\n  algorithm: {method: max, layerwise: {enable: true, checkpoint_dir: /tmp/x}}\n  quant_cfg: []\n"}, 2, []string{"layerwise.checkpoint_dir"}},
		{"recipe type", map[string]string{"r.yaml": "metadata: {recipe_type: eagle}\nquantize: {quant_cfg: []}\n"}, 2, []string{"metadata.recipe_type", "ptq only"}},
		{"integer format", map[string]string{"r.yaml": recipeWith("    - quantizer_name: '*weight_quantizer'\n      cfg: {num_bits: 8, axis: 0}\n")}, 2, []string{"quant_cfg entry 2 '*weight_quantizer'", "r.yaml:6", "integer format"}},
		{"int4 blocks", map[string]string{"r.yaml": recipeWith("    - quantizer_name: '*weight_quantizer'\n      cfg: {num_bits: 4, block_sizes: {-1: 128, type: static}}\n")}, 2, []string{"entry 2", "integer format"}},
		{"mxfp8", map[string]string{"r.yaml": recipeWith("    - quantizer_name: '*weight_quantizer'\n      cfg: {num_bits: e4m3, block_sizes: {-1: 32, type: dynamic, scale_bits: e8m0}}\n")}, 2, []string{"entry 2", "format mxfp8 is not supported"}},
		{"nvfp4 static", map[string]string{"r.yaml": recipeWith("    - quantizer_name: '*weight_quantizer'\n      cfg: {num_bits: e2m1, block_sizes: {-1: 16, type: static, scale_bits: e4m3}}\n")}, 2, []string{"format nvfp4_static is not supported"}},
		{"histogram", map[string]string{"r.yaml": recipeWith("    - quantizer_name: '*weight_quantizer'\n      cfg: {num_bits: e4m3, calibrator: histogram}\n")}, 2, []string{`calibrator "histogram"`}},
		{"dynamic", map[string]string{"r.yaml": recipeWith("    - quantizer_name: '*input_quantizer'\n      cfg: {num_bits: e4m3, type: dynamic, block_sizes: {-1: null, type: dynamic}}\n")}, 2, []string{"dynamic"}},
		{"sequential cfg", map[string]string{"r.yaml": recipeWith("    - quantizer_name: '*weight_quantizer'\n      cfg: [{num_bits: 4, block_sizes: {-1: 128, type: static}}, {num_bits: e4m3}]\n")}, 2, []string{"SequentialQuantizer"}},
		{"enabling parent class", map[string]string{"r.yaml": recipeWith("    - quantizer_name: '*'\n      parent_class: nn.Conv2d\n      cfg: {num_bits: e4m3}\n")}, 2, []string{"entry 2", "parent_class nn.Conv2d"}},
		{"legacy enabling parent class", map[string]string{"r.yaml": "quant_cfg:\n  default: {enable: false}\n  nn.Conv2d: {'*weight_quantizer': {num_bits: e4m3}}\n"}, 2, []string{"entry 2 '*weight_quantizer'", "parent_class nn.Conv2d"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, tt.files)
			_, err := Load(filepath.Join(dir, "r.yaml"))
			if err == nil {
				t.Fatal("Load succeeded")
			}
			if c := exitCodeOf(err); c != tt.code {
				t.Errorf("exit code %d, want %d (%v)", c, tt.code, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestLoadRefs(t *testing.T) {
	_, err := Load("nvfp4_expert_only")
	var u *UnsupportedError
	if !errors.As(err, &u) || exitCodeOf(err) != 2 || !strings.Contains(err.Error(), "unknown preset") || !strings.Contains(err.Error(), "nvfp4_experts_only-fp8_kv (nvfp4_experts_only-kv_fp8)") {
		t.Errorf("unknown preset: %v", err)
	}
	_, err = Load(filepath.Join(t.TempDir(), "missing.yaml"))
	if !errors.Is(err, fs.ErrNotExist) || exitCodeOf(err) != 2 {
		t.Errorf("missing file: %v", err)
	}
	_, err = Load("missing.yaml")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing relative file: %v", err)
	}
	// A directory recipe.
	dir := writeFiles(t, map[string]string{
		"d/metadata.yaml": "recipe_type: ptq\ndescription: dir recipe\n",
		"d/quantize.yml":  "imports: {kv: configs/ptq/units/kv_fp8}\nalgorithm: max\nquant_cfg:\n  - quantizer_name: '*'\n    enable: false\n  - $import: kv\n",
	})
	r, err := Load(filepath.Join(dir, "d"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Name != "d" || r.Description != "dir recipe" || len(r.Entries) != 2 || !r.Entries[1].Cfg.IsFP8() {
		t.Errorf("directory recipe %+v", r)
	}
}

// Entries that only disable are always accepted, whatever they carry.
func TestDisablingEntriesAccepted(t *testing.T) {
	dir := writeFiles(t, map[string]string{"r.yaml": recipeWith(`    - quantizer_name: '*weight_quantizer'
      parent_class: nn.Conv2d
      enable: false
    - quantizer_name: '*input_quantizer'
      cfg: {num_bits: 8, axis: 0}
      enable: false
    - quantizer_name: '*x'
      cfg: {}
      enable: false
    - quantizer_name: '*[kv]_bmm_quantizer'
      cfg: {num_bits: e4m3, constant_amax: 10.5}
    - quantizer_name: '*y'
      cfg: {num_bits: e4m3, enable: false}
`)})
	r, err := Load(filepath.Join(dir, "r.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Entries[3].Cfg != nil || r.Entries[3].Enable {
		t.Errorf("cfg {} with enable false must become a toggle: %+v", r.Entries[3])
	}
	if r.Entries[5].Enable {
		t.Errorf("cfg.enable false without entry enable must disable: %+v", r.Entries[5])
	}
	a, err := r.Apply(Enumerate(refModels[0].modules()), ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range a.Quantizers {
		if isKV(q) != q.Config.Enable {
			t.Errorf("%s enabled %v", q.Name, q.Config.Enable)
		}
		if isKV(q) && (q.Config.ConstantAmax == nil || *q.Config.ConstantAmax != 10.5) {
			t.Errorf("%s: constant_amax not kept: %+v", q.Name, q.Config)
		}
	}
	if !slices.Contains(a.UnmatchedDisabling, "*x") || !slices.Contains(a.UnmatchedDisabling, "*weight_quantizer") {
		t.Errorf("unmatched disabling %v", a.UnmatchedDisabling)
	}
}

func TestApplyErrors(t *testing.T) {
	mods := refModels[2].modules() // qwen3_5: shared experts, one attention layer
	tests := []struct {
		name    string
		entries string
		want    []string
	}{
		{"INT8 default left enabled", "    - quantizer_name: '*lm_head*'\n      enable: true\n", []string{"lm_head.input_quantizer", "INT8 default"}},
		{"INT8 default without disable-all", "", nil},
		{"int8 cfg re-enabled", "    - quantizer_name: '*lm_head*'\n      cfg: {num_bits: 8}\n      enable: false\n    - quantizer_name: '*lm_head*'\n      enable: true\n", []string{"quantizer lm_head.input_quantizer", "integer format"}},
		{"nvfp4 kv", "    - quantizer_name: '*[kv]_bmm_quantizer'\n      cfg: {num_bits: e2m1, block_sizes: {-1: 16, type: dynamic, scale_bits: e4m3}}\n", []string{"k_bmm_quantizer", "KV cache format nvfp4"}},
		{"fp8 weight-only", "    - quantizer_name: '*weight_quantizer'\n      cfg: {num_bits: e4m3}\n    - $import: dd\n", []string{"FP8 weight-only"}},
		{"w4a8", "    - quantizer_name: '*weight_quantizer'\n      cfg: {$import: nvfp4}\n    - quantizer_name: '*input_quantizer'\n      cfg: {num_bits: e4m3}\n    - $import: dd\n", []string{"in_proj_qkv", "W4A8_NVFP4_FP8 (weight nvfp4, input fp8) is not supported"}},
		{"fp8 weights nvfp4 inputs", "    - quantizer_name: '*weight_quantizer'\n      cfg: {num_bits: e4m3}\n    - quantizer_name: '*input_quantizer'\n      cfg: {$import: nvfp4}\n    - $import: dd\n", []string{"FP8 weights with nvfp4 inputs"}},
		{"experts of mixed formats", "    - quantizer_name: '*experts.gate_up_proj_weight_quantizers.3'\n      cfg: {$import: nvfp4}\n", []string{"layers.0.mlp.experts.gate_up_proj", "experts have different formats"}},
		{"projections of mixed formats", "    - quantizer_name: '*experts.gate_up*'\n      cfg: {$import: nvfp4}\n", []string{"layers.0.mlp.experts", "projections have different formats"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := "imports: {nvfp4: configs/numerics/nvfp4, dd: configs/ptq/units/default_disabled_quantizers}\n" + recipeWith(tt.entries)
			if tt.want == nil {
				body = "quantize:\n  quant_cfg:\n    - quantizer_name: '*weight_quantizer'\n      cfg: {num_bits: e4m3}\n"
				tt.want = []string{"INT8 default", "input_quantizer"}
			}
			dir := writeFiles(t, map[string]string{"r.yaml": body})
			r, err := Load(filepath.Join(dir, "r.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			a, err := r.Apply(Enumerate(mods), ApplyOptions{})
			if err == nil || a == nil {
				t.Fatalf("Apply succeeded (%v)", a)
			}
			if exitCodeOf(err) != 2 {
				t.Errorf("exit code %d (%v)", exitCodeOf(err), err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestApplyCoverage(t *testing.T) {
	dir := writeFiles(t, map[string]string{"r.yaml": "imports: {nvfp4: configs/numerics/nvfp4}\n" + recipeWith(`    - quantizer_name: '*mlp.experts*weight_quantizer'
      cfg: {$import: nvfp4}
    - quantizer_name: '*mlp.experts*input_quantizer'
      cfg: {$import: nvfp4}
    - quantizer_name: '*typo_experts*input_quantizer'
      cfg: {$import: nvfp4, constant_amax: 2688.0}
    - quantizer_name: '*nothing*'
      enable: false
`)})
	r, err := Load(filepath.Join(dir, "r.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	qs := Enumerate(append(refModels[0].modules(), Module{Name: "extra", Kind: KindLinear}))
	a, err := r.Apply(qs, ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if fmtS(a.UnmatchedEnabling) != "[*typo_experts*input_quantizer]" || fmtS(a.UnmatchedDisabling) != "[*nothing*]" || len(a.Unconfigured) != 0 {
		t.Errorf("coverage %v / %v / %v", a.UnmatchedEnabling, a.UnmatchedDisabling, a.Unconfigured)
	}
	if len(a.Enabled()) != 2*2*(refExperts+1) {
		t.Errorf("%d enabled", len(a.Enabled()))
	}
	// Without a disable-all, untouched quantizers are reported (and are an
	// INT8-default error).
	r.Entries = r.Entries[1:]
	a, err = r.Apply(qs, ApplyOptions{})
	if err == nil || !slices.Contains(a.Unconfigured, "extra.weight_quantizer") {
		t.Errorf("unconfigured %v, err %v", a.Unconfigured, err)
	}
}

func fmtS(s []string) string { return "[" + strings.Join(s, " ") + "]" }

func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 12; i++ {
		fmt.Fprintf(&b, "a%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	dir := writeFiles(t, map[string]string{"r.yaml": b.String()})
	_, err := Load(filepath.Join(dir, "r.yaml"))
	if err == nil || !strings.Contains(err.Error(), "alias bomb") || exitCodeOf(err) != 1 {
		t.Errorf("alias bomb: %v", err)
	}
}

// parent_class nn.Linear enables Linears only: fused experts are not
// nn.Linear, so their inputs stay disabled (W4A16 NVFP4 experts).
func TestParentClassLinear(t *testing.T) {
	dir := writeFiles(t, map[string]string{"r.yaml": "imports: {nvfp4: configs/numerics/nvfp4}\n" + recipeWith(`    - quantizer_name: '*weight_quantizer'
      cfg: {$import: nvfp4}
    - quantizer_name: '*input_quantizer'
      parent_class: nn.Linear
      cfg: {$import: nvfp4}
    - quantizer_name: '*'
      parent_class: nn.Embedding
      enable: false
`)})
	r, err := Load(filepath.Join(dir, "r.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := r.Apply(Enumerate(refModels[0].modules()), ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range a.Quantizers {
		want := "nvfp4"
		if isKV(q) || (isExpert(q) && q.Role == RoleInput) {
			want = "none"
		}
		if q.Config.Format() != want {
			t.Errorf("%s: %s, want %s", q.Name, q.Config.Format(), want)
		}
	}
	if fmtS(a.UnmatchedDisabling) != "[*]" || len(a.UnmatchedEnabling) != 0 {
		t.Errorf("coverage %v %v", a.UnmatchedDisabling, a.UnmatchedEnabling)
	}
}
