package quant

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, content := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func exitCodeOf(err error) int {
	var c interface{ ExitCode() int }
	if errors.As(err, &c) {
		return c.ExitCode()
	}
	if errors.Is(err, fs.ErrNotExist) {
		return 2
	}
	return 1
}

// A copied modelopt_recipes tree: the recipe sits in general/ptq and imports
// units by tree-relative paths, which resolve against its ancestors first and
// then against ptqgate's built-in units.
func TestLoadCopiedTree(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"modelopt_recipes/general/ptq/my-recipe.yaml": `
imports:
  base_disable_all: configs/ptq/units/base_disable_all
  default_disabled: configs/ptq/units/default_disabled_quantizers
  nvfp4: configs/numerics/nvfp4
  fp8: configs/numerics/fp8
  kv: configs/ptq/units/kv_fp8_cast
  experts: configs/ptq/units/my_experts
metadata:
  recipe_type: ptq
  description: >-
    Experts NVFP4,
    constant KV.
quantize:
  algorithm:
    method: max
    layerwise: false
  quant_cfg:
    - $import: base_disable_all
    - $import: experts
    - quantizer_name: '*self_attn.o_proj.weight_quantizer'
      cfg:
        $import: [fp8, nvfp4]
        constant_amax: 2.5
    - $import: kv
    - $import: default_disabled
`,
		// A local copy of a built-in unit wins over the built-in.
		"modelopt_recipes/configs/numerics/nvfp4.yml": `# modelopt-schema: modelopt.torch.quantization.config.QuantizerAttributeConfig
num_bits: e2m1
block_sizes: {-1: 16, type: dynamic, scale_bits: e4m3}
effective_bits: 4.25
`,
		// A two-document list unit with its own imports, resolved relative to itself.
		"modelopt_recipes/configs/ptq/units/my_experts.yaml": `# modelopt-schema: modelopt.torch.quantization.config.QuantizerCfgListConfig
imports:
  nvfp4: configs/numerics/nvfp4
---
- quantizer_name: '*mlp.experts*weight_quantizer'
  cfg:
    $import: nvfp4
- quantizer_name: '*mlp.experts*input_quantizer'
  cfg: {$import: nvfp4, constant_amax: 2688.0}
`,
	})
	path := filepath.Join(dir, "modelopt_recipes/general/ptq/my-recipe.yaml")
	r, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if r.Name != "my-recipe" || r.Source != path || r.Description != "Experts NVFP4, constant KV." || r.Algorithm != (Algorithm{Method: "max"}) {
		t.Errorf("recipe %q %q %q %+v", r.Name, r.Source, r.Description, r.Algorithm)
	}
	if len(r.Entries) != 1+2+1+1+23 {
		t.Fatalf("%d entries", len(r.Entries))
	}
	w, in, o, kv := r.Entries[1], r.Entries[2], r.Entries[3], r.Entries[4]
	if !w.Cfg.IsNVFP4() || w.Cfg.EffectiveBits != 4.25 || !strings.Contains(w.Origin, "my_experts.yaml") || !strings.Contains(w.Origin, "my-recipe.yaml entry 2") {
		t.Errorf("expert weight entry %+v %s (the local nvfp4 unit must win)", *w.Cfg, w.Origin)
	}
	if in.Cfg.ConstantAmax == nil || *in.Cfg.ConstantAmax != 2688 || !in.Cfg.IsNVFP4() {
		t.Errorf("expert input entry %+v", *in.Cfg)
	}
	// $import: [fp8, nvfp4] applies both in order (nvfp4 replaces num_bits,
	// axis from fp8 stays null), then inline keys.
	if !o.Cfg.IsNVFP4() || o.Cfg.EffectiveBits != 4.25 || o.Cfg.ConstantAmax == nil || *o.Cfg.ConstantAmax != 2.5 {
		t.Errorf("o_proj entry %+v", *o.Cfg)
	}
	if !kv.Cfg.UseConstantAmax || !kv.Cfg.IsFP8() || !strings.Contains(kv.Origin, "ptqgate:configs/ptq/units/kv_fp8_cast.yaml") {
		t.Errorf("kv entry %+v %s", *kv.Cfg, kv.Origin)
	}
	if !strings.Contains(r.Entries[5].Origin, "ptqgate:configs/ptq/units/default_disabled_quantizers.yaml") {
		t.Errorf("default-disabled origin %s", r.Entries[5].Origin)
	}
	a, err := r.Apply(Enumerate(refModels[0].modules()), ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range a.Quantizers {
		wantOn := isExpert(q) || isKV(q) || strings.HasSuffix(q.Name, "o_proj.weight_quantizer")
		if q.Config.Enable != wantOn {
			t.Errorf("%s: enabled %v, want %v", q.Name, q.Config.Enable, wantOn)
		}
	}
	if len(a.UnmatchedEnabling) != 0 {
		t.Errorf("unmatched %v", a.UnmatchedEnabling)
	}
}

