package model

import (
	"fmt"

	"github.com/ptqgate/ptqgate/ptqcore/backend"
)

// Qwen3.5-MoE (model_type "qwen3_5_moe" with text_config
// "qwen3_5_moe_text", specs/transformers.md §4): the vision-language class
// keeps the text model under model.language_model (its vision tower
// model.visual.* is never run and stays in Model.Unused, as do mtp.*
// tensors); the text-only class stores it under model.
func init() {
	Register("Qwen3_5MoeForConditionalGeneration", buildQwen35MoE)
	Register("Qwen3_5MoeForCausalLM", buildQwen35MoE)
}

// Qwen3.5 layer types (text_config.layer_types).
const (
	LayerLinearAttention = "linear_attention"
	LayerFullAttention   = "full_attention"
)

// Qwen35Config holds the Qwen3.5-MoE text keys beyond the generic Config,
// with Qwen3_5MoeTextConfig's defaults for absent keys.
type Qwen35Config struct {
	// LayerTypes has one entry per layer: LayerLinearAttention or
	// LayerFullAttention (default: every full_attention_interval-th layer,
	// 4, is full attention).
	LayerTypes []string
	// Gated DeltaNet sizes: linear_num_key_heads (16),
	// linear_num_value_heads (32), linear_key_head_dim (128),
	// linear_value_head_dim (128), linear_conv_kernel_dim (4).
	LinearKeyHeads, LinearValueHeads int
	LinearKeyDim, LinearValueDim     int
	ConvKernel                       int
	// SharedExpertIntermediate is shared_expert_intermediate_size (512).
	SharedExpertIntermediate int
	// RotaryDim is int(head_dim · partial_rotary_factor).
	RotaryDim int
}

// ParseQwen35Config reads and checks the Qwen3.5-MoE keys of c. It also
// fills the generic expert keys transformers defaults when config.json
// omits them (num_experts 256, num_experts_per_tok 8,
// moe_intermediate_size 512). Malformed values are *ConfigErrors (exit 1);
// settings the forward does not implement are *UnsupportedErrors (exit 2).
func ParseQwen35Config(c *Config) (*Qwen35Config, error) {
	k := c.TextKeys()
	prefix := ""
	if c.Nested {
		prefix = "text_config."
	}
	bad := func(key, format string, args ...any) error {
		return &ConfigError{File: c.Path, Key: prefix + key, Msg: fmt.Sprintf(format, args...)}
	}
	unsupported := func(format string, args ...any) error {
		return &UnsupportedError{File: c.Path, What: fmt.Sprintf(format, args...)}
	}
	q := &Qwen35Config{}
	ints := []struct {
		key string
		dst *int
		def int
	}{
		{"linear_num_key_heads", &q.LinearKeyHeads, 16},
		{"linear_num_value_heads", &q.LinearValueHeads, 32},
		{"linear_key_head_dim", &q.LinearKeyDim, 128},
		{"linear_value_head_dim", &q.LinearValueDim, 128},
		{"linear_conv_kernel_dim", &q.ConvKernel, 4},
		{"shared_expert_intermediate_size", &q.SharedExpertIntermediate, 512},
	}
	for _, f := range ints {
		v, err := k.Int(f.key, f.def, false)
		if err != nil {
			return nil, err
		}
		if v <= 0 {
			return nil, bad(f.key, "must be positive, got %d", v)
		}
		*f.dst = v
	}
	if q.LinearValueHeads%q.LinearKeyHeads != 0 {
		return nil, bad("linear_num_value_heads", "%d is not a multiple of linear_num_key_heads %d", q.LinearValueHeads, q.LinearKeyHeads)
	}
	for _, f := range []struct {
		key string
		dst *int
		def int
	}{
		{"num_experts", &c.NumExperts, 256},
		{"num_experts_per_tok", &c.NumExpertsPerTok, 8},
		{"moe_intermediate_size", &c.MoEIntermediateSize, 512},
	} {
		if !k.Has(f.key) && !(f.key == "num_experts" && k.Has("num_local_experts")) {
			*f.dst = f.def
		}
		if *f.dst <= 0 {
			return nil, bad(f.key, "must be positive (every Qwen3.5-MoE layer is MoE), got %d", *f.dst)
		}
	}
	if c.NumExpertsPerTok > c.NumExperts {
		return nil, bad("num_experts_per_tok", "%d is not in [1, num_experts %d]", c.NumExpertsPerTok, c.NumExperts)
	}
	types, err := k.Strings("layer_types")
	if err != nil {
		return nil, err
	}
	if types == nil {
		interval, err := k.Int("full_attention_interval", 4, false)
		if err != nil {
			return nil, err
		}
		if interval <= 0 {
			return nil, bad("full_attention_interval", "must be positive, got %d", interval)
		}
		for i := 0; i < c.NumHiddenLayers; i++ {
			t := LayerLinearAttention
			if (i+1)%interval == 0 {
				t = LayerFullAttention
			}
			types = append(types, t)
		}
	}
	if len(types) != c.NumHiddenLayers {
		return nil, bad("layer_types", "%d entries for num_hidden_layers %d", len(types), c.NumHiddenLayers)
	}
	for i, t := range types {
		if t != LayerLinearAttention && t != LayerFullAttention {
			return nil, bad("layer_types", "entry %d is %q (want %q or %q)", i, t, LayerLinearAttention, LayerFullAttention)
		}
	}
	q.LayerTypes = types
	if c.HiddenAct != "silu" {
		return nil, unsupported("hidden_act %q (silu only)", c.HiddenAct)
	}
	if c.RopeType != "default" {
		return nil, unsupported("RoPE type %q (default only)", c.RopeType)
	}
	if c.AttentionBias {
		return nil, unsupported("attention_bias: true for Qwen3.5-MoE (its attention has no biases)")
	}
	q.RotaryDim = int(float64(c.HeadDim) * c.PartialRotaryFactor)
	if q.RotaryDim <= 0 || q.RotaryDim%2 != 0 {
		return nil, unsupported("partial_rotary_factor %g gives %d rotary dimensions of head_dim %d", c.PartialRotaryFactor, q.RotaryDim, c.HeadDim)
	}
	return q, nil
}

