package model

import (
	"fmt"

	"github.com/ptqgate/ptqgate/ptqcore/backend"
	"github.com/ptqgate/ptqgate/ptqcore/quant"
)

// GatedDeltaNet is a Qwen3.5 linear-attention token mixer
// (Qwen3_5MoeGatedDeltaNet, "<layer>.linear_attn"): the projections
// in_proj_qkv, in_proj_z, in_proj_b, in_proj_a and out_proj are
// nn.Linears with quantizers; conv1d is never called as a module (its
// weight is passed to the convolution function), so it has none, and the
// layer has no KV (bmm) quantizers. The non-Linear operations run through
// backend.LinearAttention.
type GatedDeltaNet struct {
	// Name is the module path ("model.language_model.layers.0.linear_attn").
	Name  string
	Layer int
	// QKV is in_proj_qkv [2·nk·dk + nv·dv, H]; Z in_proj_z [nv·dv, H];
	// B and A in_proj_b and in_proj_a [nv, H]; Out is out_proj [H, nv·dv].
	QKV, Z, B, A, Out *Linear
	// Conv is conv1d.weight [C, 1, K]; DTBias and ALog are dt_bias and
	// A_log [nv]; Norm is norm.weight [dv] (the gated x·w RMSNorm).
	Conv, DTBias, ALog, Norm *Param
	// Spec holds the head counts and sizes.
	Spec backend.GatedDeltaSpec
	// Eps is the gated norm's epsilon (rms_norm_eps).
	Eps float32
}

// loadGatedDeltaNet loads the linear_attn module under name.
func loadGatedDeltaNet(c *Config, q *Qwen35Config, w *Weights, name string, layer int) (*GatedDeltaNet, error) {
	h := c.HiddenSize
	spec := backend.GatedDeltaSpec{KeyHeads: q.LinearKeyHeads, ValueHeads: q.LinearValueHeads, KeyDim: q.LinearKeyDim, ValueDim: q.LinearValueDim}
	conv, value := spec.QKVCols(), spec.ValueHeads*spec.ValueDim
	g := &GatedDeltaNet{Name: name, Layer: layer, Spec: spec, Eps: float32(c.RMSNormEps)}
	linears := []struct {
		dst     **Linear
		suffix  string
		out, in int
	}{
		{&g.QKV, ".in_proj_qkv", conv, h},
		{&g.Z, ".in_proj_z", value, h},
		{&g.B, ".in_proj_b", spec.ValueHeads, h},
		{&g.A, ".in_proj_a", spec.ValueHeads, h},
		{&g.Out, ".out_proj", h, value},
	}
	var err error
	for _, l := range linears {
		if *l.dst, err = loadLinear(w, name+l.suffix, l.out, l.in, false); err != nil {
			return nil, err
		}
	}
	params := []struct {
		dst    **Param
		suffix string
		shape  []int
	}{
		{&g.Conv, ".conv1d.weight", []int{conv, 1, q.ConvKernel}},
		{&g.DTBias, ".dt_bias", []int{spec.ValueHeads}},
		{&g.ALog, ".A_log", []int{spec.ValueHeads}},
		{&g.Norm, ".norm.weight", []int{spec.ValueDim}},
	}
	for _, p := range params {
		if *p.dst, err = w.Param(name+p.suffix, p.shape...); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// Modules lists the five projections (forward order).
func (g *GatedDeltaNet) Modules() []quant.Module {
	out := make([]quant.Module, 0, 5)
	for _, l := range g.Linears() {
		out = append(out, l.Module())
	}
	return out
}

// Linears lists in_proj_qkv, in_proj_z, in_proj_b, in_proj_a and out_proj.
func (g *GatedDeltaNet) Linears() []*Linear { return []*Linear{g.QKV, g.Z, g.B, g.A, g.Out} }

// Params lists the projections' weights, conv1d.weight, dt_bias, A_log
// and norm.weight.
func (g *GatedDeltaNet) Params() []*Param {
	var out []*Param
	for _, l := range g.Linears() {
		out = append(out, l.Params()...)
	}
	return append(out, g.Conv, g.DTBias, g.ALog, g.Norm)
}

// Prepare checks that the backend runs Gated DeltaNet layers.
func (g *GatedDeltaNet) Prepare(be backend.Backend) error {
	_, err := linearAttentionOf(be, g.Name)
	return err
}

// Release implements Block.
func (g *GatedDeltaNet) Release(backend.Backend) {}

// linearAttentionOf returns the backend's Gated DeltaNet operations, or an
// *UnsupportedError (exit 2) naming the module that needs them.
func linearAttentionOf(be backend.Backend, module string) (backend.LinearAttention, error) {
	la, ok := be.(backend.LinearAttention)
	if !ok {
		return nil, &UnsupportedError{File: module, What: fmt.Sprintf(
			"backend %s does not implement the Gated DeltaNet operations (backend.LinearAttention) of Qwen3.5 linear-attention layers", be.Name())}
	}
	return la, nil
}

// sigmoidGateOf returns the backend's sigmoid gates, or an
// *UnsupportedError (exit 2) naming the module that needs them.
func sigmoidGateOf(be backend.Backend, module string) (backend.SigmoidGate, error) {
	sg, ok := be.(backend.SigmoidGate)
	if !ok {
		return nil, &UnsupportedError{File: module, What: fmt.Sprintf(
			"backend %s does not implement the sigmoid output gates (backend.SigmoidGate) of Qwen3.5-MoE", be.Name())}
	}
	return sg, nil
}

// Forward implements Block: the four input projections (their inputs
// observed), the causal convolution with silu, the gated delta rule, the
// gated RMSNorm with silu(z), then out_proj (its input observed).
func (g *GatedDeltaNet) Forward(p *Pass, x backend.Tensor) backend.Tensor {
	la, err := linearAttentionOf(p.BE, g.Name)
	if err != nil {
		p.Fail(err)
		return nil
	}
	rows := x.Rows()
	in := []*Linear{g.QKV, g.Z, g.B, g.A}
	outs := make([]backend.Tensor, len(in))
	for i, l := range in {
		l.observeInput(p, g.Layer, x)
		outs[i] = p.Alloc(rows, l.Out)
		l.Apply(p, outs[i], x)
	}
	qkv, z, b, a := outs[0], outs[1], outs[2], outs[3]
	conv := p.Alloc(rows, g.QKV.Out)
	p.Do(func() error { return la.CausalConv1DSilu(conv, qkv, g.Conv.dev, p.Batch.SeqLens, p.DT) })
	p.BE.Free(qkv)
	core := p.Alloc(rows, g.Spec.ValueHeads*g.Spec.ValueDim)
	spec := g.Spec
	spec.SeqLens = p.Batch.SeqLens
	p.Do(func() error { return la.GatedDeltaRule(core, conv, a, b, g.ALog.dev, g.DTBias.dev, spec, p.DT) })
	p.BE.Free(conv)
	p.BE.Free(a)
	p.BE.Free(b)
	p.Do(func() error { return la.GatedRMSNorm(core, core, z, g.Norm.dev, g.Spec.ValueDim, g.Eps, p.DT) })
	p.BE.Free(z)
	g.Out.observeInput(p, g.Layer, core)
	out := p.Alloc(rows, g.Out.Out)
	g.Out.Apply(p, out, core)
	p.BE.Free(core)
	return out
}
