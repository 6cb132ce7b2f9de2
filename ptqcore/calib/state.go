package calib

import (
	"fmt"
	"math"

	"github.com/ptqgate/ptqgate/ptqcore/backend"
	"github.com/ptqgate/ptqgate/ptqcore/model"
	"github.com/ptqgate/ptqgate/ptqcore/quant"
)

// Use-constant amax of the toolkit (FP8 E4M3 maximum).
const constantAmaxE4M3 = 448

// qstate is one quantizer's calibration state.
type qstate struct {
	q quant.Quantizer
	// collect: enabled and calibrated from data (not constant).
	collect bool
	red     backend.Reduction
	amax    []float32 // nil until the first collection
	calls   int64
}

// merge folds a local amax into the running one (elementwise max; NaN sticks).
func (s *qstate) merge(v []float32) error {
	if s.amax == nil {
		s.amax = append([]float32(nil), v...)
		return nil
	}
	if len(v) != len(s.amax) {
		return fmt.Errorf("%s: amax shape changed from %d to %d values between calls (a static block or per-channel amax needs inputs of one shape)", s.q.Name, len(s.amax), len(v))
	}
	for i, x := range v {
		s.amax[i] = maxNaN(s.amax[i], x)
	}
	return nil
}

// maxNaN is max with NaN winning.
func maxNaN(a, b float32) float32 {
	if a != a || b != b {
		return float32(math.NaN())
	}
	return max(a, b)
}

// expertsState is the accounting of one fused experts module.
type expertsState struct {
	f *model.FusedExperts
	// in[p] and w[p][e] are the quantizers of projection p (0 gate_up, 1 down).
	in [2]*qstate
	w  [2][]*qstate
	// tokens, calls[p], allRows per expert; perIn[p] the per-expert input amax.
	tokens  []int64
	calls   [2][]int64
	allRows []int64
	perIn   [2][]float32
	perSeen [2][]bool
}

// state implements model.Observer for one run.
type state struct {
	m       *model.Model
	be      backend.Backend
	opt     Options
	applied *quant.Applied
	qs      []*qstate
	byName  map[string]*qstate
	linears map[string][2]*qstate // input, weight
	attn    map[string][2]*qstate // k, v
	experts map[string]*expertsState
	order   []*expertsState
}

func newState(m *model.Model, be backend.Backend, applied *quant.Applied, opt Options) (*state, error) {
	s := &state{
		m: m, be: be, opt: opt, applied: applied,
		byName:  map[string]*qstate{},
		linears: map[string][2]*qstate{},
		attn:    map[string][2]*qstate{},
		experts: map[string]*expertsState{},
	}
	for _, q := range applied.Quantizers {
		qs := &qstate{q: q}
		c := q.Config
		if c.Enable && !c.UseConstantAmax && c.ConstantAmax == nil {
			red, err := reductionFor(q)
			if err != nil {
				return nil, err
			}
			qs.collect, qs.red = true, red
		}
		s.qs = append(s.qs, qs)
		s.byName[q.Name] = qs
	}
	for _, mod := range m.Modules() {
		switch mod.Kind {
		case quant.KindLinear:
			s.linears[mod.Name] = [2]*qstate{s.byName[mod.Name+".input_quantizer"], s.byName[mod.Name+".weight_quantizer"]}
		case quant.KindAttention:
			s.attn[mod.Name] = [2]*qstate{s.byName[mod.Name+".k_bmm_quantizer"], s.byName[mod.Name+".v_bmm_quantizer"]}
		case quant.KindFusedExperts:
			f, ok := m.Experts(mod.Name)
			if !ok {
				return nil, fmt.Errorf("calibration: %s: %w", mod.Name, errUnknownModule)
			}
			e := mod.NumExperts
			es := &expertsState{f: f, tokens: make([]int64, e), allRows: make([]int64, e)}
			for p, proj := range []string{quant.ProjGateUp, quant.ProjDown} {
				es.in[p] = s.byName[quant.ExpertInputQuantizer(mod.Name, proj)]
				es.w[p] = make([]*qstate, e)
				for x := 0; x < e; x++ {
					es.w[p][x] = s.byName[quant.ExpertWeightQuantizer(mod.Name, proj, x)]
				}
				es.calls[p] = make([]int64, e)
				es.perIn[p] = make([]float32, e)
				es.perSeen[p] = make([]bool, e)
			}
			s.experts[mod.Name] = es
			s.order = append(s.order, es)
		}
	}
	for name, pair := range s.linears {
		if pair[0] == nil || pair[1] == nil {
			return nil, fmt.Errorf("calibration: %s: %w", name, errUnknownModule)
		}
	}
	return s, nil
}

