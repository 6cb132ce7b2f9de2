package model

import (
	"fmt"

	"github.com/ptqgate/ptqgate/ptqcore/backend"
	"github.com/ptqgate/ptqgate/ptqcore/quant"
)

// FusedExperts is a transformers v5 fused experts module: per expert e an
// nn.Linear-style gate_up weight [2I, H] (gate rows first) and down weight
// [H, I]. On the device the weights are [E·2I, H] and [E·H, I].
type FusedExperts struct {
	// Name is the module path ("model.layers.3.mlp.experts").
	Name string
	// Layer is the decoder layer index.
	Layer int
	// NumExperts, Intermediate and Hidden are E, I and H.
	NumExperts, Intermediate, Hidden int
	// GateUp is gate_up_proj [E, 2I, H]; Down is down_proj [E, H, I].
	GateUp, Down *Param
}

// Module returns the experts as a quantizable module.
func (f *FusedExperts) Module() quant.Module {
	return quant.Module{Name: f.Name, Kind: quant.KindFusedExperts, NumExperts: f.NumExperts}
}

// GateUpWeight returns expert e's gate_up weight [2I, H] (a view of GateUp.Data).
func (f *FusedExperts) GateUpWeight(e int) []float32 {
	n := 2 * f.Intermediate * f.Hidden
	return f.GateUp.Data[e*n : (e+1)*n]
}

// DownWeight returns expert e's down weight [H, I] (a view of Down.Data).
func (f *FusedExperts) DownWeight(e int) []float32 {
	n := f.Intermediate * f.Hidden
	return f.Down.Data[e*n : (e+1)*n]
}

// ExpertName returns "<experts>.<e>", the name reports use for one expert.
func (f *FusedExperts) ExpertName(e int) string { return fmt.Sprintf("%s.%d", f.Name, e) }

// MoE is a sparse MoE block: a softmax top-k router (mlp.gate, not a
// quantizable module) and fused routed experts.
type MoE struct {
	// Prefix is the block's module path ("model.layers.3.mlp").
	Prefix string
	Layer  int
	// Router is mlp.gate.weight [E, H].
	Router *Param
	// Experts are the routed experts.
	Experts *FusedExperts
	// TopK experts per token; Normalize renormalises their weights.
	TopK      int
	Normalize bool
}

// Modules lists the fused experts module.
func (m *MoE) Modules() []quant.Module { return []quant.Module{m.Experts.Module()} }

// Linears returns none (routers are not nn.Linear, experts are fused).
func (m *MoE) Linears() []*Linear { return nil }

// Params lists the router and the expert weights.
func (m *MoE) Params() []*Param { return []*Param{m.Router, m.Experts.GateUp, m.Experts.Down} }

// Prepare implements Block.
func (m *MoE) Prepare(backend.Backend) error { return nil }

// Release implements Block.
func (m *MoE) Release(backend.Backend) {}

// Forward implements Block: route, report the routing, run the experts
// (and, with PassOptions.AllExperts, the calibration-only all-experts pass).
func (m *MoE) Forward(p *Pass, x backend.Tensor) backend.Tensor {
	rows, e := x.Rows(), m.Experts.NumExperts
	logits := p.Alloc(rows, e)
	p.Do(func() error { return p.BE.Linear(logits, x, m.Router.dev, nil, p.DT) })
	p.capture(p.Out.RouterLogits, m.Layer, logits)
	var idx []int32
	var w []float32
	p.Do(func() (err error) {
		idx, w, err = p.BE.RouterTopK(logits, backend.RouterSpec{TopK: m.TopK, Normalize: m.Normalize}, p.DT)
		return err
	})
	p.BE.Free(logits)
	if p.Err() != nil {
		return nil
	}
	if p.Opt.Capture {
		p.Out.TopK[m.Layer] = idx
		p.Out.TopKWeights[m.Layer] = w
	}
	counts := make([]int, e)
	for _, ex := range idx {
		counts[ex]++
	}
	if p.Opt.Observer != nil {
		p.Do(func() error { return p.Opt.Observer.Routed(m.Layer, m.Experts.Name, counts) })
	}
	out := m.Experts.Run(p, x, idx, w, m.TopK, counts)
	if p.Opt.AllExperts {
		m.Experts.CalibrateAll(p, x)
	}
	return out
}

