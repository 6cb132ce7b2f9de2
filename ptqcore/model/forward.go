package model

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ptqgate/ptqgate/ptqcore/backend"
	"github.com/ptqgate/ptqgate/ptqcore/quant"
)

// ExpertsMode is how routed experts execute.
type ExpertsMode int

// Expert execution modes.
const (
	// ExpertsGrouped permutes the (token, expert) pairs by expert and runs
	// one segmented GEMM per projection over all experts (transformers'
	// grouped_mm); the GEMM returns each expert's input amax.
	ExpertsGrouped ExpertsMode = iota
	// ExpertsEager runs one GEMM per projection for each expert that
	// received tokens, in ascending expert id (transformers' eager loop).
	ExpertsEager
)

// ExpertsModes lists the valid --experts-impl values.
var ExpertsModes = []string{"grouped", "eager"}

// String returns the mode's --experts-impl name.
func (m ExpertsMode) String() string {
	switch m {
	case ExpertsGrouped:
		return "grouped"
	case ExpertsEager:
		return "eager"
	}
	return fmt.Sprintf("ExpertsMode(%d)", int(m))
}

// ParseExpertsMode reads an --experts-impl value.
func ParseExpertsMode(s string) (ExpertsMode, error) {
	switch s {
	case "grouped":
		return ExpertsGrouped, nil
	case "eager":
		return ExpertsEager, nil
	}
	return 0, fmt.Errorf("unknown experts implementation %q (valid: %s)", s, strings.Join(ExpertsModes, ", "))
}

// Head says how far past the last decoder layer a pass goes.
type Head int

// Head modes.
const (
	// HeadNone stops after the last decoder layer (calibration without
	// lm_head quantizers).
	HeadNone Head = iota
	// HeadInput computes the final norm and hands it to the observer as
	// lm_head's input, without the lm_head GEMM (nothing uses the logits
	// during calibration).
	HeadInput
	// HeadLogits also computes the logits.
	HeadLogits
)

// Input is one quantizer input seen at the hook point: the input of a
// Linear (whose input and weight quantizers it feeds), of one expert's
// projection, or the key/value states of an attention module.
type Input struct {
	// Module is the quantizable module's name (quant.Module.Name).
	Module string
	// Kind is the module's kind.
	Kind quant.ModuleKind
	// Role is quant.RoleInput for Linears and experts, RoleKBMM/RoleVBMM
	// for the key/value states.
	Role quant.Role
	// Proj is "gate_up_proj" or "down_proj" for experts, "" otherwise.
	Proj string
	// Expert is the expert index for experts, -1 otherwise.
	Expert int
	// Layer is the decoder layer index (-1 for lm_head).
	Layer int
	// X holds the input rows (tokens × features), valid during the call only.
	X backend.Tensor
	// Amax is max|X| when HasAmax (computed by the grouped expert GEMM in
	// the same pass over X).
	Amax    float32
	HasAmax bool
	// AllExperts marks inputs of the calibration-only pass in which every
	// token reaches every expert (--calib-all-experts): they feed amax but
	// are not hook calls.
	AllExperts bool
}

// Observer receives every quantizer input of a forward (the one hook
// point) and the routing of every MoE layer. A nil Observer observes
// nothing.
type Observer interface {
	// Input is called with each quantizer input. Rows are never zero.
	Input(in *Input) error
	// Routed is called once per MoE layer and batch with the number of
	// (token, expert) routing pairs each expert received.
	Routed(layer int, experts string, tokens []int) error
}

// Batch is one calibration batch: token ids of independent sequences,
// concatenated (no padding).
type Batch struct {
	// IDs are the token ids of all sequences, one after the other.
	IDs []int32
	// SeqLens are the sequence lengths in order; they sum to len(IDs).
	SeqLens []int
}

// NewBatch flattens sequences of token ids into a Batch.
func NewBatch(seqs [][]int32) Batch {
	var b Batch
	for _, s := range seqs {
		b.IDs = append(b.IDs, s...)
		b.SeqLens = append(b.SeqLens, len(s))
	}
	return b
}

