package verifier

import (
	"fmt"
	"sort"
	"strings"

	"github.com/ptqgate/ptqgate/reports"
	"github.com/ptqgate/ptqgate/verifier/contracts"
)

// geometry is what config.json says about the model's shape (zero values
// mean unknown) and which loader family reads it.
type geometry struct {
	family    contracts.Family
	arch      string
	modelType string
	dtype     string
	layers    int
	experts   int
	topK      int
	// moe[L] is true for MoE layers; full[L] for layers with full
	// (softmax) attention, linear[L] for Gated DeltaNet layers.
	moe, full, linear                    []bool
	hidden, inter, moeInter, sharedInter int
	nh, nkv, hd, vocab                   int
	linNK, linNV, linDK, linDV           int
	// textPrefix is the decoder's module prefix in the checkpoint:
	// "model" or "model.language_model".
	textPrefix string
	// moeFromTensors: MoE layers were taken from the tensor names (no
	// family rule).
	moeFromTensors bool
}

// Limits on config.json sizes (larger values are reported as implausible).
const (
	maxLayers       = 4096
	maxExperts      = 1 << 16
	maxLayerExperts = 1 << 22
)

// knownFamily reports whether the checkpoint's family has loader tables.
func (g *geometry) knownFamily() bool { return g.family != contracts.FamilyAny }

// cfgInt reads an integer key from m, trying the keys in order.
func cfgInt(m map[string]any, keys ...string) (int, bool) {
	for _, k := range keys {
		if v, ok := m[k]; ok {
			if n, ok := jsonInt(v); ok {
				return n, true
			}
		}
	}
	return 0, false
}

