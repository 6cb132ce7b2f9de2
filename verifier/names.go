package verifier

import (
	"sort"
	"strconv"
	"strings"

	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
)

// modKind classifies a checkpoint module by the role the loaders give it.
type modKind int

const (
	kindOther         modKind = iota
	kindAttn                  // self_attn.{q,k,v,o,qkv}_proj
	kindLinAttn               // linear_attn.{in_proj_qkv,in_proj_z,in_proj_b,in_proj_a,in_proj_qkvz,in_proj_ba,out_proj}
	kindDense                 // mlp.{gate,up,down,gate_up}_proj of a dense layer
	kindShared                // mlp.shared_expert.{gate,up,down,gate_up}_proj
	kindExpert                // mlp.experts.<e>.<proj>
	kindExpertSwapped         // mlp.experts.<proj>.<e> (un-BMM naming)
	kindFusedExperts          // tensors directly on mlp.experts (3-D fused layout)
	kindRouter                // mlp.gate
	kindSharedGate            // mlp.shared_expert_gate
	kindLMHead                // lm_head
	kindEmbed                 // embed_tokens
	kindNorm                  // layer norms and the final norm
	kindAttnMisc              // q_norm, k_norm, attn, conv1d, norm, A_log, dt_bias, KV scales on self_attn
	kindVision                // vision tower
	kindMTP                   // multi-token-prediction layers (ignored by the main loaders)
)

// Parameter suffixes of a quantized Linear (specs/modelopt.md §4.2).
const (
	pWeight  = "weight"
	pScale   = "weight_scale"
	pScale2  = "weight_scale_2"
	pInput   = "input_scale"
	pBias    = "bias"
	pKScale  = "k_scale"
	pVScale  = "v_scale"
	pQScale  = "q_scale"
	pKVScale = "kv_scale"
)

var linearParams = map[string]bool{pWeight: true, pScale: true, pScale2: true, pInput: true, pBias: true}
var kvParams = map[string]bool{pKScale: true, pVScale: true, pQScale: true, pKVScale: true}

var attnProjs = map[string]bool{"q_proj": true, "k_proj": true, "v_proj": true, "o_proj": true, "qkv_proj": true}
var linAttnProjs = map[string]bool{"in_proj_qkv": true, "in_proj_z": true, "in_proj_b": true, "in_proj_a": true, "in_proj_qkvz": true, "in_proj_ba": true, "out_proj": true}
var mlpProjs = map[string]bool{"gate_proj": true, "up_proj": true, "down_proj": true, "gate_up_proj": true}

// parsedName is a tensor name split into the parts the checks use.
type parsedName struct {
	name   string
	module string // the name without its last component
	param  string // the last component
	prefix string // components before "layers.<L>" ("model", "model.language_model", "mtp")
	layer  int    // -1 outside decoder layers
	sub    []string
	expert int // -1 unless an expert module
	proj   string
	kind   modKind
}

