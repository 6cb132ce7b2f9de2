// Package model loads a Hugging Face checkpoint directory (config.json and
// safetensors weights, either expert layout) into host memory and runs its
// forward pass through a backend.Backend, calling an Observer at every
// quantizer input so that calibration (ptqcore/calib) sees each one through
// one hook point.
//
// The forward is backend-agnostic: it only calls the backend interface.
// Architectures register a Builder by the name in config.json's
// "architectures"; Qwen3-MoE lives in qwen3moe.go, Qwen3.5-MoE (Gated
// DeltaNet and gated attention mixers, shared-expert MoE; VLM and
// text-only classes) in qwen3_5*.go and deltanet.go. Layers are generic
// (a token mixer block and a feed-forward block between two norms), so
// other architectures add their own blocks without touching the rest.
//
// Weights are kept as float32 host slices holding the values transformers
// would hold in memory (bf16/f16 widened exactly) with their source dtype;
// fused experts are always in memory as gate_up [E, 2I, H] and down
// [E, H, I], whatever the file layout. The exporter reads them from the
// Linear and FusedExperts modules.
package model

import (
	"fmt"
	"sort"
	"strings"

	"github.com/ptqgate/ptqgate/ptqcore/backend"
	"github.com/ptqgate/ptqgate/ptqcore/quant"
	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
)

// Builder builds the model of one architecture from its parsed config and
// the checkpoint's weights.
type Builder func(c *Config, w *Weights) (*Model, error)

var builders = map[string]Builder{}

// Register makes an architecture loadable. It is called from init
// functions; registering a name twice panics (a programming error).
func Register(architecture string, b Builder) {
	if _, dup := builders[architecture]; dup {
		panic("model: architecture registered twice: " + architecture)
	}
	builders[architecture] = b
}