// newGeometry reads config.json (text_config for VLMs) and the tensor
// names' prefix. Keys the census needs but that are missing are reported
// once as an info (the checks that need them are skipped).
func (v *run) newGeometry() *geometry {
	g := &geometry{}
	top, text := v.cfgs.model, v.cfgs.text
	if archs, ok := top["architectures"].([]any); ok && len(archs) > 0 {
		g.arch, _ = archs[0].(string)
	}
	g.modelType, _ = top["model_type"].(string)
	textType, _ := text["model_type"].(string)
	switch {
	case g.modelType == "qwen3_moe" || strings.HasPrefix(g.arch, "Qwen3MoeFor"):
		g.family = contracts.FamilyQwen3MoE
	case g.modelType == "qwen3_5_moe" || g.modelType == "qwen3_5_moe_text" || textType == "qwen3_5_moe_text" || strings.HasPrefix(g.arch, "Qwen3_5Moe"):
		g.family = contracts.FamilyQwen35MoE
	}
	for _, m := range []map[string]any{top, text} {
		if s, ok := m["dtype"].(string); ok && g.dtype == "" {
			g.dtype = s
		}
		if s, ok := m["torch_dtype"].(string); ok && g.dtype == "" {
			g.dtype = s
		}
	}
	var missing []string
	need := func(dst *int, keys ...string) {
		if n, ok := cfgInt(text, keys...); ok {
			*dst = n
		} else {
			missing = append(missing, keys[0])
		}
	}
	need(&g.layers, "num_hidden_layers")
	need(&g.hidden, "hidden_size")
	need(&g.experts, "num_experts", "num_local_experts", "n_routed_experts")
	need(&g.moeInter, "moe_intermediate_size")
	need(&g.nh, "num_attention_heads")
	need(&g.nkv, "num_key_value_heads")
	g.topK, _ = cfgInt(text, "num_experts_per_tok")
	g.vocab, _ = cfgInt(text, "vocab_size")
	g.inter, _ = cfgInt(text, "intermediate_size")
	g.sharedInter, _ = cfgInt(text, "shared_expert_intermediate_size")
	if hd, ok := cfgInt(text, "head_dim"); ok {
		g.hd = hd
	} else if g.nh > 0 && g.hidden > 0 {
		g.hd = g.hidden / g.nh
	}
	g.linNK, _ = cfgInt(text, "linear_num_key_heads")
	g.linNV, _ = cfgInt(text, "linear_num_value_heads")
	g.linDK, _ = cfgInt(text, "linear_key_head_dim")
	g.linDV, _ = cfgInt(text, "linear_value_head_dim")
	// Bound what the census iterates over: no real model comes near
	// these (94 layers × 512 experts is large today).
	if g.layers > maxLayers || g.experts > maxExperts || g.layers*g.experts > maxLayerExperts {
		v.addAny("config.json", reports.SeverityError, "", "",
			fmt.Sprintf("config.json says %d layers × %d experts, beyond what any checkpoint holds (limits %d layers, %d experts, %d in all); the census ignores them",
				g.layers, g.experts, maxLayers, maxExperts, maxLayerExperts), "")
		g.layers, g.experts = 0, 0
	}
	// Decoder prefix from the tensor names.
	vlm, plain := 0, 0
	for _, n := range v.ck.names {
		if strings.HasPrefix(n, "model.language_model.layers.") {
			vlm++
		} else if strings.HasPrefix(n, "model.layers.") {
			plain++
		}
	}
	g.textPrefix = "model"
	if vlm > plain {
		g.textPrefix = "model.language_model"
	}
	g.moe = make([]bool, g.layers)
	g.full = make([]bool, g.layers)
	g.linear = make([]bool, g.layers)
	switch g.family {
	case contracts.FamilyQwen3MoE:
		step, ok := cfgInt(text, "decoder_sparse_step")
		if !ok || step < 1 {
			step = 1
		}
		only := map[int]bool{}
		if arr, ok := text["mlp_only_layers"].([]any); ok {
			for _, x := range arr {
				if n, ok := jsonInt(x); ok {
					only[n] = true
				}
			}
		}
		for l := 0; l < g.layers; l++ {
			g.moe[l] = !only[l] && g.experts > 0 && (l+1)%step == 0
			g.full[l] = true
		}
	case contracts.FamilyQwen35MoE:
		types, _ := stringList(text["layer_types"])
		interval, ok := cfgInt(text, "full_attention_interval")
		if !ok || interval < 1 {
			interval = 4
		}
		for l := 0; l < g.layers; l++ {
			g.moe[l] = g.experts > 0
			if l < len(types) {
				g.full[l] = types[l] == "full_attention"
				g.linear[l] = types[l] == "linear_attention"
			} else {
				g.full[l] = (l+1)%interval == 0
				g.linear[l] = !g.full[l]
			}
		}
	default:
		g.moeFromTensors = true
		for _, n := range v.ck.names {
			p := parseName(n)
			if p.layer >= 0 && p.layer < g.layers && p.prefix == g.textPrefix {
				if len(p.sub) > 1 && p.sub[0] == "mlp" && p.sub[1] == "experts" {
					g.moe[p.layer] = true
				}
				if len(p.sub) > 0 && p.sub[0] == "self_attn" {
					g.full[p.layer] = true
				}
			}
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		v.addAny("config.json", reports.SeverityInfo, "", "", fmt.Sprintf("config.json lacks %s; the checks that need them (expert completeness, shapes) are skipped", strings.Join(missing, ", ")), "")
	}
	if !g.knownFamily() {
		v.addAny("config.json", reports.SeverityInfo, "", "", fmt.Sprintf("architecture %q (model_type %q) has no model-specific loader tables (Qwen3-MoE and Qwen3.5-MoE have); generic ModelOpt checks only", g.arch, g.modelType), "")
	}
	v.evaluated("config.json", reports.TargetAny)
	return g
}

// reportModel is the report's model section.
func (g *geometry) reportModel(path string) *reports.Model {
	return &reports.Model{Path: path, Architecture: g.arch, DType: g.dtype, Layers: g.layers, Experts: g.experts, TopK: g.topK}
}

// layerPrefix returns the module prefix of decoder layer l.
func (g *geometry) layerPrefix(l int) string { return fmt.Sprintf("%s.layers.%d", g.textPrefix, l) }

// qOut is the q_proj output size (Qwen3.5 doubles it for the output gate).
func (g *geometry) qOut() int {
	if g.family == contracts.FamilyQwen35MoE {
		return 2 * g.nh * g.hd
	}
	return g.nh * g.hd
}

// mlpShape returns the logical [out, in] of a gated MLP's projection with
// intermediate size I and hidden size H (0, 0 for another name).
func mlpShape(proj string, I, H int) (out, in int) {
	switch proj {
	case "gate_proj", "up_proj":
		return I, H
	case "down_proj":
		return H, I
	case "gate_up_proj":
		return 2 * I, H
	}
	return 0, 0
}

// linearShape returns the logical [out, in] of a decoder Linear, from the
// config. ok is false when the family or a needed key is unknown.
func (g *geometry) linearShape(p *parsedName) (out, in int, ok bool) {
	if !g.knownFamily() || p.layer < 0 || len(p.sub) < 2 || g.hidden == 0 {
		return 0, 0, false
	}
	H := g.hidden
	s := p.sub
	proj := p.proj
	switch {
	case s[0] == "self_attn":
		switch proj {
		case "q_proj":
			out, in = g.qOut(), H
		case "k_proj", "v_proj":
			out, in = g.nkv*g.hd, H
		case "o_proj":
			out, in = H, g.nh*g.hd
		case "qkv_proj":
			out, in = g.qOut()+2*g.nkv*g.hd, H
		}
	case s[0] == "linear_attn":
		kd, vd := g.linNK*g.linDK, g.linNV*g.linDV
		switch proj {
		case "in_proj_qkv":
			out, in = 2*kd+vd, H
		case "in_proj_z":
			out, in = vd, H
		case "in_proj_b", "in_proj_a":
			out, in = g.linNV, H
		case "in_proj_qkvz":
			out, in = 2*kd+2*vd, H
		case "in_proj_ba":
			out, in = 2*g.linNV, H
		case "out_proj":
			out, in = H, vd
		}
	case s[0] == "mlp" && p.expert >= 0 || p.kind == kindExpertSwapped:
		out, in = mlpShape(proj, g.moeInter, H)
	case s[0] == "mlp" && len(s) >= 3 && s[1] == "shared_expert":
		out, in = mlpShape(proj, g.sharedInter, H)
	case s[0] == "mlp" && len(s) == 2:
		switch proj {
		case "gate":
			out, in = g.experts, H
		case "shared_expert_gate":
			out, in = 1, H
		default:
			out, in = mlpShape(proj, g.inter, H)
		}
	}
	if out <= 0 || in <= 0 {
		return 0, 0, false
	}
	return out, in, true
}
