package quant

import "testing"

func TestMatch(t *testing.T) {
	const gu3 = "model.layers.0.mlp.experts.gate_up_proj_weight_quantizers.3"
	tests := []struct {
		pattern, name string
		raw, norm     bool // Match on the raw name; matches() with normalization
	}{
		// #1340 bug 2: the plural per-expert names match only after normalization.
		{"*mlp.experts*weight_quantizer", gu3, false, true},
		{"*.experts.*weight_quantizer", gu3, false, true},
		{"*weight_quantizer", gu3, false, true},
		{"*weight_quantizers.3", gu3, true, true},
		{"*", gu3, true, true},
		{"*.experts.*input_quantizer", "model.layers.0.mlp.experts.gate_up_proj_input_quantizer", true, true},
		{"*.experts.*input_quantizer", "model.language_model.layers.3.mlp.experts.down_proj_input_quantizer", true, true},
		// '*' matches dots; the whole name must match.
		{"*lm_head*", "lm_head.weight_quantizer", true, true},
		{"lm_head", "lm_head.weight_quantizer", false, false},
		{"*mlp.gate.*", "model.layers.0.mlp.gate_proj.input_quantizer", false, false},
		{"*mlp.gate.*", "model.layers.0.mlp.gate.weight_quantizer", true, true},
		{"output.*", "model.output.weight_quantizer", false, false},
		{"*.experts.*", "model.layers.0.mlp.shared_experts.up_proj.weight_quantizer", false, false},
		// character classes
		{"*[kv]_bmm_quantizer", "model.layers.3.self_attn.k_bmm_quantizer", true, true},
		{"*[kv]_bmm_quantizer", "model.layers.3.self_attn.v_bmm_quantizer", true, true},
		{"*[kv]_bmm_quantizer", "model.layers.3.self_attn.q_bmm_quantizer", false, false},
		{"*[!k]_bmm_quantizer", "a.q_bmm_quantizer", true, true},
		{"*[!k]_bmm_quantizer", "a.k_bmm_quantizer", false, false},
		{"layers.[0-2].x", "layers.1.x", true, true},
		{"layers.[0-2].x", "layers.3.x", false, false},
		{"layers.[2-0].x", "layers.1.x", false, false}, // empty range
		{"[]]x", "]x", true, true},
		{"a[-z]", "a-", true, true},
		// '?' and literal specials
		{"a?c", "abc", true, true},
		{"a?c", "ac", false, false},
		{"a[bc", "a[bc", true, true}, // unclosed '[' is literal
		{"a.b+c", "a.b+c", true, true},
		{"a.b", "axb", false, false},
		{`a\b`, `a\b`, true, true},
		{"**x", "yyx", true, true},
		{"", "", true, true},
		{"", "a", false, false},
	}
	for _, tt := range tests {
		if got := Match(tt.pattern, tt.name); got != tt.raw {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.raw)
		}
		if got := matches(tt.pattern, tt.name, false); got != tt.norm {
			t.Errorf("matches(%q, %q, normalized) = %v, want %v", tt.pattern, tt.name, got, tt.norm)
		}
		if got := matches(tt.pattern, tt.name, true); got != tt.raw {
			t.Errorf("matches(%q, %q, raw) = %v, want %v", tt.pattern, tt.name, got, tt.raw)
		}
	}
}