// Architectures lists the supported architecture names, sorted.
func Architectures() []string {
	out := make([]string, 0, len(builders))
	for n := range builders {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Model is a loaded checkpoint.
type Model struct {
	// Config is the parsed config.json.
	Config *Config
	// Dir is the checkpoint directory.
	Dir string
	// DType is the compute dtype (config.json's dtype).
	DType backend.DType
	// Prefix is the text model's module prefix without the trailing dot:
	// "model", or "model.language_model" for a vision-language checkpoint.
	Prefix string
	// Embed is embed_tokens.weight [vocab, hidden].
	Embed *Param
	// Layers are the decoder layers in order.
	Layers []*Layer
	// FinalNorm is the norm before lm_head.
	FinalNorm *Norm
	// LMHead is lm_head (its weight is Embed when embeddings are tied).
	LMHead *Linear
	// Unused lists the checkpoint tensors the text model does not use
	// (vision towers, mtp layers), sorted; an exporter copies them.
	Unused []string

	prepared backend.Backend
}

// Load opens the checkpoint directory, parses config.json and reads every
// weight the architecture needs. Errors name the file and the key or
// tensor: a missing directory wraps fs.ErrNotExist (exit 2), a malformed
// config or checkpoint is exit 1, an unsupported architecture exit 2.
func Load(dir string) (*Model, error) {
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	b, ok := builders[cfg.Architecture]
	if !ok {
		what := fmt.Sprintf("architecture %q (supported: %s)", cfg.Architecture, strings.Join(Architectures(), ", "))
		if cfg.Architecture == "" {
			what = "config.json names no architecture (key \"architectures\"); supported: " + strings.Join(Architectures(), ", ")
		}
		return nil, &UnsupportedError{File: cfg.Path, What: what}
	}
	ck, err := safetensors.OpenCheckpoint(dir)
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	w := newWeights(ck, cfg.DType)
	m, err := b(cfg, w)
	if err != nil {
		return nil, err
	}
	m.Config, m.Dir, m.DType = cfg, dir, cfg.DType
	m.Unused = w.unused()
	return m, nil
}

// Architecture returns config.json's architecture name.
func (m *Model) Architecture() string { return m.Config.Architecture }

// LayersPath is the module path of the decoder layers: "model.layers" or
// "model.language_model.layers".
func (m *Model) LayersPath() string { return m.Prefix + ".layers" }

// NumExperts returns the routed experts per MoE layer (0 for a dense model).
func (m *Model) NumExperts() int { return m.Config.NumExperts }

// TopK returns the experts per token.
func (m *Model) TopK() int { return m.Config.NumExpertsPerTok }

// VocabSize returns the vocabulary size.
func (m *Model) VocabSize() int { return m.Config.VocabSize }

// Modules lists the quantizable modules in forward order: per layer the
// Linears and the attention module of its mixer and the Linears or fused
// experts of its feed-forward block, then lm_head. Routers are not listed
// (a transformers v5 TopKRouter is not an nn.Linear).
func (m *Model) Modules() []quant.Module {
	var out []quant.Module
	for _, l := range m.Layers {
		out = append(out, l.Mixer.Modules()...)
		out = append(out, l.FFN.Modules()...)
	}
	if m.LMHead != nil {
		out = append(out, m.LMHead.Module())
	}
	return out
}

// Linears returns every quantizable Linear (lm_head included), in forward order.
func (m *Model) Linears() []*Linear {
	var out []*Linear
	for _, l := range m.Layers {
		out = append(out, l.Mixer.Linears()...)
		out = append(out, l.FFN.Linears()...)
	}
	if m.LMHead != nil {
		out = append(out, m.LMHead)
	}
	return out
}

// Linear returns the Linear module with the given name.
func (m *Model) Linear(name string) (*Linear, bool) {
	for _, l := range m.Linears() {
		if l.Name == name {
			return l, true
		}
	}
	return nil, false
}

// RoutedBlock is a feed-forward block that contains routed experts besides
// other parts (Qwen3.5's SharedExpertMoE).
type RoutedBlock interface {
	Block
	// RoutedMoE returns the block's router and routed experts.
	RoutedMoE() *MoE
}

// MoEBlocks returns the routed-expert blocks in layer order (for a
// RoutedBlock, its routed part).
func (m *Model) MoEBlocks() []*MoE {
	var out []*MoE
	for _, l := range m.Layers {
		switch b := l.FFN.(type) {
		case *MoE:
			out = append(out, b)
		case RoutedBlock:
			out = append(out, b.RoutedMoE())
		}
	}
	return out
}

// Experts returns the fused experts module with the given name
// ("model.layers.3.mlp.experts").
func (m *Model) Experts(name string) (*FusedExperts, bool) {
	for _, b := range m.MoEBlocks() {
		if b.Experts.Name == name {
			return b.Experts, true
		}
	}
	return nil, false
}

// Params returns every parameter of the text model (the tied lm_head
// weight once).
func (m *Model) Params() []*Param {
	out := []*Param{m.Embed}
	for _, l := range m.Layers {
		out = append(out, l.Params()...)
	}
	out = append(out, m.FinalNorm.Weight)
	if m.LMHead != nil && m.LMHead.Weight != m.Embed {
		out = append(out, m.LMHead.Params()...)
	}
	return out
}

// Prepare uploads the weights to be (a no-op when already prepared for
// it). A model is prepared for one backend at a time.
func (m *Model) Prepare(be backend.Backend) error {
	if m.prepared == be {
		return nil
	}
	if m.prepared != nil {
		m.Release()
	}
	for _, p := range m.Params() {
		if err := upload(be, p); err != nil {
			m.releaseParams(be)
			return err
		}
	}
	for _, l := range m.Layers {
		for _, blk := range []Block{l.Mixer, l.FFN} {
			if err := blk.Prepare(be); err != nil {
				m.prepared = be // so Release frees the blocks and parameters uploaded so far
				m.Release()
				return fmt.Errorf("prepare layer %d: %w", l.Index, err)
			}
		}
	}
	m.prepared = be
	return nil
}

// Release frees the device copies of the weights.
func (m *Model) Release() {
	be := m.prepared
	if be == nil {
		return
	}
	for _, l := range m.Layers {
		l.Mixer.Release(be)
		l.FFN.Release(be)
	}
	m.releaseParams(be)
	m.prepared = nil
}

func (m *Model) releaseParams(be backend.Backend) {
	for _, p := range m.Params() {
		if p.dev != nil {
			be.Free(p.dev)
			p.dev = nil
		}
	}
}

// upload puts a parameter on the device as a [Rows, Cols] matrix.
func upload(be backend.Backend, p *Param) error {
	if p.dev != nil {
		return nil
	}
	t, err := be.Upload(p.Rows(), p.Cols(), p.Data)
	if err != nil {
		return fmt.Errorf("upload %s: %w", p.Name, err)
	}
	p.dev = t
	return nil
}