// reductionFor maps a quantizer configuration to its amax reduction
// (specs/modelopt.md §2.2): per tensor (also for NVFP4's dynamic blocks,
// which keep one global amax), per channel for an axis, per block for
// static block sizes along the last axis. Inputs are [tokens, features]:
// their only per-channel axis is the last one. Other layouts are
// unsupported (exit 2).
func reductionFor(q quant.Quantizer) (backend.Reduction, error) {
	c := q.Config
	unsupported := func(what string) error {
		return &quant.UnsupportedError{Subject: "quantizer " + q.Name, Reason: what + " is not supported for calibration"}
	}
	if c.Axes != nil {
		return backend.Reduction{}, unsupported(fmt.Sprintf("axis %v", c.Axes))
	}
	if b := c.BlockSizes; b != nil {
		if b.Type != quant.BlockStatic {
			return backend.Reduction{Kind: backend.PerTensor}, nil
		}
		if len(b.Other) > 0 || b.LastDim <= 0 || q.Role == quant.RoleKBMM || q.Role == quant.RoleVBMM {
			return backend.Reduction{}, unsupported("static block sizes other than one block size along the last axis")
		}
		return backend.Reduction{Kind: backend.PerBlock, Block: b.LastDim}, nil
	}
	if c.Axis == nil {
		return backend.Reduction{Kind: backend.PerTensor}, nil
	}
	axis := *c.Axis
	switch {
	case q.Role == quant.RoleWeight && axis == 0:
		return backend.Reduction{Kind: backend.PerRow}, nil
	case q.Role == quant.RoleWeight && (axis == 1 || axis == -1):
		return backend.Reduction{Kind: backend.PerColumn}, nil
	case q.Role == quant.RoleInput && axis == -1:
		return backend.Reduction{Kind: backend.PerColumn}, nil
	}
	return backend.Reduction{}, unsupported(fmt.Sprintf("axis %d for a %s quantizer", axis, q.Role))
}

// head says how far calibration passes go: lm_head's input is needed only
// when one of its quantizers is enabled; the logits never are.
func (s *state) head() model.Head {
	if s.m.LMHead == nil {
		return model.HeadNone
	}
	pair := s.linears[s.m.LMHead.Name]
	if pair[0].q.Config.Enable || pair[1].q.Config.Enable {
		return model.HeadInput
	}
	return model.HeadNone
}