// Tokens returns the number of tokens in the batch.
func (b Batch) Tokens() int { return len(b.IDs) }

// PassOptions configures one forward pass.
type PassOptions struct {
	// Experts selects the expert execution mode.
	Experts ExpertsMode
	// Observer receives the quantizer inputs (nil: none).
	Observer Observer
	// Head says whether to compute lm_head's input or the logits.
	Head Head
	// AllExperts adds, per MoE layer, a calibration-only pass in which
	// every token reaches every expert; its inputs are observed with
	// Input.AllExperts set. The model output does not change.
	AllExperts bool
	// BypassGroupedExpertHooks reproduces the toolkit bug of
	// specs/modelopt.md §3.4 (fault hook-bypass): grouped expert execution
	// does not call the observer for expert inputs.
	BypassGroupedExpertHooks bool
	// Capture keeps per-layer hidden states and routing (tests, debugging).
	Capture bool
}

// Output is what a pass returns.
type Output struct {
	// Logits [tokens × vocab] when the pass ran with HeadLogits.
	Logits []float32
	// With Capture: the residual stream after each layer [tokens × hidden],
	// and per MoE layer the router logits [tokens × E], top-k indices and
	// weights [tokens × k], keyed by layer index.
	Hidden       map[int][]float32
	RouterLogits map[int][]float32
	TopK         map[int][]int32
	TopKWeights  map[int][]float32
}

// Pass is the state of one forward pass over one batch. Architectures'
// blocks run their operations through it; it keeps the first error, so a
// block may issue several operations and check Err once.
type Pass struct {
	Model *Model
	BE    backend.Backend
	DT    backend.DType
	Batch Batch
	Opt   PassOptions
	// Positions holds each token's position within its sequence.
	Positions []int32
	// Out collects captures and logits.
	Out *Output

	err error
}

// NewPass starts a pass of the model (prepared for be) over a batch.
// Token ids are checked against the vocabulary.
func (m *Model) NewPass(be backend.Backend, b Batch, opt PassOptions) (*Pass, error) {
	if m.prepared != be {
		return nil, errors.New("model: the model is not prepared for this backend (call Prepare)")
	}
	total := 0
	for i, n := range b.SeqLens {
		if n <= 0 {
			return nil, fmt.Errorf("model: sequence %d of the batch is empty", i)
		}
		total += n
	}
	if total != len(b.IDs) || total == 0 {
		return nil, fmt.Errorf("model: batch of %d token ids with sequence lengths %v", len(b.IDs), b.SeqLens)
	}
	for i, id := range b.IDs {
		if id < 0 || int(id) >= m.Config.VocabSize {
			return nil, fmt.Errorf("model: token id %d at position %d is outside the vocabulary [0, %d)", id, i, m.Config.VocabSize)
		}
	}
	p := &Pass{Model: m, BE: be, DT: m.DType, Batch: b, Opt: opt, Out: &Output{}}
	p.Positions = make([]int32, 0, total)
	for _, n := range b.SeqLens {
		for t := 0; t < n; t++ {
			p.Positions = append(p.Positions, int32(t))
		}
	}
	if opt.Capture {
		p.Out.Hidden = map[int][]float32{}
		p.Out.RouterLogits = map[int][]float32{}
		p.Out.TopK = map[int][]int32{}
		p.Out.TopKWeights = map[int][]float32{}
	}
	return p, nil
}

// Forward runs the whole model over a batch: embedding, every decoder
// layer, then the head as opt.Head says.
func (m *Model) Forward(be backend.Backend, b Batch, opt PassOptions) (*Output, error) {
	p, err := m.NewPass(be, b, opt)
	if err != nil {
		return nil, err
	}
	h, err := p.Embed()
	if err != nil {
		return nil, err
	}
	for _, l := range m.Layers {
		next, err := l.Forward(p, h)
		be.Free(h)
		if err != nil {
			return nil, err
		}
		h = next
	}
	err = p.Head(h)
	be.Free(h)
	if err != nil {
		return nil, err
	}
	return p.Out, nil
}