// Run computes Σ_j w_j·expert_{idx_j}(x) for every token of x [T, H], with
// idx and w the routing [T·k] and counts the tokens per expert, in the
// pass's expert mode. Both modes give bit-identical outputs: each token's
// expert contributions are added in ascending expert id (eager order).
func (f *FusedExperts) Run(p *Pass, x backend.Tensor, idx []int32, w []float32, k int, counts []int) backend.Tensor {
	if p.Opt.Experts == ExpertsEager {
		return f.runEager(p, x, idx, w, k, counts)
	}
	return f.runGrouped(p, x, idx, w, k, counts)
}

// observe hands one expert's projection input to the observer.
func (f *FusedExperts) observe(p *Pass, proj string, e int, x backend.Tensor, amax float32, hasAmax, all bool) {
	p.Observe(&Input{Module: f.Name, Kind: quant.KindFusedExperts, Role: quant.RoleInput, Proj: proj, Expert: e,
		Layer: f.Layer, X: x, Amax: amax, HasAmax: hasAmax, AllExperts: all})
}

// runGrouped permutes the (token, slot) pairs by expert (stable, so each
// expert's rows are in token order and each token's rows in expert order)
// and runs one segmented GEMM per projection.
func (f *FusedExperts) runGrouped(p *Pass, x backend.Tensor, idx []int32, w []float32, k int, counts []int) backend.Tensor {
	tokens, e := x.Rows(), f.NumExperts
	r := len(idx)
	offsets := make([]int, e+1)
	for i, c := range counts {
		offsets[i+1] = offsets[i] + c
	}
	fill := append([]int(nil), offsets[:e]...)
	rowTok := make([]int32, r)
	rowW := make([]float32, r)
	for s, ex := range idx {
		row := fill[ex]
		fill[ex]++
		rowTok[row] = int32(s / k)
		rowW[row] = w[s]
	}
	xp := p.Alloc(r, f.Hidden)
	p.Do(func() error { return p.BE.GatherRows(xp, x, rowTok) })
	gu := p.Alloc(r, 2*f.Intermediate)
	var amaxGU, amaxDown []float32
	p.Do(func() (err error) {
		amaxGU, err = p.BE.GroupedLinear(gu, xp, f.GateUp.dev, offsets, p.DT)
		return err
	})
	hooks := !p.Opt.BypassGroupedExpertHooks
	if hooks {
		for ex := 0; ex < e; ex++ {
			if counts[ex] > 0 && p.Err() == nil {
				f.observe(p, quant.ProjGateUp, ex, p.View(xp, offsets[ex], offsets[ex+1]), amaxGU[ex], true, false)
			}
		}
	}
	p.BE.Free(xp)
	a := p.Alloc(r, f.Intermediate)
	p.Do(func() error { return p.BE.SiluMul(a, gu, p.DT) })
	p.BE.Free(gu)
	y := p.Alloc(r, f.Hidden)
	p.Do(func() (err error) {
		amaxDown, err = p.BE.GroupedLinear(y, a, f.Down.dev, offsets, p.DT)
		return err
	})
	if hooks {
		for ex := 0; ex < e; ex++ {
			if counts[ex] > 0 && p.Err() == nil {
				f.observe(p, quant.ProjDown, ex, p.View(a, offsets[ex], offsets[ex+1]), amaxDown[ex], true, false)
			}
		}
	}
	p.BE.Free(a)
	p.Do(func() error { return p.BE.ScaleRows(y, rowW, p.DT) })
	out := p.Alloc(tokens, f.Hidden)
	p.Do(func() error { return p.BE.ScatterAddRows(out, y, rowTok, p.DT) })
	p.BE.Free(y)
	return out
}

// runEager runs each expert that received tokens, in ascending expert id:
// gather its tokens, gate_up GEMM, silu·mul, down GEMM, weight, index-add.
func (f *FusedExperts) runEager(p *Pass, x backend.Tensor, idx []int32, w []float32, k int, counts []int) backend.Tensor {
	tokens := x.Rows()
	out := p.Alloc(tokens, f.Hidden)
	toks := make([][]int32, f.NumExperts)
	wts := make([][]float32, f.NumExperts)
	for ex, c := range counts {
		toks[ex] = make([]int32, 0, c)
		wts[ex] = make([]float32, 0, c)
	}
	for s, ex := range idx {
		toks[ex] = append(toks[ex], int32(s/k))
		wts[ex] = append(wts[ex], w[s])
	}
	for ex := 0; ex < f.NumExperts && p.Err() == nil; ex++ {
		n := counts[ex]
		if n == 0 {
			continue
		}
		xe := p.Alloc(n, f.Hidden)
		p.Do(func() error { return p.BE.GatherRows(xe, x, toks[ex]) })
		f.observe(p, quant.ProjGateUp, ex, xe, 0, false, false)
		y := f.expertForward(p, ex, xe, true, false)
		p.BE.Free(xe)
		p.Do(func() error { return p.BE.ScaleRows(y, wts[ex], p.DT) })
		p.Do(func() error { return p.BE.ScatterAddRows(out, y, toks[ex], p.DT) })
		p.BE.Free(y)
	}
	return out
}

