package model

import (
	"github.com/ptqgate/ptqgate/ptqcore/backend"
	"github.com/ptqgate/ptqgate/ptqcore/quant"
)

// SharedExpertMoE is Qwen3.5's sparse MoE block
// (Qwen3_5MoeSparseMoeBlock, "<layer>.mlp"): routed experts behind a
// softmax top-k router that always renormalises, plus a shared expert (a
// gated MLP) scaled per token by sigmoid(shared_expert_gate(x)):
// out = routed + sigmoid(shared_expert_gate(x))·shared_expert(x).
// The shared expert's three projections and shared_expert_gate
// (nn.Linear(H, 1)) are Linears with quantizers; the router has none.
type SharedExpertMoE struct {
	// Routed is the router and the fused routed experts.
	Routed *MoE
	// Shared is mlp.shared_expert (gate_proj, up_proj, down_proj).
	Shared *MLP
	// SharedGate is mlp.shared_expert_gate [1, H].
	SharedGate *Linear
}

// RoutedMoE returns the routed part (Model.MoEBlocks lists it).
func (s *SharedExpertMoE) RoutedMoE() *MoE { return s.Routed }

// loadSharedExpertMoE loads the mlp block under prefix.
func loadSharedExpertMoE(c *Config, q *Qwen35Config, w *Weights, prefix string, layer int) (*SharedExpertMoE, error) {
	h, e, inter, si := c.HiddenSize, c.NumExperts, c.MoEIntermediateSize, q.SharedExpertIntermediate
	router, err := w.Param(prefix+".gate.weight", e, h)
	if err != nil {
		return nil, err
	}
	gu, dn, err := w.Experts(prefix+".experts", e, inter, h)
	if err != nil {
		return nil, err
	}
	shared := prefix + ".shared_expert"
	gate, err := loadLinear(w, shared+".gate_proj", si, h, false)
	if err != nil {
		return nil, err
	}
	up, err := loadLinear(w, shared+".up_proj", si, h, false)
	if err != nil {
		return nil, err
	}
	down, err := loadLinear(w, shared+".down_proj", h, si, false)
	if err != nil {
		return nil, err
	}
	sg, err := loadLinear(w, prefix+".shared_expert_gate", 1, h, false)
	if err != nil {
		return nil, err
	}
	return &SharedExpertMoE{
		Routed: &MoE{
			Prefix: prefix, Layer: layer, Router: router, TopK: c.NumExpertsPerTok, Normalize: true,
			Experts: &FusedExperts{Name: prefix + ".experts", Layer: layer, NumExperts: e, Intermediate: inter, Hidden: h, GateUp: gu, Down: dn},
		},
		Shared:     NewMLP(layer, gate, up, down),
		SharedGate: sg,
	}, nil
}

// Modules lists the fused experts, the shared expert's projections and
// shared_expert_gate (ModelOpt's registration order).
func (s *SharedExpertMoE) Modules() []quant.Module {
	out := append(s.Routed.Modules(), s.Shared.Modules()...)
	return append(out, s.SharedGate.Module())
}

// Linears lists the shared expert's projections and shared_expert_gate.
func (s *SharedExpertMoE) Linears() []*Linear {
	return append(s.Shared.Linears(), s.SharedGate)
}

// Params lists the router, the expert weights, the shared expert's
// weights and shared_expert_gate's weight.
func (s *SharedExpertMoE) Params() []*Param {
	out := append(s.Routed.Params(), s.Shared.Params()...)
	return append(out, s.SharedGate.Params()...)
}

// Prepare uploads the shared expert's fused gate/up weight and checks that
// the backend has the sigmoid gate.
func (s *SharedExpertMoE) Prepare(be backend.Backend) error {
	if _, err := sigmoidGateOf(be, s.SharedGate.Name); err != nil {
		return err
	}
	if err := s.Routed.Prepare(be); err != nil {
		return err
	}
	return s.Shared.Prepare(be)
}

// Release implements Block.
func (s *SharedExpertMoE) Release(be backend.Backend) {
	s.Shared.Release(be)
	s.Routed.Release(be)
}

// Forward implements Block in transformers' order: the shared expert,
// the router and routed experts, then the shared expert gate (its input
// observed); out = routed + round(shared·round(sigmoid(gate))).
func (s *SharedExpertMoE) Forward(p *Pass, x backend.Tensor) backend.Tensor {
	sg, err := sigmoidGateOf(p.BE, s.SharedGate.Name)
	if err != nil {
		p.Fail(err)
		return nil
	}
	shared := s.Shared.Forward(p, x)
	routed := s.Routed.Forward(p, x)
	s.SharedGate.observeInput(p, s.Routed.Layer, x)
	gate := p.Alloc(x.Rows(), 1)
	s.SharedGate.Apply(p, gate, x)
	p.Do(func() error { return sg.SigmoidMul(shared, shared, gate, p.DT) })
	p.BE.Free(gate)
	p.Do(func() error { return p.BE.Add(routed, routed, shared, p.DT) })
	p.BE.Free(shared)
	if p.Err() != nil {
		p.BE.Free(routed)
		return nil
	}
	return routed
}