// buildQwen35MoE builds a Qwen3.5-MoE text model: zero-centred (1+w)
// RMSNorms, Gated DeltaNet or gated full-attention token mixers, and in
// every layer routed experts (always renormalised top-k) plus a sigmoid-
// gated shared expert.
func buildQwen35MoE(c *Config, w *Weights) (*Model, error) {
	q, err := ParseQwen35Config(c)
	if err != nil {
		return nil, err
	}
	return buildDecoder(c, w, backend.NormOffset, func(prefix string, i int) (*Layer, error) {
		return buildQwen35Layer(c, q, w, prefix, i)
	})
}

// buildQwen35Layer loads decoder layer i under prefix.
func buildQwen35Layer(c *Config, q *Qwen35Config, w *Weights, prefix string, i int) (*Layer, error) {
	h := c.HiddenSize
	l := &Layer{Index: i, Prefix: prefix}
	var err error
	if l.InputNorm, err = loadNorm(w, prefix+".input_layernorm.weight", h, c.RMSNormEps, backend.NormOffset); err != nil {
		return nil, err
	}
	if l.PostNorm, err = loadNorm(w, prefix+".post_attention_layernorm.weight", h, c.RMSNormEps, backend.NormOffset); err != nil {
		return nil, err
	}
	if q.LayerTypes[i] == LayerLinearAttention {
		l.Mixer, err = loadGatedDeltaNet(c, q, w, prefix+".linear_attn", i)
	} else {
		l.Mixer, err = loadGatedAttention(c, q, w, prefix+".self_attn", i)
	}
	if err != nil {
		return nil, err
	}
	if l.FFN, err = loadSharedExpertMoE(c, q, w, prefix+".mlp", i); err != nil {
		return nil, err
	}
	return l, nil
}
