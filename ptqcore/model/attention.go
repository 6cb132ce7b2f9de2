package model

import (
	"math"

	"github.com/ptqgate/ptqgate/ptqcore/backend"
	"github.com/ptqgate/ptqgate/ptqcore/quant"
)

// Attention is a full causal GQA self-attention block with per-head
// q_norm/k_norm and rotate_half RoPE (Qwen3): the module "<layer>.self_attn"
// owning q/k/v/o_proj and the KV bmm quantizers.
type Attention struct {
	// Name is the module path ("model.layers.3.self_attn").
	Name               string
	Layer              int
	Q, K, V, O         *Linear
	QNorm, KNorm       *Norm // per head over head_dim; nil when absent
	Heads, KVHeads     int
	HeadDim, RotaryDim int
	Theta              float64
	Scale              float32
}

// NewAttention returns an attention block; the scale is head_dim^-0.5.
func NewAttention(name string, layer int, q, k, v, o *Linear, qNorm, kNorm *Norm, heads, kvHeads, headDim, rotaryDim int, theta float64) *Attention {
	return &Attention{
		Name: name, Layer: layer, Q: q, K: k, V: v, O: o, QNorm: qNorm, KNorm: kNorm,
		Heads: heads, KVHeads: kvHeads, HeadDim: headDim, RotaryDim: rotaryDim, Theta: theta,
		Scale: float32(math.Pow(float64(headDim), -0.5)),
	}
}

// Modules lists q/k/v/o_proj and the attention module (KV quantizers).
func (a *Attention) Modules() []quant.Module {
	return []quant.Module{a.Q.Module(), a.K.Module(), a.V.Module(), a.O.Module(), {Name: a.Name, Kind: quant.KindAttention}}
}

// Linears lists q/k/v/o_proj.
func (a *Attention) Linears() []*Linear { return []*Linear{a.Q, a.K, a.V, a.O} }

// Params lists the projections and norms.
func (a *Attention) Params() []*Param {
	var out []*Param
	for _, l := range a.Linears() {
		out = append(out, l.Params()...)
	}
	for _, n := range []*Norm{a.QNorm, a.KNorm} {
		if n != nil {
			out = append(out, n.Weight)
		}
	}
	return out
}

// Prepare implements Block (the parameters are all the block needs).
func (a *Attention) Prepare(backend.Backend) error { return nil }

// Release implements Block.
func (a *Attention) Release(backend.Backend) {}

// Forward implements Block: q/k/v projections, per-head norms, RoPE, the
// key/value states handed to the KV quantizers (after k_norm and RoPE,
// before repeat_kv), causal attention and o_proj.
func (a *Attention) Forward(p *Pass, x backend.Tensor) backend.Tensor {
	rows := x.Rows()
	for _, l := range []*Linear{a.Q, a.K, a.V} {
		l.observeInput(p, a.Layer, x)
	}
	q := p.Alloc(rows, a.Q.Out)
	k := p.Alloc(rows, a.K.Out)
	v := p.Alloc(rows, a.V.Out)
	a.Q.Apply(p, q, x)
	a.K.Apply(p, k, x)
	a.V.Apply(p, v, x)
	if a.QNorm != nil {
		a.QNorm.Apply(p, q, q)
	}
	if a.KNorm != nil {
		a.KNorm.Apply(p, k, k)
	}
	rope := backend.RoPESpec{Heads: a.Heads, HeadDim: a.HeadDim, RotaryDim: a.RotaryDim, Theta: a.Theta, Positions: p.Positions}
	p.Do(func() error { return p.BE.RoPE(q, rope, p.DT) })
	rope.Heads = a.KVHeads
	p.Do(func() error { return p.BE.RoPE(k, rope, p.DT) })
	p.Observe(&Input{Module: a.Name, Kind: quant.KindAttention, Role: quant.RoleKBMM, Expert: -1, Layer: a.Layer, X: k})
	p.Observe(&Input{Module: a.Name, Kind: quant.KindAttention, Role: quant.RoleVBMM, Expert: -1, Layer: a.Layer, X: v})
	o := p.Alloc(rows, a.Heads*a.HeadDim)
	spec := backend.AttentionSpec{Heads: a.Heads, KVHeads: a.KVHeads, HeadDim: a.HeadDim, Scale: a.Scale, SeqLens: p.Batch.SeqLens}
	p.Do(func() error { return p.BE.Attention(o, q, k, v, spec, p.DT) })
	p.BE.Free(q)
	p.BE.Free(k)
	p.BE.Free(v)
	a.O.observeInput(p, a.Layer, o)
	out := p.Alloc(rows, a.O.Out)
	a.O.Apply(p, out, o)
	p.BE.Free(o)
	return out
}
