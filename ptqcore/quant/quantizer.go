package quant

import "strconv"

// ModuleKind is the kind of a quantizable module.
type ModuleKind int

const (
	// KindLinear is an nn.Linear: an input and a weight quantizer.
	KindLinear ModuleKind = iota
	// KindFusedExperts is a transformers v5 fused experts module (3-D
	// gate_up_proj [E, 2I, H] and down_proj [E, H, I]): shared input
	// quantizers per projection and per-expert weight quantizers.
	KindFusedExperts
	// KindAttention is an HF attention module of a full-attention layer: the
	// k and v bmm quantizers (KV cache).
	KindAttention
)

// String returns the kind's name.
func (k ModuleKind) String() string {
	switch k {
	case KindLinear:
		return "linear"
	case KindFusedExperts:
		return "fused_experts"
	case KindAttention:
		return "attention"
	}
	return "ModuleKind(" + strconv.Itoa(int(k)) + ")"
}

// ParentClass returns the module class name that parent_class entries are
// matched against: "nn.Linear" for Linears, "QuantFusedExperts" for fused
// experts, "QuantAttention" for attention modules, "" for unknown kinds.
func (k ModuleKind) ParentClass() string {
	switch k {
	case KindLinear:
		return ClassLinear
	case KindFusedExperts:
		return ClassFusedExperts
	case KindAttention:
		return ClassAttention
	}
	return ""
}

// Module class names used for parent_class matching.
const (
	ClassLinear       = "nn.Linear"
	ClassFusedExperts = "QuantFusedExperts"
	ClassAttention    = "QuantAttention"
)

// Module is a quantizable module of a model, as the model package describes it.
type Module struct {
	// Name is the full module name as the checkpoint names its weight minus
	// ".weight", e.g. "model.layers.0.self_attn.q_proj",
	// "model.layers.0.mlp.experts", "model.layers.0.self_attn".
	Name string
	// Kind says which quantizers the module has.
	Kind ModuleKind
	// NumExperts is the number of experts of a KindFusedExperts module.
	NumExperts int
}

// Role is what a quantizer quantizes.
type Role string

// Quantizer roles.
const (
	RoleInput  Role = "input"
	RoleWeight Role = "weight"
	RoleKBMM   Role = "k_bmm"
	RoleVBMM   Role = "v_bmm"
)

// Fused-experts projections.
const (
	ProjGateUp = "gate_up_proj"
	ProjDown   = "down_proj"
)

// Quantizer is one TensorQuantizer of the model with its configuration.
type Quantizer struct {
	// Name is the exact ModelOpt name: "<m>.input_quantizer",
	// "<m>.weight_quantizer", "<experts>.gate_up_proj_input_quantizer",
	// "<experts>.gate_up_proj_weight_quantizers.<e>",
	// "<experts>.down_proj_input_quantizer",
	// "<experts>.down_proj_weight_quantizers.<e>", "<attn>.k_bmm_quantizer",
	// "<attn>.v_bmm_quantizer".
	Name string
	// Module is the owning module's name.
	Module string
	// Role is what the quantizer quantizes.
	Role Role
	// Proj is "gate_up_proj" or "down_proj" for fused experts, "" otherwise.
	Proj string
	// Expert is the expert index of a per-expert weight quantizer, -1 otherwise.
	Expert int
	// ParentClass is the owning module's class for parent_class matching:
	// "nn.Linear", "QuantFusedExperts" or "QuantAttention".
	ParentClass string
	// Config is the quantizer's configuration (DefaultConfig from Enumerate;
	// the recipe's result after Apply).
	Config Config
}

// ExpertInputQuantizer returns the name of a fused experts module's input
// quantizer of proj (ProjGateUp or ProjDown), which all its experts share:
// "<experts>.gate_up_proj_input_quantizer".
func ExpertInputQuantizer(experts, proj string) string {
	return experts + "." + proj + "_input_quantizer"
}

// ExpertWeightQuantizer returns the name of expert e's weight quantizer of
// proj (ProjGateUp or ProjDown): "<experts>.gate_up_proj_weight_quantizers.<e>".
func ExpertWeightQuantizer(experts, proj string, e int) string {
	return experts + "." + proj + "_weight_quantizers." + strconv.Itoa(e)
}

// Enumerate returns ModelOpt's quantizer set for the modules, in module order
// and, within a module, in ModelOpt's registration order: Linear input then
// weight; fused experts gate_up input, gate_up weights 0..E-1, down input, down
// weights 0..E-1; attention k then v. Every quantizer starts at DefaultConfig
// (ModelOpt's TensorQuantizer() default). Modules of unknown kind have none.
func Enumerate(mods []Module) []Quantizer {
	var qs []Quantizer
	for _, m := range mods {
		pc := m.Kind.ParentClass()
		add := func(name string, role Role, proj string, expert int) {
			qs = append(qs, Quantizer{Name: name, Module: m.Name, Role: role, Proj: proj, Expert: expert, ParentClass: pc, Config: DefaultConfig()})
		}
		switch m.Kind {
		case KindLinear:
			add(m.Name+".input_quantizer", RoleInput, "", -1)
			add(m.Name+".weight_quantizer", RoleWeight, "", -1)
		case KindFusedExperts:
			for _, proj := range []string{ProjGateUp, ProjDown} {
				add(ExpertInputQuantizer(m.Name, proj), RoleInput, proj, -1)
				for e := 0; e < m.NumExperts; e++ {
					add(ExpertWeightQuantizer(m.Name, proj, e), RoleWeight, proj, e)
				}
			}
		case KindAttention:
			add(m.Name+".k_bmm_quantizer", RoleKBMM, "", -1)
			add(m.Name+".v_bmm_quantizer", RoleVBMM, "", -1)
		}
	}
	return qs
}