// expertForward runs expert ex on xe [n, H]: gate_up GEMM, silu·mul
// (observed as the down input) and, when down is true, the down GEMM whose
// output it returns (nil otherwise).
func (f *FusedExperts) expertForward(p *Pass, ex int, xe backend.Tensor, down, all bool) backend.Tensor {
	n, i2 := xe.Rows(), 2*f.Intermediate
	gu := p.Alloc(n, i2)
	wgu := p.View(f.GateUp.dev, ex*i2, (ex+1)*i2)
	p.Do(func() error { return p.BE.Linear(gu, xe, wgu, nil, p.DT) })
	a := p.Alloc(n, f.Intermediate)
	p.Do(func() error { return p.BE.SiluMul(a, gu, p.DT) })
	p.BE.Free(gu)
	f.observe(p, quant.ProjDown, ex, a, 0, false, all)
	if !down {
		p.BE.Free(a)
		return nil
	}
	y := p.Alloc(n, f.Hidden)
	wd := p.View(f.Down.dev, ex*f.Hidden, (ex+1)*f.Hidden)
	p.Do(func() error { return p.BE.Linear(y, a, wd, nil, p.DT) })
	p.BE.Free(a)
	return y
}

// allExpertsBudget bounds the values of one chunk's gate_up activations
// in the all-experts pass.
const allExpertsBudget = 1 << 24

// CalibrateAll is the calibration-only pass of --calib-all-experts: every
// token of x reaches every expert; the gate_up and down inputs are
// observed with Input.AllExperts set, and nothing is added to the model
// output (the down GEMM is not needed and not run).
func (f *FusedExperts) CalibrateAll(p *Pass, x backend.Tensor) {
	tokens, e, i2 := x.Rows(), f.NumExperts, 2*f.Intermediate
	if p.Opt.Experts == ExpertsEager {
		for ex := 0; ex < e && p.Err() == nil; ex++ {
			f.observe(p, quant.ProjGateUp, ex, x, 0, false, true)
			f.expertForward(p, ex, x, false, true)
		}
		return
	}
	hooks := !p.Opt.BypassGroupedExpertHooks
	chunk := max(1, allExpertsBudget/(tokens*max(i2, f.Hidden)))
	for e0 := 0; e0 < e && p.Err() == nil; e0 += chunk {
		e1 := min(e0+chunk, e)
		n := e1 - e0
		rowTok := make([]int32, n*tokens)
		offsets := make([]int, n+1)
		for j := 0; j < n; j++ {
			for t := 0; t < tokens; t++ {
				rowTok[j*tokens+t] = int32(t)
			}
			offsets[j+1] = (j + 1) * tokens
		}
		xp := p.Alloc(n*tokens, f.Hidden)
		p.Do(func() error { return p.BE.GatherRows(xp, x, rowTok) })
		gu := p.Alloc(n*tokens, i2)
		wgu := p.View(f.GateUp.dev, e0*i2, e1*i2)
		var amax []float32
		p.Do(func() (err error) {
			amax, err = p.BE.GroupedLinear(gu, xp, wgu, offsets, p.DT)
			return err
		})
		p.BE.Free(xp)
		a := p.Alloc(n*tokens, f.Intermediate)
		p.Do(func() error { return p.BE.SiluMul(a, gu, p.DT) })
		p.BE.Free(gu)
		if hooks {
			for j := 0; j < n && p.Err() == nil; j++ {
				f.observe(p, quant.ProjGateUp, e0+j, x, amax[j], true, true)
				f.observe(p, quant.ProjDown, e0+j, p.View(a, offsets[j], offsets[j+1]), 0, false, true)
			}
		}
		p.BE.Free(a)
	}
}
