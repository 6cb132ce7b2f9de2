//go:build cuda

package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"

	"github.com/ptqgate/ptqgate/ptqcore/backend"
	"github.com/ptqgate/ptqgate/ptqcore/model"
	"github.com/ptqgate/ptqgate/ptqcore/numerics"
)

// shape is the benchmark model: Qwen3-30B-A3B's layer shape
// (/work/shared/bench/README.md).
type shape struct {
	Hidden, Experts, TopK, MoEInter, Heads, KVHeads, HeadDim, Vocab int
}

var qwen3_30b = shape{Hidden: 2048, Experts: 128, TopK: 8, MoEInter: 768, Heads: 32, KVHeads: 4, HeadDim: 128, Vocab: 151936}

// config returns the model's config.json, as transformers'
// Qwen3MoeConfig of peer_transformers.py.
func (s shape) config(layers int) (*model.Config, error) {
	raw := fmt.Sprintf(`{"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "dtype": "bfloat16",
 "vocab_size": %d, "hidden_size": %d, "intermediate_size": 6144, "moe_intermediate_size": %d,
 "num_hidden_layers": %d, "num_attention_heads": %d, "num_key_value_heads": %d, "head_dim": %d,
 "num_experts": %d, "num_experts_per_tok": %d, "norm_topk_prob": true, "max_position_embeddings": 4096,
 "rms_norm_eps": 1e-6, "tie_word_embeddings": false, "hidden_act": "silu", "rope_theta": 1000000,
 "mlp_only_layers": [], "decoder_sparse_step": 1}`,
		s.Vocab, s.Hidden, s.MoEInter, layers, s.Heads, s.KVHeads, s.HeadDim, s.Experts, s.TopK)
	return model.ParseConfig("synthetic/config.json", []byte(raw))
}

// randomBF16 fills n values N(0, std) rounded to bfloat16 (transformers'
// initializer_range 0.02 for the peer's random model), on all cores.
func randomBF16(n int, std float64, seed uint64) []float32 {
	out := make([]float32, n)
	const chunk = 1 << 20
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for lo := 0; lo < n; lo += chunk {
		wg.Add(1)
		sem <- struct{}{}
		go func(lo, hi int) {
			defer wg.Done()
			defer func() { <-sem }()
			r := rand.New(rand.NewPCG(seed, uint64(lo)))
			for i := lo; i < hi; i++ {
				out[i] = numerics.RoundBF16(float32(r.NormFloat64() * std))
			}
		}(lo, min(lo+chunk, n))
	}
	wg.Wait()
	return out
}

func ones(n int) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = 1
	}
	return out
}

// layerData is one decoder layer's host weights (possibly shared by
// several layers of the model to save host memory).
type layerData struct {
	q, k, v, o, router, gateUp, down []float32
}

func (s shape) newLayerData(seed uint64) *layerData {
	h, hd := s.Hidden, s.HeadDim
	return &layerData{
		q:      randomBF16(s.Heads*hd*h, 0.02, seed+1),
		k:      randomBF16(s.KVHeads*hd*h, 0.02, seed+2),
		v:      randomBF16(s.KVHeads*hd*h, 0.02, seed+3),
		o:      randomBF16(h*s.Heads*hd, 0.02, seed+4),
		router: randomBF16(s.Experts*h, 0.02, seed+5),
		gateUp: randomBF16(s.Experts*2*s.MoEInter*h, 0.02, seed+6),
		down:   randomBF16(s.Experts*h*s.MoEInter, 0.02, seed+7),
	}
}

// build makes the synthetic model with the given number of layers; layer
// i uses host weights distinct[i % len(distinct)] (every layer is its own
// set of device tensors; only the host copies are shared).
func (s shape) build(layers, distinct int, seed uint64) (*model.Model, error) {
	cfg, err := s.config(layers)
	if err != nil {
		return nil, err
	}
	h, hd := s.Hidden, s.HeadDim
	param := func(name string, data []float32, shape ...int) *model.Param {
		return &model.Param{Name: name, Shape: shape, Data: data, Source: "BF16", Sources: []string{name}}
	}
	norm := func(name string, n int) *model.Norm {
		return &model.Norm{Weight: param(name, ones(n), n), Eps: 1e-6, Kind: backend.NormWeighted, Group: n}
	}
	linear := func(name string, data []float32, out, in int) *model.Linear {
		return &model.Linear{Name: name, Weight: param(name+".weight", data, out, in), In: in, Out: out}
	}
	m := &model.Model{Config: cfg, Dir: "synthetic", DType: backend.BF16, Prefix: "model"}
	m.Embed = param("model.embed_tokens.weight", randomBF16(s.Vocab*h, 0.02, seed), s.Vocab, h)
	data := make([]*layerData, min(distinct, layers))
	for i := range data {
		data[i] = s.newLayerData(seed + uint64(100*(i+1)))
	}
	for i := 0; i < layers; i++ {
		d := data[i%len(data)]
		p := "model.layers." + strconv.Itoa(i)
		attn := p + ".self_attn"
		l := &model.Layer{Index: i, Prefix: p, InputNorm: norm(p+".input_layernorm.weight", h), PostNorm: norm(p+".post_attention_layernorm.weight", h)}
		l.Mixer = model.NewAttention(attn, i,
			linear(attn+".q_proj", d.q, s.Heads*hd, h), linear(attn+".k_proj", d.k, s.KVHeads*hd, h),
			linear(attn+".v_proj", d.v, s.KVHeads*hd, h), linear(attn+".o_proj", d.o, h, s.Heads*hd),
			norm(attn+".q_norm.weight", hd), norm(attn+".k_norm.weight", hd), s.Heads, s.KVHeads, hd, hd, 1e6)
		mlp := p + ".mlp"
		l.FFN = &model.MoE{
			Prefix: mlp, Layer: i, Router: param(mlp+".gate.weight", d.router, s.Experts, h), TopK: s.TopK, Normalize: true,
			Experts: &model.FusedExperts{Name: mlp + ".experts", Layer: i, NumExperts: s.Experts, Intermediate: s.MoEInter, Hidden: h,
				GateUp: param(mlp+".experts.gate_up_proj", d.gateUp, s.Experts, 2*s.MoEInter, h),
				Down:   param(mlp+".experts.down_proj", d.down, s.Experts, h, s.MoEInter)},
		}
		m.Layers = append(m.Layers, l)
	}
	m.FinalNorm = norm("model.norm.weight", h)
	m.LMHead = linear("lm_head", randomBF16(s.Vocab*h, 0.02, seed+7777), s.Vocab, h)
	return m, nil
}

// weightBytes is the bfloat16 size of the model's weights.
func weightBytes(m *model.Model) int64 {
	var n int64
	for _, p := range m.Params() {
		n += 2 * int64(len(p.Data))
	}
	return n
}

// tokens returns nseq random sequences of seq token ids.
func tokens(nseq, seq, vocab int, seed uint64) [][]int32 {
	r := rand.New(rand.NewPCG(seed, 1))
	out := make([][]int32, nseq)
	for i := range out {
		out[i] = make([]int32, seq)
		for j := range out[i] {
			out[i][j] = int32(r.IntN(vocab))
		}
	}
	return out
}

func gib(n int64) float64 { return math.Round(float64(n)/(1<<30)*100) / 100 }
