package contracts

import "strings"

// KVKind is which attention scale a checkpoint KV tensor carries.
type KVKind string

// KV scale kinds.
const (
	KVKey   KVKind = "k"
	KVValue KVKind = "v"
	// KVBoth is the deprecated single kv_scale (loaded as k, duplicated to v).
	KVBoth  KVKind = "kv"
	KVQuery KVKind = "q"
)

// KVScaleName recognises a KV-cache scale tensor name and returns the
// attention module it belongs to (…self_attn) and its kind. Accepted forms
// (specs/vllm.md §5, specs/anchors.md §1c): ModelOpt …self_attn.k_proj.k_scale /
// …v_proj.v_scale, compressed-tensors …self_attn.k_scale, engine form
// …self_attn.attn.k_scale, fused …self_attn.qkv_proj.k_scale, legacy
// …self_attn.kv_scale, and the same with q_scale.
func KVScaleName(name string) (attn string, kind KVKind, ok bool) {
	dot := strings.LastIndexByte(name, '.')
	if dot < 0 {
		return "", "", false
	}
	base, last := name[:dot], name[dot+1:]
	switch last {
	case "k_scale":
		kind = KVKey
	case "v_scale":
		kind = KVValue
	case "kv_scale":
		kind = KVBoth
	case "q_scale":
		kind = KVQuery
	default:
		return "", "", false
	}
	for _, sub := range []string{".k_proj", ".v_proj", ".q_proj", ".qkv_proj", ".attn"} {
		if strings.HasSuffix(base, sub) {
			return strings.TrimSuffix(base, sub), kind, true
		}
	}
	return base, kind, true
}

// KVScaleLoaded reports whether target t, loading a model of family fam,
// puts the checkpoint KV scale tensor name into the attention layer's
// scale parameter (true) or drops it (false), emulating
// maybe_remap_kv_scale_name and the per-model loaders (specs/vllm.md §5,
// specs/sglang.md §5). expected is the engine parameter the scale should
// reach. The name must belong to a layer that has an attention module.
func KVScaleLoaded(t Target, fam Family, name string) (loaded bool, expected string) {
	attn, kind, ok := KVScaleName(name)
	if !ok {
		return false, ""
	}
	param := "k_scale"
	switch kind {
	case KVValue:
		param = "v_scale"
	case KVQuery:
		param = "q_scale"
	}
	expected = attn + ".attn." + param
	engineForm := strings.HasSuffix(name, ".attn."+string(kind)+"_scale")
	if t.Engine == VLLM {
		switch {
		case fam == FamilyQwen3MoE && t.AtMost("0.20"):
			// old qwen3_moe: ignore_suffixes drops .k_scale/.v_scale.
			return false, expected
		case fam == FamilyQwen35MoE && t.AtMost("0.27"):
			// qwen3_5 @36c110bd: no remap; only names already in engine form load.
			return engineForm, expected
		}
		return vllmRemap(name, kind), expected
	}
	switch fam {
	case FamilyQwen3MoE:
		// RadixAttention is built without quant_config: no k/v params (#39942).
		return false, expected
	case FamilyQwen35MoE:
		if t.AtMost("0.5.16") {
			return false, expected
		}
		// QWEN3_5_KV_SCALE_MAPPER: substring .self_attn.k_proj.k_scale →
		// .attn.k_scale (same for v); engine-form names load by name.
		if strings.HasSuffix(name, ".self_attn.k_proj.k_scale") || strings.HasSuffix(name, ".self_attn.v_proj.v_scale") {
			return true, expected
		}
		return engineForm, expected
	}
	return vllmRemap(name, kind), expected
}

// vllmRemap is maybe_remap_kv_scale_name's first-match-wins table for a
// standard self_attn layer; SGLang's generic remapper accepts the same
// forms (specs/sglang.md §5).
func vllmRemap(name string, kind KVKind) bool {
	switch kind {
	case KVKey:
		return strings.HasSuffix(name, ".self_attn.attn.k_scale") ||
			strings.HasSuffix(name, ".self_attn.k_proj.k_scale") ||
			strings.HasSuffix(name, ".self_attn.qkv_proj.k_scale") ||
			strings.HasSuffix(name, ".self_attn.k_scale")
	case KVValue:
		return strings.HasSuffix(name, ".self_attn.attn.v_scale") ||
			strings.HasSuffix(name, ".self_attn.v_proj.v_scale") ||
			strings.HasSuffix(name, ".self_attn.qkv_proj.v_scale") ||
			strings.HasSuffix(name, ".self_attn.v_scale")
	case KVBoth:
		return strings.HasSuffix(name, ".self_attn.kv_scale")
	case KVQuery:
		return strings.HasSuffix(name, ".self_attn.attn.q_scale") || strings.HasSuffix(name, ".self_attn.q_scale")
	}
	return false
}
