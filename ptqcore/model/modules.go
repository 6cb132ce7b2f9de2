package model

import (
	"fmt"

	"github.com/ptqgate/ptqgate/ptqcore/backend"
	"github.com/ptqgate/ptqgate/ptqcore/quant"
)

// Block is a part of a decoder layer: its token mixer (self_attn,
// linear_attn) or its feed-forward block (a dense MLP, routed experts).
type Block interface {
	// Modules lists the block's quantizable modules.
	Modules() []quant.Module
	// Linears lists the block's quantizable Linears.
	Linears() []*Linear
	// Params lists the block's parameters.
	Params() []*Param
	// Prepare makes device data beyond the parameters (which the model
	// uploads); Release frees it.
	Prepare(be backend.Backend) error
	Release(be backend.Backend)
	// Forward maps the block's input [tokens × hidden] to its output.
	Forward(p *Pass, x backend.Tensor) backend.Tensor
}

// Layer is one pre-norm decoder layer:
// h = x + Mixer(InputNorm(x)); out = h + FFN(PostNorm(h)).
type Layer struct {
	// Index is the layer's position; Prefix its module path ("model.layers.3").
	Index  int
	Prefix string
	// InputNorm and PostNorm are input_layernorm and post_attention_layernorm.
	InputNorm, PostNorm *Norm
	// Mixer is the attention block, FFN the MLP or MoE block.
	Mixer, FFN Block
}

// Params lists the layer's parameters.
func (l *Layer) Params() []*Param {
	out := []*Param{l.InputNorm.Weight, l.PostNorm.Weight}
	out = append(out, l.Mixer.Params()...)
	return append(out, l.FFN.Params()...)
}

// Forward runs the layer on the residual stream x and returns the new one
// (x itself is left unchanged).
func (l *Layer) Forward(p *Pass, x backend.Tensor) (backend.Tensor, error) {
	rows, cols := x.Rows(), x.Cols()
	n := p.Alloc(rows, cols)
	l.InputNorm.Apply(p, n, x)
	a := l.Mixer.Forward(p, n)
	h := p.Alloc(rows, cols)
	p.Do(func() error { return p.BE.Add(h, x, a, p.DT) })
	p.BE.Free(a)
	l.PostNorm.Apply(p, n, h)
	f := l.FFN.Forward(p, n)
	p.BE.Free(n)
	p.Do(func() error { return p.BE.Add(h, h, f, p.DT) })
	p.BE.Free(f)
	p.capture(p.Out.Hidden, l.Index, h)
	if err := p.Err(); err != nil {
		p.BE.Free(h)
		return nil, fmt.Errorf("layer %d: %w", l.Index, err)
	}
	return h, nil
}

// Norm is an RMSNorm over groups of Group values (the hidden size, or
// head_dim for q_norm/k_norm).
type Norm struct {
	Weight *Param
	Eps    float32
	Kind   backend.NormKind
	Group  int
}

// Apply sets dst = norm(x).
func (n *Norm) Apply(p *Pass, dst, x backend.Tensor) {
	p.Do(func() error { return p.BE.RMSNorm(dst, x, n.Weight.dev, n.Group, n.Eps, n.Kind, p.DT) })
}

// Linear is an nn.Linear: y = x·Wᵀ (+ bias).
type Linear struct {
	// Name is the module name (the weight's name minus ".weight").
	Name string
	// Weight is [Out, In]; Bias is nil or [Out].
	Weight *Param
	Bias   *Param
	In     int
	Out    int
}

// Module returns the Linear as a quantizable module.
func (l *Linear) Module() quant.Module { return quant.Module{Name: l.Name, Kind: quant.KindLinear} }

// Params lists the weight and the bias.
func (l *Linear) Params() []*Param {
	if l.Bias != nil {
		return []*Param{l.Weight, l.Bias}
	}
	return []*Param{l.Weight}
}

// Apply sets dst = x·Wᵀ (+ bias).
func (l *Linear) Apply(p *Pass, dst, x backend.Tensor) {
	var bias backend.Tensor
	if l.Bias != nil {
		bias = l.Bias.dev
	}
	p.Do(func() error { return p.BE.Linear(dst, x, l.Weight.dev, bias, p.DT) })
}

