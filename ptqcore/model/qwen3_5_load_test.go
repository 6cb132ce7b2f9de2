package model_test

import (
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/ptqgate/ptqgate/internal/refdata"
	"github.com/ptqgate/ptqgate/internal/testckpt"
	"github.com/ptqgate/ptqgate/ptqcore/backend"
	"github.com/ptqgate/ptqgate/ptqcore/backend/cpu"
	"github.com/ptqgate/ptqgate/ptqcore/model"
	"github.com/ptqgate/ptqgate/ptqcore/quant"
	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
)

// TestQwen35Quantizers: the quantizer set of the model's modules is
// exactly ModelOpt's, i.e. amax.json's names without the routers' (a
// TopKRouter is not an nn.Linear): linear_attn projections, q/k/v/o_proj
// and k/v bmm quantizers of the full-attention layer only, fused experts,
// shared expert projections, shared_expert_gate and lm_head; nothing for
// conv1d or the vision tower.
func TestQwen35Quantizers(t *testing.T) {
	ref, err := refdata.LoadAmax(qwen35Case)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for name := range ref.Amax {
		if !strings.Contains(name, ".mlp.gate.") {
			want = append(want, name)
		}
	}
	sort.Strings(want)
	for _, dir := range []string{refdata.Dir(qwen35Case), fusedDir(t, qwen35Case)} {
		m, err := model.Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, q := range quant.Enumerate(m.Modules()) {
			got = append(got, q.Name)
		}
		sort.Strings(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: quantizers differ from amax.json\n got %v\nwant %v", dir, got, want)
		}
		if len(m.MoEBlocks()) != 4 {
			t.Errorf("%d MoE blocks, want 4", len(m.MoEBlocks()))
		}
		if f, ok := m.Experts("model.language_model.layers.2.mlp.experts"); !ok || f.NumExperts != 8 || f.Intermediate != 32 {
			t.Errorf("experts of layer 2: %+v", f)
		}
		if len(m.Unused) != 21 {
			t.Errorf("%d unused tensors, want the 21 vision tensors: %v", len(m.Unused), m.Unused)
		}
		for _, n := range m.Unused {
			if !strings.HasPrefix(n, "model.visual.") {
				t.Errorf("unused tensor %s is not part of the vision tower", n)
			}
		}
		l, ok := m.Linear("model.language_model.layers.3.self_attn.q_proj")
		if !ok || l.Out != 128 || l.In != 64 {
			t.Errorf("q_proj holds queries and gates [128, 64]: %+v", l)
		}
		if l, ok := m.Linear("model.language_model.layers.1.mlp.shared_expert_gate"); !ok || l.Out != 1 {
			t.Errorf("shared_expert_gate: %+v", l)
		}
		conv := m.Layers[0].Mixer.(*model.GatedDeltaNet).Conv
		if conv.Name != "model.language_model.layers.0.linear_attn.conv1d.weight" || !slices.Equal(conv.Shape, []int{96, 1, 4}) {
			t.Errorf("conv1d parameter %s %v", conv.Name, conv.Shape)
		}
		params := map[string]bool{}
		for _, p := range m.Params() {
			params[p.Name] = true
		}
		// Every text tensor of the checkpoint is a parameter the exporter
		// can write (experts under their fused names).
		ck, err := safetensors.OpenCheckpoint(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range ck.Names() {
			name := n
			if i := strings.Index(n, ".mlp.experts."); i >= 0 {
				rest := n[i+len(".mlp.experts."):]
				proj := "gate_up_proj"
				if strings.Contains(rest, "down_proj") {
					proj = "down_proj"
				}
				name = n[:i] + ".mlp.experts." + proj
			}
			if !strings.HasPrefix(n, "model.visual.") && !params[name] {
				t.Errorf("checkpoint tensor %s is not a model parameter", n)
			}
		}
		ck.Close()
	}
}

// TestQwen35Ignored: mtp.* tensors (multi-token prediction) are ignored
// on load, like the vision tower, and listed as unused for the exporter;
// the logits do not change.
func TestQwen35Ignored(t *testing.T) {
	src := refdata.Dir(qwen35Case)
	out := testckpt.Tensors(t, src, nil)
	for _, s := range out {
		if s.Name == "model.language_model.norm.weight" {
			s.Name = "mtp.norm.weight"
			out = append(out, s)
			break
		}
	}
	dir := t.TempDir()
	if err := safetensors.WriteFile(filepath.Join(dir, "model.safetensors"), nil, out); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join(src, "config.json"), filepath.Join(dir, "config.json"))
	bs := batches(t, qwen35Case)[:1]
	_, want := forward(t, src, model.ExpertsGrouped, bs)
	m, got := forward(t, dir, model.ExpertsGrouped, bs)
	if !slices.Contains(m.Unused, "mtp.norm.weight") || len(m.Unused) != 22 {
		t.Errorf("unused %v, want the vision tower and mtp.norm.weight", m.Unused)
	}
	if !slices.Equal(bits(got[0].Logits), bits(want[0].Logits)) {
		t.Error("an mtp tensor changed the logits")
	}
}

