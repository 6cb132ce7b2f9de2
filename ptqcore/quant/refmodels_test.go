package quant

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/ptqgate/ptqgate/internal/refdata"
)

// refModel describes one reference model of testdata/hf the way the model
// package describes it: its quantizable modules.
type refModel struct {
	name   string
	prefix string   // decoder prefix
	layers []string // per layer: "attn+moe", "attn+mlp", "linear+moe_shared", "attn+moe_shared"
	visual []string // vision tower Linears (never calibrated; not in amax.json)
}

var refModels = []refModel{
	{name: "qwen3-moe-tiny", prefix: "model.", layers: []string{"attn+moe", "attn+moe"}},
	{name: "qwen3-moe-dense-tiny", prefix: "model.", layers: []string{"attn+moe", "attn+mlp", "attn+moe"}},
	{name: "qwen3_5-moe-tiny", prefix: "model.language_model.",
		layers: []string{"linear+moe_shared", "linear+moe_shared", "linear+moe_shared", "attn+moe_shared"},
		visual: []string{"model.visual.blocks.0.attn.qkv", "model.visual.blocks.0.attn.proj",
			"model.visual.blocks.0.mlp.linear_fc1", "model.visual.blocks.0.mlp.linear_fc2",
			"model.visual.merger.linear_fc1", "model.visual.merger.linear_fc2"}},
}

const refExperts = 8

func (m refModel) modules() []Module {
	var mods []Module
	lin := func(n string) { mods = append(mods, Module{Name: n, Kind: KindLinear}) }
	for i, l := range m.layers {
		p := fmt.Sprintf("%slayers.%d.", m.prefix, i)
		attn, mlp, _ := strings.Cut(l, "+")
		if attn == "attn" {
			for _, pr := range []string{"q_proj", "k_proj", "v_proj", "o_proj"} {
				lin(p + "self_attn." + pr)
			}
			mods = append(mods, Module{Name: p + "self_attn", Kind: KindAttention})
		} else {
			for _, pr := range []string{"in_proj_qkv", "in_proj_z", "in_proj_b", "in_proj_a", "out_proj"} {
				lin(p + "linear_attn." + pr)
			}
		}
		switch mlp {
		case "mlp":
			for _, pr := range []string{"gate_proj", "up_proj", "down_proj"} {
				lin(p + "mlp." + pr)
			}
		case "moe", "moe_shared":
			mods = append(mods, Module{Name: p + "mlp.experts", Kind: KindFusedExperts, NumExperts: refExperts})
			if mlp == "moe_shared" {
				for _, pr := range []string{"gate_proj", "up_proj", "down_proj"} {
					lin(p + "mlp.shared_expert." + pr)
				}
				lin(p + "mlp.shared_expert_gate")
			}
		}
	}
	lin("lm_head")
	for _, v := range m.visual {
		lin(v)
	}
	return mods
}

// refNames returns amax.json's quantizer names minus the informational router
// entries.
func refNames(t *testing.T, name string) []string {
	t.Helper()
	a, err := refdata.LoadAmax(name)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for k := range a.Amax {
		if strings.Contains(k, ".mlp.gate.") {
			continue
		}
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

func TestEnumerateMatchesReferenceNames(t *testing.T) {
	for _, m := range refModels {
		t.Run(m.name, func(t *testing.T) {
			want := refNames(t, m.name)
			var got []string
			seen := map[string]bool{}
			for _, q := range Enumerate(m.modules()) {
				if seen[q.Name] {
					t.Errorf("duplicate quantizer %s", q.Name)
				}
				seen[q.Name] = true
				if strings.HasPrefix(q.Name, "model.visual.") {
					continue // the vision tower never runs, amax.json omits it
				}
				got = append(got, q.Name)
			}
			sort.Strings(got)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("quantizer names differ from amax.json:\n%s", diffLists(want, got))
			}
		})
	}
}

func diffLists(want, got []string) string {
	w, g := map[string]bool{}, map[string]bool{}
	for _, x := range want {
		w[x] = true
	}
	for _, x := range got {
		g[x] = true
	}
	var b strings.Builder
	for _, x := range want {
		if !g[x] {
			fmt.Fprintf(&b, "  missing %s\n", x)
		}
	}
	for _, x := range got {
		if !w[x] {
			fmt.Fprintf(&b, "  extra   %s\n", x)
		}
	}
	return b.String()
}

func TestDefaultDisabledMatchesReference(t *testing.T) {
	// amax.json lists the quantizers ModelOpt's default-disabled patterns
	// match; applying our default_disabled unit must disable exactly those.
	r, err := Load("nvfp4_default")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range refModels {
		t.Run(m.name, func(t *testing.T) {
			a, err := refdata.LoadAmax(m.name)
			if err != nil {
				t.Fatal(err)
			}
			var pats []string
			for _, e := range r.Entries {
				if strings.Contains(e.Origin, "default_disabled_quantizers") && e.ParentClass == "" {
					pats = append(pats, e.QuantizerName)
				}
			}
			// The reference lists a subset of HEAD's patterns, in HEAD's order.
			j := 0
			for _, p := range a.DefaultDisabled {
				for j < len(pats) && pats[j] != p {
					j++
				}
				if j == len(pats) {
					t.Fatalf("reference pattern %q missing or out of order in %v", p, pats)
				}
			}
			want := map[string]bool{}
			for _, n := range a.DisabledByDefault {
				if !strings.Contains(n, ".mlp.gate.") {
					want[n] = true
				}
			}
			for _, n := range refNames(t, m.name) {
				hit := false
				for _, p := range pats {
					hit = hit || Match(p, Singular(n)) || Match(p, n)
				}
				if hit != want[n] {
					t.Errorf("%s: default-disabled %v, reference %v", n, hit, want[n])
				}
			}
		})
	}
}
