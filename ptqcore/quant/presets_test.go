package quant

import (
	"slices"
	"strings"
	"testing"
)

// expectation is an independent statement of what each preset does to a
// quantizer, written from INTERFACES.md and specs/modelopt.md §1.4/§1.5
// rather than from the recipe patterns.
type expectation func(q Quantizer) string // the expected Format()

func defaultDisabled(q Quantizer) bool {
	for _, s := range []string{"lm_head", "linear_attn.in_proj_a", "linear_attn.in_proj_b", "mlp.shared_expert_gate", "model.visual."} {
		if strings.Contains(q.Name, s) {
			return true
		}
	}
	return false
}

func isKV(q Quantizer) bool     { return q.Role == RoleKBMM || q.Role == RoleVBMM }
func isExpert(q Quantizer) bool { return strings.HasSuffix(q.Module, ".mlp.experts") }
func isMLPPart(q Quantizer) bool {
	return strings.Contains(q.Module, ".mlp.") || strings.HasSuffix(q.Module, ".mlp.experts")
}

func expect(all, kv bool, fmtW, fmtI string, scope func(Quantizer) bool) expectation {
	return func(q Quantizer) string {
		switch {
		case isKV(q):
			if kv {
				return "fp8"
			}
			return "none"
		case defaultDisabled(q) || (!all && !scope(q)):
			return "none"
		case q.Role == RoleWeight:
			return fmtW
		}
		return fmtI
	}
}

var presetExpectations = map[string]expectation{
	"fp8_default-fp8_kv":                  expect(true, true, "fp8", "fp8", nil),
	"fp8_default":                         expect(true, false, "fp8", "fp8", nil),
	"nvfp4_default-fp8_kv":                expect(true, true, "nvfp4", "nvfp4", nil),
	"nvfp4_default":                       expect(true, false, "nvfp4", "nvfp4", nil),
	"nvfp4_experts_only-fp8_kv":           expect(false, true, "nvfp4", "nvfp4", isExpert),
	"nvfp4_experts_only":                  expect(false, false, "nvfp4", "nvfp4", isExpert),
	"nvfp4_mlp_only-fp8_kv":               expect(false, true, "nvfp4", "nvfp4", isMLPPart),
	"nvfp4_mlp_only":                      expect(false, false, "nvfp4", "nvfp4", isMLPPart),
	"w4a16_nvfp4":                         expect(true, false, "nvfp4", "none", nil),
	"nvfp4_experts_only-fp8_kv_layerwise": expect(false, true, "nvfp4", "nvfp4", isExpert),
}

func TestPresetsOnReferenceModels(t *testing.T) {
	if len(presetExpectations) != len(Presets()) {
		t.Fatalf("%d expectations for %d presets", len(presetExpectations), len(Presets()))
	}
	for _, p := range Presets() {
		r, err := Load(p.Name)
		if err != nil {
			t.Fatalf("Load(%s): %v", p.Name, err)
		}
		want := presetExpectations[p.Name]
		for _, m := range refModels {
			t.Run(p.Name+"/"+m.name, func(t *testing.T) {
				qs := Enumerate(m.modules())
				a, err := r.Apply(qs, ApplyOptions{})
				if err != nil {
					t.Fatalf("Apply: %v", err)
				}
				if len(a.Quantizers) != len(qs) {
					t.Fatalf("%d quantizers back, %d in", len(a.Quantizers), len(qs))
				}
				enabled := 0
				for _, q := range a.Quantizers {
					if got, w := q.Config.Format(), want(q); got != w {
						t.Errorf("%s: format %s, want %s", q.Name, got, w)
					}
					if q.Config.Enable {
						enabled++
					}
				}
				if enabled == 0 {
					t.Error("preset enabled nothing")
				}
				if len(a.UnmatchedEnabling) != 0 || len(a.Unconfigured) != 0 || len(a.InputWithoutWeight) != 0 {
					t.Errorf("unmatched enabling %v, unconfigured %v, input without weight %v", a.UnmatchedEnabling, a.Unconfigured, a.InputWithoutWeight)
				}
				// Disabling entries that name other architectures match nothing.
				if !slices.Contains(a.UnmatchedDisabling, "*block_sparse_moe.gate*") || slices.Contains(a.UnmatchedDisabling, "*lm_head*") {
					t.Errorf("unmatched disabling %v", a.UnmatchedDisabling)
				}
			})
		}
	}
}