// Embed returns the token embeddings of the batch [tokens × hidden].
func (p *Pass) Embed() (backend.Tensor, error) {
	h := p.Alloc(p.Batch.Tokens(), p.Model.Config.HiddenSize)
	p.Do(func() error { return p.BE.GatherRows(h, p.Model.Embed.dev, p.Batch.IDs) })
	return h, p.Err()
}

// Head finishes a pass after the last layer: with HeadInput or
// HeadLogits the final norm (observed as lm_head's input), with
// HeadLogits also the logits.
func (p *Pass) Head(h backend.Tensor) error {
	if p.Opt.Head == HeadNone || p.err != nil {
		return p.err
	}
	m := p.Model
	n := p.Alloc(h.Rows(), h.Cols())
	defer p.BE.Free(n)
	m.FinalNorm.Apply(p, n, h)
	if m.LMHead == nil {
		return p.Err()
	}
	p.Observe(&Input{Module: m.LMHead.Name, Kind: quant.KindLinear, Role: quant.RoleInput, Expert: -1, Layer: -1, X: n})
	if p.Opt.Head != HeadLogits {
		return p.Err()
	}
	logits := p.Alloc(h.Rows(), m.LMHead.Out)
	defer p.BE.Free(logits)
	m.LMHead.Apply(p, logits, n)
	p.Out.Logits = p.Download(logits)
	return p.Err()
}

// Err returns the pass's first error.
func (p *Pass) Err() error { return p.err }

// Fail records an error (the first one wins).
func (p *Pass) Fail(err error) {
	if p.err == nil && err != nil {
		p.err = err
	}
}

// Do runs op unless the pass already failed.
func (p *Pass) Do(op func() error) {
	if p.err == nil {
		p.Fail(op())
	}
}

// Alloc allocates a zeroed tensor (nil after a failure).
func (p *Pass) Alloc(rows, cols int) backend.Tensor {
	if p.err != nil {
		return nil
	}
	t, err := p.BE.Alloc(rows, cols)
	p.Fail(err)
	return t
}

// View returns rows [r0, r1) of t (nil after a failure).
func (p *Pass) View(t backend.Tensor, r0, r1 int) backend.Tensor {
	if p.err != nil {
		return nil
	}
	v, err := p.BE.View(t, r0, r1)
	p.Fail(err)
	return v
}

// Download copies a tensor to the host (nil after a failure).
func (p *Pass) Download(t backend.Tensor) []float32 {
	if p.err != nil {
		return nil
	}
	out := make([]float32, t.Rows()*t.Cols())
	p.Fail(p.BE.Download(t, out))
	return out
}

// Observe hands an input to the observer; empty inputs are not observed.
func (p *Pass) Observe(in *Input) {
	if p.err != nil || p.Opt.Observer == nil || in.X == nil || in.X.Rows() == 0 {
		return
	}
	if err := p.Opt.Observer.Input(in); err != nil {
		p.Fail(fmt.Errorf("observe %s: %w", describeInput(in), err))
	}
}

// describeInput names an input for error messages.
func describeInput(in *Input) string {
	switch {
	case in.Proj != "" && in.Expert >= 0:
		return fmt.Sprintf("%s.%s input of expert %d", in.Module, in.Proj, in.Expert)
	case in.Role == quant.RoleKBMM || in.Role == quant.RoleVBMM:
		return in.Module + "." + string(in.Role)
	}
	return in.Module + " input"
}

// capture stores a copy of t under key when capturing.
func (p *Pass) capture(dst map[int][]float32, key int, t backend.Tensor) {
	if p.Opt.Capture && p.err == nil {
		dst[key] = p.Download(t)
	}
}