// TestQwen35Errors: malformed Qwen3.5 configs and checkpoints name the
// file and the key or tensor (exit 1); unsupported settings and backends
// without the Gated DeltaNet operations are exit 2.
func TestQwen35Errors(t *testing.T) {
	text := func(edit func(tc map[string]any)) func(c map[string]any) {
		return func(c map[string]any) { edit(c["text_config"].(map[string]any)) }
	}
	for _, tc := range []struct {
		name   string
		drop   string
		config func(map[string]any)
		code   int
		msg    []string
	}{
		{"layer types count", "", text(func(c map[string]any) { c["layer_types"] = []string{"linear_attention"} }), 1,
			[]string{"text_config.layer_types", "1 entries"}},
		{"layer type name", "", text(func(c map[string]any) {
			c["layer_types"] = []string{"linear_attention", "sliding_attention", "linear_attention", "full_attention"}
		}), 1, []string{"text_config.layer_types", "sliding_attention"}},
		{"value heads", "", text(func(c map[string]any) { c["linear_num_value_heads"] = 3 }), 1,
			[]string{"text_config.linear_num_value_heads", "multiple"}},
		{"activation", "", text(func(c map[string]any) { c["hidden_act"] = "gelu" }), 2, []string{"gelu"}},
		{"attention bias", "", text(func(c map[string]any) { c["attention_bias"] = true }), 2, []string{"attention_bias"}},
		{"default layer types", "", text(func(c map[string]any) { delete(c, "layer_types"); c["full_attention_interval"] = 2 }), 1,
			[]string{"model.language_model.layers.1.self_attn.q_proj.weight", "missing"}},
		{"missing conv", "model.language_model.layers.1.linear_attn.conv1d.weight", nil, 1,
			[]string{"model.language_model.layers.1.linear_attn.conv1d.weight", "missing"}},
		{"missing shared expert gate", "model.language_model.layers.3.mlp.shared_expert_gate.weight", nil, 1,
			[]string{"model.language_model.layers.3.mlp.shared_expert_gate.weight", "missing"}},
		{"conv kernel disagrees", "", text(func(c map[string]any) { c["linear_conv_kernel_dim"] = 3 }), 1,
			[]string{"model.language_model.layers.0.linear_attn.conv1d.weight", "[96 1 3]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := rewrite(t, qwen35Case, func(s *safetensors.Source) bool { return s.Name != tc.drop }, tc.config)
			_, err := model.Load(dir)
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
	t.Run("backend without linear attention", func(t *testing.T) {
		m, err := model.Load(refdata.Dir(qwen35Case))
		if err != nil {
			t.Fatal(err)
		}
		err = m.Prepare(plainBackend{cpu.New()})
		if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), "backend.LinearAttention") ||
			!strings.Contains(err.Error(), "model.language_model.layers.0.linear_attn") {
			t.Errorf("Prepare on a backend without Gated DeltaNet operations: %v", err)
		}
	})
}

// plainBackend hides the CPU backend's optional interfaces.
type plainBackend struct{ backend.Backend }
