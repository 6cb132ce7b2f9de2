package model

import (
	"fmt"

	"github.com/ptqgate/ptqgate/ptqcore/backend"
	"github.com/ptqgate/ptqgate/ptqcore/quant"
)

// GatedAttention is Qwen3.5's full-attention token mixer
// (Qwen3_5MoeAttention, "<layer>.self_attn"): q_proj [2·nh·hd, H] computes
// per head [query (hd) | gate (hd)]; the queries and keys go through the
// zero-centred q_norm/k_norm and partial RoPE; the attention output is
// multiplied by sigmoid(gate) before o_proj. Quantizers are those of
// Attention: q/k/v/o_proj and the k/v bmm quantizers (keys after k_norm
// and RoPE).
type GatedAttention struct {
	// Attention holds the projections (Q is the full q_proj weight, query
	// and gate rows interleaved per head, as in the checkpoint), the norms
	// and the sizes.
	*Attention

	// qg is q_proj's weight on the device with its rows reordered to
	// [the queries of every head | the gates of every head], so one view
	// of it computes the queries and another the gates (each output
	// element is the same dot product as in the interleaved layout).
	qg     backend.Tensor
	qgHost []float32
}

// loadGatedAttention loads the self_attn module under name.
func loadGatedAttention(c *Config, q *Qwen35Config, w *Weights, name string, layer int) (*GatedAttention, error) {
	h, hd, nh, nkv := c.HiddenSize, c.HeadDim, c.NumAttentionHeads, c.NumKeyValueHeads
	qp, err := loadLinear(w, name+".q_proj", 2*nh*hd, h, false)
	if err != nil {
		return nil, err
	}
	k, err := loadLinear(w, name+".k_proj", nkv*hd, h, false)
	if err != nil {
		return nil, err
	}
	v, err := loadLinear(w, name+".v_proj", nkv*hd, h, false)
	if err != nil {
		return nil, err
	}
	o, err := loadLinear(w, name+".o_proj", h, nh*hd, false)
	if err != nil {
		return nil, err
	}
	qn, err := loadNorm(w, name+".q_norm.weight", hd, c.RMSNormEps, backend.NormOffset)
	if err != nil {
		return nil, err
	}
	kn, err := loadNorm(w, name+".k_norm.weight", hd, c.RMSNormEps, backend.NormOffset)
	if err != nil {
		return nil, err
	}
	return &GatedAttention{Attention: NewAttention(name, layer, qp, k, v, o, qn, kn, nh, nkv, hd, q.RotaryDim, c.RopeTheta)}, nil
}

// Prepare uploads q_proj's weight with its rows grouped as [queries |
// gates] and checks that the backend has the sigmoid gate.
func (a *GatedAttention) Prepare(be backend.Backend) error {
	if _, err := sigmoidGateOf(be, a.Name); err != nil {
		return err
	}
	hd, nh, in := a.HeadDim, a.Heads, a.Q.In
	src := a.Q.Weight.Data
	if len(src) != 2*nh*hd*in {
		return fmt.Errorf("%s: q_proj weight holds %d values, want %d", a.Name, len(src), 2*nh*hd*in)
	}
	a.qgHost = make([]float32, len(src))
	for h := 0; h < nh; h++ {
		query := src[(2*h)*hd*in : (2*h+1)*hd*in]
		gate := src[(2*h+1)*hd*in : (2*h+2)*hd*in]
		copy(a.qgHost[h*hd*in:], query)
		copy(a.qgHost[(nh+h)*hd*in:], gate)
	}
	t, err := be.Upload(2*nh*hd, in, a.qgHost)
	if err != nil {
		return fmt.Errorf("upload %s (query/gate rows): %w", a.Q.Name, err)
	}
	a.qg = t
	return nil
}

// Release frees the reordered q_proj weight.
func (a *GatedAttention) Release(be backend.Backend) {
	be.Free(a.qg)
	a.qg, a.qgHost = nil, nil
}

// Forward implements Block: q/k/v projections (q_proj giving queries and
// gates), per-head norms, partial RoPE, the key/value states handed to
// the KV quantizers (after k_norm and RoPE, before repeat_kv), causal
// attention, the sigmoid output gate, then o_proj.
func (a *GatedAttention) Forward(p *Pass, x backend.Tensor) backend.Tensor {
	sg, err := sigmoidGateOf(p.BE, a.Name)
	if err != nil {
		p.Fail(err)
		return nil
	}
	rows, width := x.Rows(), a.Heads*a.HeadDim
	for _, l := range []*Linear{a.Q, a.K, a.V} {
		l.observeInput(p, a.Layer, x)
	}
	q := p.Alloc(rows, width)
	gate := p.Alloc(rows, width)
	k := p.Alloc(rows, a.K.Out)
	v := p.Alloc(rows, a.V.Out)
	wq := p.View(a.qg, 0, width)
	wg := p.View(a.qg, width, 2*width)
	p.Do(func() error { return p.BE.Linear(q, x, wq, nil, p.DT) })
	p.Do(func() error { return p.BE.Linear(gate, x, wg, nil, p.DT) })
	a.K.Apply(p, k, x)
	a.V.Apply(p, v, x)
	a.QNorm.Apply(p, q, q)
	a.KNorm.Apply(p, k, k)
	rope := backend.RoPESpec{Heads: a.Heads, HeadDim: a.HeadDim, RotaryDim: a.RotaryDim, Theta: a.Theta, Positions: p.Positions}
	p.Do(func() error { return p.BE.RoPE(q, rope, p.DT) })
	rope.Heads = a.KVHeads
	p.Do(func() error { return p.BE.RoPE(k, rope, p.DT) })
	p.Observe(&Input{Module: a.Name, Kind: quant.KindAttention, Role: quant.RoleKBMM, Expert: -1, Layer: a.Layer, X: k})
	p.Observe(&Input{Module: a.Name, Kind: quant.KindAttention, Role: quant.RoleVBMM, Expert: -1, Layer: a.Layer, X: v})
	o := p.Alloc(rows, width)
	spec := backend.AttentionSpec{Heads: a.Heads, KVHeads: a.KVHeads, HeadDim: a.HeadDim, Scale: a.Scale, SeqLens: p.Batch.SeqLens}
	p.Do(func() error { return p.BE.Attention(o, q, k, v, spec, p.DT) })
	p.BE.Free(q)
	p.BE.Free(k)
	p.BE.Free(v)
	p.Do(func() error { return sg.SigmoidMul(o, o, gate, p.DT) })
	p.BE.Free(gate)
	a.O.observeInput(p, a.Layer, o)
	out := p.Alloc(rows, a.O.Out)
	a.O.Apply(p, out, o)
	p.BE.Free(o)
	return out
}