func isDigits(s string) bool {
	if s == "" || len(s) > 9 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// parseName classifies a tensor name.
func parseName(name string) *parsedName {
	p := &parsedName{name: name, layer: -1, expert: -1}
	dot := strings.LastIndexByte(name, '.')
	if dot < 0 {
		p.param = name
		return p
	}
	p.module, p.param = name[:dot], name[dot+1:]
	comps := strings.Split(p.module, ".")
	li := -1
	for i := 0; i+1 < len(comps); i++ {
		if comps[i] == "layers" && isDigits(comps[i+1]) {
			li = i
			break
		}
	}
	switch {
	case strings.HasPrefix(name, "mtp.") || strings.Contains(name, ".mtp."):
		p.kind = kindMTP
	case strings.Contains(name, "visual.") || strings.Contains(name, "vision_tower") || strings.Contains(name, "vision_model"):
		p.kind = kindVision
	}
	if li < 0 {
		if p.kind != kindOther {
			return p
		}
		last := comps[len(comps)-1]
		p.proj = last
		switch {
		case p.module == "lm_head" || strings.HasSuffix(p.module, ".lm_head"):
			p.kind = kindLMHead
		case last == "embed_tokens":
			p.kind = kindEmbed
		case last == "norm":
			p.kind = kindNorm
		}
		return p
	}
	p.prefix = strings.Join(comps[:li], ".")
	p.layer, _ = strconv.Atoi(comps[li+1])
	p.sub = comps[li+2:]
	if p.kind != kindOther {
		return p
	}
	s := p.sub
	if len(s) == 0 {
		return p
	}
	p.proj = s[len(s)-1]
	switch s[0] {
	case "self_attn":
		if len(s) == 2 && attnProjs[s[1]] {
			p.kind = kindAttn
		} else {
			p.kind = kindAttnMisc
		}
	case "linear_attn":
		if len(s) == 2 && linAttnProjs[s[1]] {
			p.kind = kindLinAttn
		} else {
			p.kind = kindAttnMisc
		}
	case "mlp":
		switch {
		case len(s) == 2 && mlpProjs[s[1]]:
			p.kind = kindDense
		case len(s) == 2 && s[1] == "gate":
			p.kind = kindRouter
		case len(s) == 2 && s[1] == "shared_expert_gate":
			p.kind = kindSharedGate
		case len(s) == 2 && s[1] == "experts":
			p.kind = kindFusedExperts
		case len(s) == 3 && s[1] == "shared_expert" && mlpProjs[s[2]]:
			p.kind = kindShared
		case len(s) == 4 && s[1] == "experts" && isDigits(s[2]) && mlpProjs[s[3]]:
			p.kind = kindExpert
			p.expert, _ = strconv.Atoi(s[2])
		case len(s) == 4 && s[1] == "experts" && mlpProjs[s[2]] && isDigits(s[3]):
			p.kind = kindExpertSwapped
			p.expert, _ = strconv.Atoi(s[3])
			p.proj = s[2]
		}
	case "input_layernorm", "post_attention_layernorm":
		if len(s) == 1 {
			p.kind = kindNorm
		}
	}
	return p
}

// module is one checkpoint module with its parameters.
type module struct {
	*parsedName
	weight, scale, scale2, input *tensor
	// extra holds any other parameter (bias, KV scales, unknown suffixes).
	extra map[string]*tensor
}

// param returns the named parameter tensor or nil.
func (m *module) param(name string) *tensor {
	switch name {
	case pWeight:
		return m.weight
	case pScale:
		return m.scale
	case pScale2:
		return m.scale2
	case pInput:
		return m.input
	}
	return m.extra[name]
}

// storedFmt is how a module's weight is stored.
type storedFmt int

const (
	fmtNone  storedFmt = iota // no weight tensor
	fmtBF16                   // unquantized float (BF16, F16, F32, F64)
	fmtFP8                    // F8_E4M3 codes
	fmtNVFP4                  // U8 packed E2M1
	fmtOdd                    // another dtype (F4, I8, F8_E5M2, …)
)

func (f storedFmt) quantized() bool { return f == fmtFP8 || f == fmtNVFP4 || f == fmtOdd }

func (f storedFmt) String() string {
	switch f {
	case fmtBF16:
		return "unquantized"
	case fmtFP8:
		return "FP8"
	case fmtNVFP4:
		return "NVFP4"
	case fmtOdd:
		return "an unexpected dtype"
	}
	return "no weight"
}

// stored returns the module's storage format.
func (m *module) stored() storedFmt {
	if m.weight == nil {
		return fmtNone
	}
	switch m.weight.DType {
	case safetensors.BF16, safetensors.F16, safetensors.F32, safetensors.F64:
		return fmtBF16
	case safetensors.F8E4M3:
		return fmtFP8
	case safetensors.U8:
		return fmtNVFP4
	}
	return fmtOdd
}

// layerExperts groups the routed experts of one MoE layer.
type layerExperts struct {
	layer  int
	prefix string // …mlp.experts
	// byID maps expert id → projection → module.
	byID map[int]map[string]*module
	// fused are tensors stored on the experts container itself.
	fused   []*tensor
	swapped []*module
}

// fusedWeightParam reports the fused 3-D expert weight names of the
// transformers-v5 layout (specs/transformers.md §1).
func fusedWeightParam(param string) bool {
	return param == "gate_up_proj" || param == "down_proj" || param == "up_proj"
}

// hasFusedWeights reports whether the layer stores its experts in the
// fused 3-D layout.
func (le *layerExperts) hasFusedWeights() bool {
	for _, t := range le.fused {
		if fusedWeightParam(paramOf(t.Name)) {
			return true
		}
	}
	return false
}

// moduleIndex is every module of the checkpoint, grouped for the checks.
type moduleIndex struct {
	list    []*module // sorted by name
	byName  map[string]*module
	experts map[int]*layerExperts // by layer
	kv      []*tensor             // KV-cache scale tensors
}

// expertLayers returns the layers with expert tensors, sorted.
func (x *moduleIndex) expertLayers() []int {
	out := make([]int, 0, len(x.experts))
	for l := range x.experts {
		out = append(out, l)
	}
	sort.Ints(out)
	return out
}

// indexModules groups the checkpoint's tensors into modules.
func indexModules(c *checkpoint, g *geometry) *moduleIndex {
	x := &moduleIndex{byName: map[string]*module{}, experts: map[int]*layerExperts{}}
	layerExp := func(p *parsedName) *layerExperts {
		le := x.experts[p.layer]
		if le == nil {
			le = &layerExperts{layer: p.layer, prefix: p.prefix + ".layers." + strconv.Itoa(p.layer) + ".mlp.experts", byID: map[int]map[string]*module{}}
			x.experts[p.layer] = le
		}
		return le
	}
	for _, t := range c.list {
		p := parseName(t.Name)
		t.p = p
		if kvParams[p.param] && p.kind != kindExpert && p.kind != kindMTP && p.kind != kindVision {
			x.kv = append(x.kv, t)
			continue
		}
		if p.kind == kindFusedExperts {
			if p.prefix == g.textPrefix {
				le := layerExp(p)
				le.fused = append(le.fused, t)
			}
			continue
		}
		m := x.byName[p.module]
		if m == nil {
			mp := *p
			mp.name = p.module
			m = &module{parsedName: &mp}
			x.byName[p.module] = m
			x.list = append(x.list, m)
			if (p.kind == kindExpert || p.kind == kindExpertSwapped) && p.prefix == g.textPrefix {
				le := layerExp(p)
				if p.kind == kindExpertSwapped {
					le.swapped = append(le.swapped, m)
				}
				if le.byID[p.expert] == nil {
					le.byID[p.expert] = map[string]*module{}
				}
				le.byID[p.expert][p.proj] = m
			}
		}
		switch p.param {
		case pWeight:
			m.weight = t
		case pScale:
			m.scale = t
		case pScale2:
			m.scale2 = t
		case pInput:
			m.input = t
		default:
			if m.extra == nil {
				m.extra = map[string]*tensor{}
			}
			m.extra[p.param] = t
		}
	}
	return x
}