func TestPresetTableMatchesFiles(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range Presets() {
		for _, n := range append([]string{p.Name}, p.Aliases...) {
			if seen[n] {
				t.Errorf("name %s listed twice", n)
			}
			seen[n] = true
			r, err := Load(n)
			if err != nil {
				t.Fatalf("Load(%s): %v", n, err)
			}
			if r.Name != p.Name || r.Source != "preset" {
				t.Errorf("Load(%s): name %q source %q, want %q preset", n, r.Name, r.Source, p.Name)
			}
			if r.Description != p.Description {
				t.Errorf("%s: YAML description %q, table %q", n, r.Description, p.Description)
			}
			if r.Algorithm.String() != p.Algorithm {
				t.Errorf("%s: algorithm %q, table %q", n, r.Algorithm, p.Algorithm)
			}
			if !strings.Contains(r.Entries[0].Origin, "preset "+p.Name+" entry 1") {
				t.Errorf("%s: origin %q", n, r.Entries[0].Origin)
			}
		}
	}
	for _, n := range []string{"fp8_default-kv_fp8", "nvfp4_experts_only-kv_fp8", "nvfp4_experts_only-kv_fp8_layerwise"} {
		if !seen[n] {
			t.Errorf("alias %s missing", n)
		}
	}
}

// The toolkit's order: disable-all first, format entries, KV, then the
// default-disabled list of §1.5 in its exact order ending in parent_class
// entries.
func TestPresetEntryOrder(t *testing.T) {
	r, err := Load("nvfp4_experts_only-kv_fp8")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range r.Entries {
		s := e.QuantizerName
		if e.ParentClass != "" {
			s = e.ParentClass + ":" + s
		}
		if e.Cfg != nil {
			s += "=" + e.Cfg.Format()
		} else if !e.Enable {
			s += "=off"
		}
		got = append(got, s)
	}
	want := []string{"*=off",
		"*.experts.*weight_quantizer=nvfp4", "*.experts.*input_quantizer=nvfp4",
		"*block_sparse_moe*weight_quantizer=nvfp4", "*block_sparse_moe*input_quantizer=nvfp4",
		"*[kv]_bmm_quantizer=fp8",
		"*block_sparse_moe.gate*=off", "*linear_attn.conv1d*=off", "*linear_attn.in_proj_a*=off", "*linear_attn.in_proj_b*=off",
		"*lm_head*=off", "*mixer.conv1d*=off", "*mlp.gate.*=off", "*mlp.shared_expert_gate.*=off", "*output_layer*=off",
		"*proj_out.*=off", "*router*=off", "mtp.*=off", "output.*=off", "*embed_vision*=off", "*vision_tower*=off",
		"*visual*=off", "*vision_model*=off", "*multi_modal_projector*=off",
		"nn.BatchNorm1d:*=off", "nn.BatchNorm2d:*=off", "nn.BatchNorm3d:*=off", "nn.LeakyReLU:*=off", "nn.Embedding:*=off"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("entries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if r.Algorithm != (Algorithm{Method: "max"}) {
		t.Errorf("algorithm %+v", r.Algorithm)
	}
	lw, err := Load("nvfp4_experts_only-kv_fp8_layerwise")
	if err != nil {
		t.Fatal(err)
	}
	if !lw.Algorithm.Layerwise || len(lw.Entries) != len(r.Entries) {
		t.Errorf("layerwise preset: %+v, %d entries", lw.Algorithm, len(lw.Entries))
	}
}

// The plural-match fault (#1340 bug 2): without singular normalization the
// experts-only weight patterns match nothing and the expert weights stay
// unquantized; the coverage report names both weight alternatives.
func TestPluralMatchFault(t *testing.T) {
	r, err := Load("nvfp4_experts_only-fp8_kv")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range refModels {
		qs := Enumerate(m.modules())
		a, err := r.Apply(qs, ApplyOptions{NoSingularNormalization: true})
		if err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
		want := []string{"*.experts.*weight_quantizer", "*block_sparse_moe*weight_quantizer"}
		if strings.Join(a.UnmatchedEnabling, ",") != strings.Join(want, ",") {
			t.Errorf("%s: unmatched enabling %v, want %v", m.name, a.UnmatchedEnabling, want)
		}
		if len(a.UnmatchedEnablingEntries) != 2 || !strings.Contains(a.UnmatchedEnablingEntries[0].Describe(), "entry 2") {
			t.Errorf("%s: entries %+v", m.name, a.UnmatchedEnablingEntries)
		}
		for _, q := range a.Quantizers {
			if isExpert(q) && q.Role == RoleWeight && q.Config.Enable {
				t.Errorf("%s: %s enabled under plural-match", m.name, q.Name)
			}
			if isExpert(q) && q.Role == RoleInput && !q.Config.IsNVFP4() {
				t.Errorf("%s: %s is %s, want nvfp4 (input names are singular)", m.name, q.Name, q.Config.Format())
			}
		}
		if len(a.InputWithoutWeight) != 2*countExperts(m) {
			t.Errorf("%s: input without weight %v", m.name, a.InputWithoutWeight)
		}
	}
}

func countExperts(m refModel) int {
	n := 0
	for _, l := range m.layers {
		if strings.Contains(l, "moe") {
			n++
		}
	}
	return n
}