// observeInput hands x to the observer as the Linear's input.
func (l *Linear) observeInput(p *Pass, layer int, x backend.Tensor) {
	p.Observe(&Input{Module: l.Name, Kind: quant.KindLinear, Role: quant.RoleInput, Expert: -1, Layer: layer, X: x})
}

// loadLinear loads "<name>.weight" [out, in] and, if bias, "<name>.bias".
func loadLinear(w *Weights, name string, out, in int, bias bool) (*Linear, error) {
	wt, err := w.Param(name+".weight", out, in)
	if err != nil {
		return nil, err
	}
	l := &Linear{Name: name, Weight: wt, In: in, Out: out}
	if bias {
		if l.Bias, err = w.Param(name+".bias", out); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// loadNorm loads an RMSNorm weight of size group.
func loadNorm(w *Weights, name string, group int, eps float64, kind backend.NormKind) (*Norm, error) {
	wt, err := w.Param(name, group)
	if err != nil {
		return nil, err
	}
	return &Norm{Weight: wt, Eps: float32(eps), Kind: kind, Group: group}, nil
}

// MLP is a gated dense MLP: down(silu(gate(x)) · up(x)). The gate and up
// weights also live on the device as one [2I, H] matrix, so one GEMM
// computes both (each output element is the same dot product).
type MLP struct {
	Layer                int
	Gate, Up, Down       *Linear
	gateUp               backend.Tensor
	gateUpHost           []float32
	intermediate, hidden int
}

// NewMLP returns an MLP of the three Linears.
func NewMLP(layer int, gate, up, down *Linear) *MLP {
	return &MLP{Layer: layer, Gate: gate, Up: up, Down: down, intermediate: gate.Out, hidden: gate.In}
}

// Modules lists gate_proj, up_proj and down_proj.
func (m *MLP) Modules() []quant.Module {
	return []quant.Module{m.Gate.Module(), m.Up.Module(), m.Down.Module()}
}

// Linears lists gate_proj, up_proj and down_proj.
func (m *MLP) Linears() []*Linear { return []*Linear{m.Gate, m.Up, m.Down} }

// Params lists the three weights.
func (m *MLP) Params() []*Param {
	return append(append(m.Gate.Params(), m.Up.Params()...), m.Down.Params()...)
}

// Prepare uploads the fused gate/up weight.
func (m *MLP) Prepare(be backend.Backend) error {
	if m.Gate.Bias != nil || m.Up.Bias != nil || m.Down.Bias != nil {
		return fmt.Errorf("%s: MLP biases are not supported", m.Gate.Name)
	}
	m.gateUpHost = append(append(make([]float32, 0, 2*len(m.Gate.Weight.Data)), m.Gate.Weight.Data...), m.Up.Weight.Data...)
	t, err := be.Upload(2*m.intermediate, m.hidden, m.gateUpHost)
	if err != nil {
		return fmt.Errorf("upload %s+up_proj: %w", m.Gate.Name, err)
	}
	m.gateUp = t
	return nil
}

// Release frees the fused weight.
func (m *MLP) Release(be backend.Backend) {
	be.Free(m.gateUp)
	m.gateUp, m.gateUpHost = nil, nil
}

// Forward implements Block.
func (m *MLP) Forward(p *Pass, x backend.Tensor) backend.Tensor {
	rows := x.Rows()
	m.Gate.observeInput(p, m.Layer, x)
	m.Up.observeInput(p, m.Layer, x)
	gu := p.Alloc(rows, 2*m.intermediate)
	p.Do(func() error { return p.BE.Linear(gu, x, m.gateUp, nil, p.DT) })
	a := p.Alloc(rows, m.intermediate)
	p.Do(func() error { return p.BE.SiluMul(a, gu, p.DT) })
	p.BE.Free(gu)
	m.Down.observeInput(p, m.Layer, a)
	out := p.Alloc(rows, m.hidden)
	m.Down.Apply(p, out, a)
	p.BE.Free(a)
	return out
}