// calibrateWeights computes every enabled weight quantizer's amax from
// the weights (every expert, routed or not); these are not hook calls.
func (s *state) calibrateWeights() error {
	for _, l := range s.m.Linears() {
		q := s.linears[l.Name][1]
		if q.collect {
			if err := s.collect(q, l.Weight.Device()); err != nil {
				return err
			}
		}
	}
	for _, es := range s.order {
		f := es.f
		rows := [2]int{2 * f.Intermediate, f.Hidden}
		params := [2]*model.Param{f.GateUp, f.Down}
		for p := 0; p < 2; p++ {
			for e, q := range es.w[p] {
				if !q.collect {
					continue
				}
				v, err := s.be.View(params[p].Device(), e*rows[p], (e+1)*rows[p])
				if err != nil {
					return fmt.Errorf("calibrate %s: %w", q.q.Name, err)
				}
				if err := s.collect(q, v); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// collect reduces x with the quantizer's reduction and merges the result.
func (s *state) collect(q *qstate, x backend.Tensor) error {
	v, err := s.be.Amax(x, q.red)
	if err != nil {
		return fmt.Errorf("calibrate %s: %w", q.q.Name, err)
	}
	return q.merge(v)
}

// Input implements model.Observer: the one hook point of every quantizer.
func (s *state) Input(in *model.Input) error {
	switch in.Kind {
	case quant.KindLinear:
		pair, ok := s.linears[in.Module]
		if !ok {
			return fmt.Errorf("%s: %w", in.Module, errUnknownModule)
		}
		return s.hook(pair[0], pair[1], in.X)
	case quant.KindAttention:
		pair, ok := s.attn[in.Module]
		if !ok {
			return fmt.Errorf("%s: %w", in.Module, errUnknownModule)
		}
		q := pair[0]
		if in.Role == quant.RoleVBMM {
			q = pair[1]
		}
		return s.hook(q, nil, in.X)
	case quant.KindFusedExperts:
		return s.expertInput(in)
	}
	return fmt.Errorf("%s: unknown module kind %v", in.Module, in.Kind)
}

// hook is one call of an input quantizer (and the weight quantizer used
// with it): both count a call when enabled; the input's amax is collected.
func (s *state) hook(in, w *qstate, x backend.Tensor) error {
	if w != nil && w.q.Config.Enable {
		w.calls++
	}
	if !in.q.Config.Enable {
		return nil
	}
	in.calls++
	if !in.collect {
		return nil
	}
	return s.collect(in, x)
}

// expertInput accounts one expert projection's input.
func (s *state) expertInput(in *model.Input) error {
	es, ok := s.experts[in.Module]
	if !ok {
		return fmt.Errorf("%s: %w", in.Module, errUnknownModule)
	}
	p := 0
	switch in.Proj {
	case quant.ProjGateUp:
	case quant.ProjDown:
		p = 1
	default:
		return fmt.Errorf("%s: unknown projection %q", in.Module, in.Proj)
	}
	e := in.Expert
	if e < 0 || e >= len(es.tokens) {
		return fmt.Errorf("%s: expert %d outside [0, %d)", in.Module, e, len(es.tokens))
	}
	if in.AllExperts {
		if p == 0 {
			es.allRows[e] += int64(in.X.Rows())
		}
	} else {
		es.calls[p][e]++
		if w := es.w[p][e]; w.q.Config.Enable {
			w.calls++
		}
		if es.in[p].q.Config.Enable {
			es.in[p].calls++
		}
	}
	q := es.in[p]
	if !q.collect {
		return nil
	}
	// Per-tensor amax of this expert's rows: from the grouped GEMM's
	// fused reduction when it came with the input, else reduced here.
	local := in.Amax
	if !in.HasAmax {
		v, err := s.be.Amax(in.X, backend.Reduction{Kind: backend.PerTensor})
		if err != nil {
			return fmt.Errorf("calibrate %s: %w", q.q.Name, err)
		}
		local = v[0]
	}
	if es.perSeen[p][e] {
		es.perIn[p][e] = maxNaN(es.perIn[p][e], local)
	} else {
		es.perIn[p][e], es.perSeen[p][e] = local, true
	}
	if q.red.Kind == backend.PerTensor {
		return q.merge([]float32{local})
	}
	return s.collect(q, in.X)
}

// Routed implements model.Observer.
func (s *state) Routed(layer int, experts string, tokens []int) error {
	es, ok := s.experts[experts]
	if !ok {
		return fmt.Errorf("%s: %w", experts, errUnknownModule)
	}
	if len(tokens) != len(es.tokens) {
		return fmt.Errorf("%s: routing over %d experts, want %d", experts, len(tokens), len(es.tokens))
	}
	for e, n := range tokens {
		es.tokens[e] += int64(n)
	}
	return nil
}

// finish fills the result's quantizers, experts and lists.
func (s *state) finish(res *Result) {
	res.byName = map[string]int{}
	for i, qs := range s.qs {
		c := qs.q.Config
		r := QuantizerResult{Quantizer: qs.q, Enabled: c.Enable, Calls: qs.calls}
		switch {
		case !c.Enable:
		case c.UseConstantAmax:
			r.Amax, r.Constant = []float32{constantAmaxE4M3}, true
		case c.ConstantAmax != nil:
			r.Amax, r.Constant = []float32{float32(*c.ConstantAmax)}, true
		default:
			r.Amax = qs.amax
			if r.Amax != nil {
				r.AmaxShape = s.amaxShape(qs)
			}
		}
		if r.Amax != nil && r.AmaxShape == nil {
			r.AmaxShape = []int{}
		}
		res.Quantizers = append(res.Quantizers, r)
		res.byName[qs.q.Name] = i
		if r.Enabled && !r.Calibrated() {
			res.Uncalibrated = append(res.Uncalibrated, qs.q.Name)
		}
	}
	res.PerExpertInputAmax = map[string]float32{}
	for _, es := range s.order {
		f := es.f
		for e := range es.tokens {
			er := ExpertResult{
				Layer: f.Layer, Expert: e, Module: f.Name, Name: f.ExpertName(e),
				Tokens: es.tokens[e], GateUpCalls: es.calls[0][e], DownCalls: es.calls[1][e],
				GateUpInputAmax: float32(math.NaN()), DownInputAmax: float32(math.NaN()),
			}
			if s.opt.AllExperts {
				rows := es.allRows[e]
				er.AllExpertsRows = &rows
			}
			for p := 0; p < 2; p++ {
				if !es.perSeen[p][e] {
					continue
				}
				v := es.perIn[p][e]
				res.PerExpertInputAmax[fmt.Sprintf("%s.%d", es.in[p].q.Name, e)] = v
				if p == 0 {
					er.GateUpInputAmax = v
				} else {
					er.DownInputAmax = v
				}
			}
			res.Experts = append(res.Experts, er)
		}
	}
}

// amaxShape returns the shape of a collected amax.
func (s *state) amaxShape(qs *qstate) []int {
	n := len(qs.amax)
	switch qs.red.Kind {
	case backend.PerTensor:
		return []int{}
	case backend.PerBlock:
		cols := s.weightCols(qs)
		if cols > 0 && qs.red.Block > 0 && n%(cols/qs.red.Block) == 0 {
			blocks := cols / qs.red.Block
			return []int{n / blocks, blocks}
		}
	}
	return []int{n}
}

// weightCols returns the input size of a weight quantizer's weight (0 for
// other quantizers).
func (s *state) weightCols(qs *qstate) int {
	if qs.q.Role != quant.RoleWeight {
		return 0
	}
	if l, ok := s.m.Linear(qs.q.Module); ok {
		return l.In
	}
	if f, ok := s.m.Experts(qs.q.Module); ok {
		if qs.q.Proj == quant.ProjDown {
			return f.Intermediate
		}
		return f.Hidden
	}
	return 0
}