func TestSingular(t *testing.T) {
	tests := []struct{ in, want string }{
		{"model.layers.0.mlp.experts.gate_up_proj_weight_quantizers.3", "model.layers.0.mlp.experts.gate_up_proj_weight_quantizer"},
		{"m.experts.down_proj_weight_quantizers.17", "m.experts.down_proj_weight_quantizer"},
		{"m.experts.gate_up_proj_input_quantizer", "m.experts.gate_up_proj_input_quantizer"},
		{"m.q_proj.weight_quantizer.0", "m.q_proj.weight_quantizer"}, // SequentialQuantizer
		{"m.input_quantizers.12.inner", "m.input_quantizer.inner"},
		{"m.weight_quantizers.3a", "m.weight_quantizers.3a"},
		{"m.weight_quantizers.", "m.weight_quantizers."},
		{"m.weight_quantizers.x", "m.weight_quantizers.x"},
		{"m.weight_quantizerss.3", "m.weight_quantizerss.3"},
		{"a.weight_quantizers.1.b.input_quantizers.2", "a.weight_quantizer.b.input_quantizer"},
		{"m.k_bmm_quantizer", "m.k_bmm_quantizer"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := Singular(tt.in); got != tt.want {
			t.Errorf("Singular(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestEnumerateShapes(t *testing.T) {
	qs := Enumerate([]Module{
		{Name: "m.l.q", Kind: KindLinear},
		{Name: "m.e", Kind: KindFusedExperts, NumExperts: 2},
		{Name: "m.a", Kind: KindAttention},
		{Name: "m.unknown", Kind: ModuleKind(9)},
		{Name: "m.e0", Kind: KindFusedExperts},
	})
	want := []Quantizer{
		{Name: "m.l.q.input_quantizer", Module: "m.l.q", Role: RoleInput, Expert: -1, ParentClass: "nn.Linear"},
		{Name: "m.l.q.weight_quantizer", Module: "m.l.q", Role: RoleWeight, Expert: -1, ParentClass: "nn.Linear"},
		{Name: "m.e.gate_up_proj_input_quantizer", Module: "m.e", Role: RoleInput, Proj: "gate_up_proj", Expert: -1, ParentClass: "QuantFusedExperts"},
		{Name: "m.e.gate_up_proj_weight_quantizers.0", Module: "m.e", Role: RoleWeight, Proj: "gate_up_proj", Expert: 0, ParentClass: "QuantFusedExperts"},
		{Name: "m.e.gate_up_proj_weight_quantizers.1", Module: "m.e", Role: RoleWeight, Proj: "gate_up_proj", Expert: 1, ParentClass: "QuantFusedExperts"},
		{Name: "m.e.down_proj_input_quantizer", Module: "m.e", Role: RoleInput, Proj: "down_proj", Expert: -1, ParentClass: "QuantFusedExperts"},
		{Name: "m.e.down_proj_weight_quantizers.0", Module: "m.e", Role: RoleWeight, Proj: "down_proj", Expert: 0, ParentClass: "QuantFusedExperts"},
		{Name: "m.e.down_proj_weight_quantizers.1", Module: "m.e", Role: RoleWeight, Proj: "down_proj", Expert: 1, ParentClass: "QuantFusedExperts"},
		{Name: "m.a.k_bmm_quantizer", Module: "m.a", Role: RoleKBMM, Expert: -1, ParentClass: "QuantAttention"},
		{Name: "m.a.v_bmm_quantizer", Module: "m.a", Role: RoleVBMM, Expert: -1, ParentClass: "QuantAttention"},
		{Name: "m.e0.gate_up_proj_input_quantizer", Module: "m.e0", Role: RoleInput, Proj: "gate_up_proj", Expert: -1, ParentClass: "QuantFusedExperts"},
		{Name: "m.e0.down_proj_input_quantizer", Module: "m.e0", Role: RoleInput, Proj: "down_proj", Expert: -1, ParentClass: "QuantFusedExperts"},
	}
	if len(qs) != len(want) {
		t.Fatalf("got %d quantizers, want %d", len(qs), len(want))
	}
	for i, w := range want {
		w.Config = DefaultConfig()
		q := qs[i]
		if q.Name != w.Name || q.Module != w.Module || q.Role != w.Role || q.Proj != w.Proj || q.Expert != w.Expert || q.ParentClass != w.ParentClass || !q.Config.Equal(w.Config) {
			t.Errorf("quantizer %d = %+v, want %+v", i, q, w)
		}
	}
	if !qs[0].Config.IsDefault() || qs[0].Config.Format() != "int8" || qs[0].Config.MaxBound() != 127 {
		t.Errorf("default config %+v: format %s maxbound %v", qs[0].Config, qs[0].Config.Format(), qs[0].Config.MaxBound())
	}
}

// matches reports whether the quantizer name matches the pattern the way
// Apply matches it: on the raw name or (unless raw) on its singular form.
func matches(pattern, name string, raw bool) bool {
	m := compilePattern(pattern)
	return m(name) || (!raw && matchSingular(m, name, Singular(name)))
}
