package model

import (
	"fmt"
	"strconv"

	"github.com/ptqgate/ptqgate/ptqcore/backend"
)

// Qwen3-MoE (model_type "qwen3_moe", specs/transformers.md §3).
func init() { Register("Qwen3MoeForCausalLM", buildQwen3MoE) }

// TextPrefix returns the text model's module prefix in the checkpoint:
// "model.language_model" when the checkpoint stores a vision-language
// model's weights there, else "model".
func TextPrefix(w *Weights) string {
	if w.Has("model.language_model.embed_tokens.weight") {
		return "model.language_model"
	}
	return "model"
}

// buildQwen3MoE builds a Qwen3-MoE model: pre-norm layers of GQA attention
// with q_norm/k_norm (x·w RMSNorm) and RoPE, then either routed experts
// (softmax top-k, optional renormalisation) or a dense gated MLP.
func buildQwen3MoE(c *Config, w *Weights) (*Model, error) {
	if err := checkQwen3Supported(c); err != nil {
		return nil, err
	}
	rotary := int(float64(c.HeadDim) * c.PartialRotaryFactor)
	return buildDecoder(c, w, backend.NormWeighted, func(prefix string, i int) (*Layer, error) {
		return buildQwen3Layer(c, w, prefix, i, rotary)
	})
}

// buildDecoder loads what every supported decoder-only text model has
// around its layers: the embeddings, c.NumHiddenLayers layers built by
// layer (given each layer's prefix, "<text prefix>.layers.<i>", and index),
// the final RMSNorm of the given kind and lm_head (the embeddings when
// tie_word_embeddings).
func buildDecoder(c *Config, w *Weights, norm backend.NormKind, layer func(prefix string, i int) (*Layer, error)) (*Model, error) {
	h, v := c.HiddenSize, c.VocabSize
	m := &Model{Prefix: TextPrefix(w)}
	var err error
	if m.Embed, err = w.Param(m.Prefix+".embed_tokens.weight", v, h); err != nil {
		return nil, err
	}
	for i := 0; i < c.NumHiddenLayers; i++ {
		l, err := layer(m.LayersPath()+"."+strconv.Itoa(i), i)
		if err != nil {
			return nil, err
		}
		m.Layers = append(m.Layers, l)
	}
	if m.FinalNorm, err = loadNorm(w, m.Prefix+".norm.weight", h, c.RMSNormEps, norm); err != nil {
		return nil, err
	}
	if c.TieWordEmbeddings {
		m.LMHead = &Linear{Name: "lm_head", Weight: m.Embed, In: h, Out: v}
	} else if m.LMHead, err = loadLinear(w, "lm_head", v, h, false); err != nil {
		return nil, err
	}
	return m, nil
}

// checkQwen3Supported rejects configurations the forward does not implement.
func checkQwen3Supported(c *Config) error {
	unsupported := func(format string, args ...any) error {
		return &UnsupportedError{File: c.Path, What: fmt.Sprintf(format, args...)}
	}
	if c.HiddenAct != "silu" {
		return unsupported("hidden_act %q (silu only)", c.HiddenAct)
	}
	if c.RopeType != "default" {
		return unsupported("RoPE type %q (default only)", c.RopeType)
	}
	if rot := int(float64(c.HeadDim) * c.PartialRotaryFactor); rot <= 0 || rot%2 != 0 {
		return unsupported("partial_rotary_factor %g gives %d rotary dimensions of head_dim %d", c.PartialRotaryFactor, rot, c.HeadDim)
	}
	sliding, err := c.TextKeys().Bool("use_sliding_window", false)
	if err != nil {
		return err
	}
	if sliding {
		return unsupported("use_sliding_window: true (full causal attention only)")
	}
	bad := func(key, format string, args ...any) error {
		prefix := ""
		if c.Nested {
			prefix = "text_config."
		}
		return &ConfigError{File: c.Path, Key: prefix + key, Msg: fmt.Sprintf(format, args...)}
	}
	moe, dense := false, false
	for i := 0; i < c.NumHiddenLayers; i++ {
		if c.IsMoELayer(i) {
			moe = true
		} else {
			dense = true
		}
	}
	if moe && c.MoEIntermediateSize <= 0 {
		return bad("moe_intermediate_size", "must be positive for MoE layers, got %d", c.MoEIntermediateSize)
	}
	if dense && c.IntermediateSize <= 0 {
		return bad("intermediate_size", "must be positive for dense MLP layers, got %d", c.IntermediateSize)
	}
	return nil
}

// buildQwen3Layer loads decoder layer i under prefix ("model.layers.3").
func buildQwen3Layer(c *Config, w *Weights, prefix string, i, rotary int) (*Layer, error) {
	h, hd, nh, nkv := c.HiddenSize, c.HeadDim, c.NumAttentionHeads, c.NumKeyValueHeads
	l := &Layer{Index: i, Prefix: prefix}
	var err error
	if l.InputNorm, err = loadNorm(w, prefix+".input_layernorm.weight", h, c.RMSNormEps, backend.NormWeighted); err != nil {
		return nil, err
	}
	if l.PostNorm, err = loadNorm(w, prefix+".post_attention_layernorm.weight", h, c.RMSNormEps, backend.NormWeighted); err != nil {
		return nil, err
	}
	attn := prefix + ".self_attn"
	q, err := loadLinear(w, attn+".q_proj", nh*hd, h, c.AttentionBias)
	if err != nil {
		return nil, err
	}
	k, err := loadLinear(w, attn+".k_proj", nkv*hd, h, c.AttentionBias)
	if err != nil {
		return nil, err
	}
	v, err := loadLinear(w, attn+".v_proj", nkv*hd, h, c.AttentionBias)
	if err != nil {
		return nil, err
	}
	o, err := loadLinear(w, attn+".o_proj", h, nh*hd, c.AttentionBias)
	if err != nil {
		return nil, err
	}
	qn, err := loadNorm(w, attn+".q_norm.weight", hd, c.RMSNormEps, backend.NormWeighted)
	if err != nil {
		return nil, err
	}
	kn, err := loadNorm(w, attn+".k_norm.weight", hd, c.RMSNormEps, backend.NormWeighted)
	if err != nil {
		return nil, err
	}
	l.Mixer = NewAttention(attn, i, q, k, v, o, qn, kn, nh, nkv, hd, rotary, c.RopeTheta)

	mlp := prefix + ".mlp"
	if !c.IsMoELayer(i) {
		gate, err := loadLinear(w, mlp+".gate_proj", c.IntermediateSize, h, false)
		if err != nil {
			return nil, err
		}
		up, err := loadLinear(w, mlp+".up_proj", c.IntermediateSize, h, false)
		if err != nil {
			return nil, err
		}
		down, err := loadLinear(w, mlp+".down_proj", h, c.IntermediateSize, false)
		if err != nil {
			return nil, err
		}
		l.FFN = NewMLP(i, gate, up, down)
		return l, nil
	}
	e, inter := c.NumExperts, c.MoEIntermediateSize
	router, err := w.Param(mlp+".gate.weight", e, h)
	if err != nil {
		return nil, err
	}
	gu, dn, err := w.Experts(mlp+".experts", e, inter, h)
	if err != nil {
		return nil, err
	}
	l.FFN = &MoE{
		Prefix: mlp, Layer: i, Router: router, TopK: c.NumExpertsPerTok, Normalize: c.NormTopKProb,
		Experts: &FusedExperts{Name: mlp + ".experts", Layer: i, NumExperts: e, Intermediate: inter, Hidden: h, GateUp: gu, Down: dn},
	}
	return l, nil
}