func TestLoadUnitShapes(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"u/one_entry.yaml":   "quantizer_name: '*a*'\nenable: false\n",
		"u/entry_list.yaml":  "- quantizer_name: '*b*'\n  enable: false\n- quantizer_name: '*c*'\n  enable: false\n",
		"u/schema_list.yaml": "# header\n\n# modelopt-schema: x.QuantizerCfgListConfig\n- quantizer_name: '*d*'\n  enable: false\n",
		"u/entry_imports.yaml": `# modelopt-schema: modelopt.torch.quantization.config.QuantizerCfgEntry
imports:
  fp8: configs/numerics/fp8
quantizer_name: '*e*'
cfg:
  $import: fp8
`,
		"r.yaml": `imports:
  one: u/one_entry
  list: u/entry_list.yaml
  sl: u/schema_list
  ei: u/entry_imports
quantize:
  quant_cfg:
    - $import: one
    - $import: [list, sl]
    - $import: ei
`,
	})
	r, err := Load(filepath.Join(dir, "r.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range r.Entries {
		names = append(names, e.QuantizerName)
	}
	if strings.Join(names, " ") != "*a* *b* *c* *d* *e*" || !r.Entries[4].Cfg.IsFP8() || r.Algorithm.Method != "max" {
		t.Errorf("entries %v, last %+v, algorithm %+v", names, r.Entries[4].Cfg, r.Algorithm)
	}
}

func TestLoadLegacyDict(t *testing.T) {
	files := map[string]string{
		// The legacy flat dict under quant_cfg, in a QuantizeConfig-shaped file.
		"flat.yaml": `algorithm: max
quant_cfg:
  default: {enable: false}
  '*weight_quantizer': {num_bits: e4m3, axis: null}
  '*input_quantizer': {num_bits: [4, 3]}
  nn.BatchNorm2d: {'*': {enable: false}}
  '*lm_head*': {enable: false}
  '*[kv]_bmm_quantizer': {num_bits: e4m3, enable: true}
`,
		// Legacy single-key entries in a list, mixed with the new format.
		"list.yaml": `quantize:
  algorithm: {method: max, layerwise: true}
  quant_cfg:
    - {'*': {enable: false}}
    - {'*weight_quantizer': {num_bits: e4m3}, nn.Linear: {'*input_quantizer': {num_bits: e4m3}}}
    - quantizer_name: '*lm_head*'
      enable: false
    - default: {}
`,
	}
	dir := writeFiles(t, files)
	r, err := Load(filepath.Join(dir, "flat.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	type e struct {
		name, parent, format string
		enable               bool
	}
	got := func(r *Recipe) []e {
		var out []e
		for _, x := range r.Entries {
			f := "-"
			if x.Cfg != nil {
				f = x.Cfg.Format()
				if x.Cfg.Enable != x.Enable {
					t.Errorf("%s: cfg enable %v, entry %v", x.QuantizerName, x.Cfg.Enable, x.Enable)
				}
			}
			out = append(out, e{x.QuantizerName, x.ParentClass, f, x.Enable})
		}
		return out
	}
	want := []e{{"*", "", "-", false}, {"*weight_quantizer", "", "fp8", true}, {"*input_quantizer", "", "fp8", true},
		{"*", "nn.BatchNorm2d", "-", false}, {"*lm_head*", "", "-", false}, {"*[kv]_bmm_quantizer", "", "fp8", true}}
	if g := got(r); fmt.Sprint(g) != fmt.Sprint(want) {
		t.Errorf("flat legacy:\n got %v\nwant %v", g, want)
	}
	a, err := r.Apply(Enumerate(refModels[1].modules()), ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range a.Quantizers {
		want := "fp8"
		if strings.HasPrefix(q.Name, "lm_head") {
			want = "none"
		}
		if q.Config.Format() != want {
			t.Errorf("%s: %s, want %s", q.Name, q.Config.Format(), want)
		}
	}

	r, err = Load(filepath.Join(dir, "list.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want = []e{{"*", "", "-", false}, {"*weight_quantizer", "", "fp8", true}, {"*input_quantizer", "nn.Linear", "fp8", true},
		{"*lm_head*", "", "-", false}, {"*", "", "-", true}}
	if g := got(r); fmt.Sprint(g) != fmt.Sprint(want) {
		t.Errorf("list legacy:\n got %v\nwant %v", g, want)
	}
	if !r.Algorithm.Layerwise {
		t.Errorf("older layerwise: true not read: %+v", r.Algorithm)
	}
}
