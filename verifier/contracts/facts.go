package contracts

import (
	"github.com/ptqgate/ptqgate/reports"
)

// Family is a model family whose loader the facts describe. The zero
// Family means "any family" in a Fact and "no specific loader" for a
// checkpoint.
type Family string

// Model families with loader facts.
const (
	FamilyAny      Family = ""
	FamilyQwen3MoE Family = "qwen3_moe"
	// FamilyQwen35MoE covers qwen3_5_moe (VLM) and qwen3_5_moe_text.
	FamilyQwen35MoE Family = "qwen3_5_moe"
)

// Fact is one loader behaviour: for a rule and a checkpoint case, on an
// engine within a version range (inclusive, "" = open) and optionally for
// one model family, what the engine does. Severity "" means the engine
// loads the case correctly (no finding).
type Fact struct {
	Rule     string
	Case     string
	Engine   Engine
	From, To string
	Family   Family
	Severity reports.Severity
	// Behavior is the engine's exact exception text where it raises, or
	// the silent outcome.
	Behavior string
	Source   string
}

// Applies reports whether the fact covers target t and family f.
func (f Fact) Applies(t Target, fam Family) bool {
	if f.Engine != t.Engine {
		return false
	}
	if f.Family != FamilyAny && f.Family != fam {
		return false
	}
	return t.InRange(f.From, f.To)
}

// Lookup returns the fact for rule and case on target t for family fam.
// Facts specific to the family win over family-independent ones. ok is
// false when no fact covers the case (the engine is not known to mishandle
// it).
func Lookup(rule, kase string, t Target, fam Family) (Fact, bool) {
	var generic *Fact
	for i := range facts {
		f := &facts[i]
		if f.Rule != rule || f.Case != kase || !f.Applies(t, fam) {
			continue
		}
		if f.Family != FamilyAny {
			return *f, true
		}
		if generic == nil {
			generic = f
		}
	}
	if generic != nil {
		return *generic, true
	}
	return Fact{}, false
}

// Facts returns the whole fact table (for documentation and tests).
func Facts() []Fact { return append([]Fact(nil), facts...) }

const (
	e = reports.SeverityError
	w = reports.SeverityWarning
	i = reports.SeverityInfo
)

// facts is the loader-contract table. Cases are strings the checks in
// package verifier compute from the checkpoint; each row cites its spec
// section. Rows for the same rule, case and target are ordered most
// specific first.
var facts = []Fact{
	// ---------------- config.quant-algo ----------------
	{Rule: "config.quant-algo", Case: "nested-not-fp8-nvfp4", Engine: VLLM, Severity: e,
		Behavior: "ValueError: Unknown ModelOpt quant algo: {algo} (ModelConfig._parse_quant_hf_config only maps the FP8 family and NVFP4 from hf_quant_config.json)",
		Source:   "specs/vllm.md §1.1"},
	{Rule: "config.quant-algo", Case: "not-in-quant-algos", Engine: VLLM, Severity: e,
		Behavior: "ValueError: ModelOpt currently only supports: ['FP8', 'FP8_PER_CHANNEL_PER_TOKEN', 'FP8_PB_WO', 'NVFP4', 'W4A16_NVFP4', 'MXFP8', 'MIXED_PRECISION'] quantizations in vLLM. Please check the `hf_quant_config.json` file for your model's quant configuration.",
		Source:   "specs/vllm.md §1.2"},
	{Rule: "config.quant-algo", Case: "fp4-variant", Engine: SGLang, Severity: e,
		Behavior: "ValueError: ModelOpt currently only supports: FP8, NVFP4, NVFP4_AWQ quantizations in sglang. …",
		Source:   "specs/sglang.md §1.2"},
	{Rule: "config.quant-algo", Case: "fp8-variant", Engine: SGLang, From: "0.5.11", Severity: e,
		Behavior: "ValueError: ModelOptFp8Config only supports regular FP8 quantization, but found {algo}",
		Source:   "specs/sglang.md §1.2"},
	{Rule: "config.quant-algo", Case: "fp8-variant", Engine: SGLang, To: "0.5.10", Severity: e,
		Behavior: "ModelOptFp8Config accepts any algo containing \"FP8\" and loads it as regular per-tensor FP8, which does not match this algo's scale layout",
		Source:   "specs/sglang.md §1.2"},
	{Rule: "config.quant-algo", Case: "unknown-from-file", Engine: SGLang, Severity: e,
		Behavior: "quant_algo is not routed to any ModelOpt method from hf_quant_config.json: nothing is detected and the model loads as unquantized (codes value-cast, garbage, no error)",
		Source:   "specs/sglang.md §1.2"},
	{Rule: "config.quant-algo", Case: "unknown-from-config", Engine: SGLang, Severity: e,
		Behavior: "ValueError: ModelOptFp8Config only supports regular FP8 quantization, but found {algo}",
		Source:   "specs/sglang.md §1.2"},
	{Rule: "config.quant-algo", Case: "null-algo", Engine: SGLang, Severity: e,
		Behavior: "ValueError: Invalid quant_config, quantization method: None",
		Source:   "specs/sglang.md §1.1"},
	{Rule: "config.quant-algo", Case: "null-algo", Engine: VLLM, Severity: e,
		Behavior: "quant_algo null: no ModelOpt method is selected and the model is built unquantized (codes value-cast, garbage)",
		Source:   "specs/vllm.md §1.1"},
	{Rule: "config.quant-algo", Case: "mixed-no-nvfp4", Engine: SGLang, Severity: e,
		Behavior: "MIXED_PRECISION without an NVFP4/W4A16_NVFP4 layer is routed to w4afp8, not the ModelOpt mixed method: the layers are built for another format",
		Source:   "specs/sglang.md §1.2"},

	// ---------------- config.invalid ----------------
	{Rule: "config.invalid", Case: "quantization-not-dict", Engine: VLLM, Severity: e,
		Behavior: "ValueError: Expected 'quantization' to be a dictionary in config", Source: "specs/vllm.md §1.2"},
	{Rule: "config.invalid", Case: "quantization-not-dict", Engine: SGLang, Severity: e,
		Behavior: "the nested quantization section is not a dict: parsing fails (KeyError / TypeError)", Source: "specs/sglang.md §1.3"},
	{Rule: "config.invalid", Case: "no-quant-method", Engine: VLLM, Severity: e,
		Behavior: "config.json quantization_config has no quant_method: the ModelOpt overrides need quant_method starting with \"modelopt\" (ModelOptQuantConfigBase._extract_modelopt_quant_algo), so no ModelOpt method is selected", Source: "specs/vllm.md §1.1"},
	{Rule: "config.invalid", Case: "missing-algo", Engine: VLLM, Severity: e,
		Behavior: "ValueError: Missing 'quant_algo' in quantization config", Source: "specs/vllm.md §1.2"},
	{Rule: "config.invalid", Case: "missing-algo", Engine: SGLang, Severity: e,
		Behavior: "KeyError: 'quant_algo' (ModelOptFp4Config.from_config); the FP8 path raises ValueError: Invalid quant_config, quantization method: None",
		Source:   "specs/sglang.md §1.3"},
	{Rule: "config.invalid", Case: "kv-not-string", Engine: VLLM, Severity: e,
		Behavior: "ValueError: kv_cache_quant_algo must be a string, got {type}", Source: "specs/vllm.md §1.2"},
	{Rule: "config.invalid", Case: "exclude-not-list", Engine: VLLM, Severity: e,
		Behavior: "ValueError: exclude_modules must be a list, got {type}", Source: "specs/vllm.md §1.2"},
	{Rule: "config.invalid", Case: "exclude-not-list", Engine: SGLang, Severity: e,
		Behavior: "the exclusion list is not a list of strings: matching iterates over it and fails or matches nonsense", Source: "specs/sglang.md §1.3"},
	{Rule: "config.invalid", Case: "group-size-type", Engine: VLLM, Severity: e,
		Behavior: "ValueError: group_size must be an integer, got {type}", Source: "specs/vllm.md §1.2"},
	{Rule: "config.invalid", Case: "nvfp4-required-keys", Engine: VLLM, Severity: e,
		Behavior: "ValueError: NVFP4 quantization requires the following fields in hf_quant_config.json: {missing}", Source: "specs/vllm.md §1.2"},
	{Rule: "config.invalid", Case: "nvfp4-null-keys", Engine: SGLang, Severity: e,
		Behavior: "ValueError: NVFP4 quantization requires group_size and exclude_modules specified …", Source: "specs/sglang.md §1.3"},
	{Rule: "config.invalid", Case: "nvfp4-group-size-nested", Engine: SGLang, Severity: e,
		Behavior: "ValueError: Cannot find 'quant_algo' in the model's quantization config. Expected either flat format … (common_group_size found no consistent group_size)", Source: "specs/sglang.md §1.3"},
	{Rule: "config.invalid", Case: "multiple-files", Engine: SGLang, Severity: e,
		Behavior: "ValueError: Found multiple config files for …", Source: "specs/sglang.md §1.1"},
	{Rule: "config.invalid", Case: "mixed-empty", Engine: VLLM, Severity: e,
		Behavior: "ValueError: MIXED_PRECISION quant_algo requires a non-empty 'quantized_layers' mapping in the quantization config.", Source: "specs/vllm.md §1.2"},
	{Rule: "config.invalid", Case: "mixed-empty", Engine: SGLang, Severity: e,
		Behavior: "ValueError: MIXED_PRECISION quantization requires a non-empty quantized_layers map.", Source: "specs/sglang.md §1.2"},
	{Rule: "config.invalid", Case: "mixed-fused", Engine: VLLM, Severity: e,
		Behavior: "ValueError: Mixed quant_algo within fused layer {prefix}: {algos}. All shards must use the same quantization.", Source: "specs/vllm.md §1.2"},
	{Rule: "config.invalid", Case: "mixed-fused", Engine: SGLang, Severity: e,
		Behavior: "ValueError: Mixed quant_algo within fused layer …", Source: "specs/sglang.md §1.4"},

	// ---------------- config.group-size ----------------
	{Rule: "config.group-size", Case: "not-16", Engine: VLLM, Severity: e,
		Behavior: "every NVFP4 kernel assumes 16-element blocks: the block scales are read with the wrong stride (garbage)", Source: "specs/vllm.md §1.2"},
	{Rule: "config.group-size", Case: "not-16", Engine: SGLang, Severity: e,
		Behavior: "ValueError: NVFP4 Marlin requires group_size=16, got {group_size} (the other NVFP4 kernels assume 16 and compute garbage)", Source: "specs/sglang.md §1.3"},

	// ---------------- config.kv-algo ----------------
	{Rule: "config.kv-algo", Case: "unknown", Engine: VLLM, Severity: w,
		Behavior: "kv_cache_quant_algo is upper-cased but not checked against FP8/NVFP4: the KV cache dtype is not FP8 and the KV scales are ignored", Source: "specs/vllm.md §1.2"},
	{Rule: "config.kv-algo", Case: "unknown", Engine: SGLang, Severity: w,
		Behavior: "an unknown kv_cache_quant_algo resolves to \"auto\": the KV cache is not FP8 and the KV scales are ignored", Source: "specs/sglang.md §1.3"},
	{Rule: "config.kv-algo", Case: "flat-key-ignored", Engine: VLLM, Severity: w,
		Behavior: "ModelOptQuantConfigBase.from_config derives the flat KV algo from kv_cache_scheme only and ignores kv_cache_quant_algo: with --kv-cache-dtype auto the KV cache stays BF16 and the checkpoint's KV scales are unused", Source: "specs/vllm.md §1.2"},

	// ---------------- config.act-dtype ----------------
	{Rule: "config.act-dtype", Case: "float32", Engine: VLLM, Severity: e,
		Behavior: "get_supported_act_dtypes of the ModelOpt FP8/NVFP4/MIXED methods excludes float32: the engine refuses the config's dtype (pass --dtype bfloat16 or fix config.json)", Source: "specs/vllm.md §1.1"},

	// ---------------- exclude.partial-fused ----------------
	{Rule: "exclude.partial-fused", Case: "shards-disagree", Engine: VLLM, Severity: e,
		Behavior: "ValueError: Detected some but not all shards of {prefix} are quantized. All shards of fused layers to have the same precision.", Source: "specs/vllm.md §1.3"},
	{Rule: "exclude.partial-fused", Case: "shards-disagree", Engine: SGLang, Severity: e,
		Behavior: "ValueError: Detected some but not all shards of {prefix} are quantized. All shards of fused layers to have the same precision.", Source: "specs/sglang.md §1.4"},

	// ---------------- exclude.per-expert ----------------
	{Rule: "exclude.per-expert", Case: "experts-bf16", Engine: VLLM, Severity: e,
		Behavior: "is_layer_excluded matches the MoE prefix …mlp.experts, which no per-expert entry matches (exact, substring or fnmatch): the layer is built quantized, the BF16 expert weights are value-cast into the FP8/U8 params and their scales stay at the init (1.0 / torch.empty); garbage, no error", Source: "specs/vllm.md §1.3"},
	{Rule: "exclude.per-expert", Case: "experts-bf16", Engine: SGLang, Severity: e,
		Behavior: "FusedMoE uses only is_layer_excluded (regex fullmatch of the prefix …mlp.experts or one of its components), which no per-expert entry matches: the layer is built quantized and the BF16 expert weights are value-cast; garbage, no error", Source: "specs/sglang.md §1.4"},
	{Rule: "exclude.per-expert", Case: "experts-quantized", Engine: VLLM, Severity: w,
		Behavior: "the per-expert entries exclude nothing (the MoE layer is matched by its …mlp.experts prefix); the quantized experts load as quantized", Source: "specs/vllm.md §1.3"},
	{Rule: "exclude.per-expert", Case: "experts-quantized", Engine: SGLang, Severity: w,
		Behavior: "the per-expert entries exclude nothing (FusedMoE is matched by its …mlp.experts prefix); the quantized experts load as quantized", Source: "specs/sglang.md §1.4"},

	// ---------------- census.excluded-quantized / unexcluded-unquantized ----------------
	{Rule: "census.excluded-quantized", Case: "lm_head", Engine: VLLM, Severity: e,
		Behavior: "ValueError: There is no module or parameter named '{tensor}' in {Class} (AutoWeightsLoader; #44081)", Source: "specs/vllm.md §1.3"},
	{Rule: "census.excluded-quantized", Case: "linear", Engine: VLLM, Severity: e,
		Behavior: "the layer is built with UnquantizedLinearMethod (BF16 weight only): the quantized codes are value-cast into the BF16 param (or fail its shape check) and the scale keys map to no parameter (skipped, or ValueError: There is no module or parameter named … where AutoWeightsLoader sees them)", Source: "specs/vllm.md §1.3"},
	{Rule: "census.excluded-quantized", Case: "experts", Engine: VLLM, Severity: e,
		Behavior: "the MoE layer is built unquantized (quant method None): the expert codes are value-cast into BF16 params and the scale keys are skipped", Source: "specs/vllm.md §1.3"},
	{Rule: "census.excluded-quantized", Case: "linear", Engine: SGLang, Severity: e,
		Behavior: "the layer is built unquantized: the quantized codes are value-cast into the BF16 param (copy_ never checks dtypes) and the scale keys are skipped (`Parameter … not found in params_dict` or silently)", Source: "specs/sglang.md §1.4"},
	{Rule: "census.excluded-quantized", Case: "experts", Engine: SGLang, Severity: e,
		Behavior: "the FusedMoE layer is built unquantized: the expert codes are value-cast and the scale keys are skipped", Source: "specs/sglang.md §1.4"},
	{Rule: "census.unexcluded-unquantized", Case: "linear", Engine: VLLM, Severity: e,
		Behavior: "the layer is built with the ModelOpt method: the BF16 weight is value-cast into the F8_E4M3/U8 param and the missing scales keep their init (FP8 −3.4e38, NVFP4 torch.empty); garbage, no error", Source: "specs/vllm.md §1.3"},
	{Rule: "census.unexcluded-unquantized", Case: "experts", Engine: VLLM, Severity: e,
		Behavior: "the MoE layer is built with the ModelOpt method: BF16 expert weights are value-cast into the FP8/U8 params and the expert scales stay at their init (FP8 1.0, NVFP4 torch.empty); garbage, no error", Source: "specs/vllm.md §1.3"},
	{Rule: "census.unexcluded-unquantized", Case: "linear", Engine: SGLang, Severity: e,
		Behavior: "the layer is built with the ModelOpt method: the BF16 weight is value-cast into the F8_E4M3/U8 param and the missing scales keep their init (FP8 −3.4e38, NVFP4 uninitialised); garbage, no error", Source: "specs/sglang.md §1.4"},
	{Rule: "census.unexcluded-unquantized", Case: "experts", Engine: SGLang, Severity: e,
		Behavior: "the FusedMoE layer is built with the ModelOpt method: BF16 expert weights are value-cast and the expert scales keep their init (FP8 −3.4e38, NVFP4 uninitialised); garbage, no error", Source: "specs/sglang.md §3.2"},

	// ---------------- census.bf16-only ----------------
	{Rule: "census.bf16-only", Case: "router", Engine: SGLang, Severity: e,
		Behavior: "routers are always built BF16 (quant_config=None): the quantized gate weight is value-cast and its scales are dropped", Source: "specs/sglang.md §3.5"},
	{Rule: "census.bf16-only", Case: "router", Engine: VLLM, Family: FamilyQwen3MoE, Severity: e,
		Behavior: "Qwen3-MoE creates mlp.gate with quant_config=None: the quantized gate weight is value-cast and its scales map to no parameter", Source: "specs/vllm.md §1.3"},
	{Rule: "census.bf16-only", Case: "shared-expert-gate", Engine: VLLM, Severity: e,
		Behavior: "mlp.shared_expert_gate is created with quant_config=None: the quantized weight is value-cast and its scales map to no parameter", Source: "specs/vllm.md §1.3"},
	{Rule: "census.bf16-only", Case: "shared-expert-gate", Engine: SGLang, Severity: e,
		Behavior: "shared_expert_gate is always built BF16 (quant_config=None): the quantized weight is value-cast and its scales are dropped", Source: "specs/sglang.md §3.5"},
	{Rule: "census.bf16-only", Case: "vision", Engine: VLLM, Severity: e,
		Behavior: "prefixes containing vision_tower/vision_model/visual are always unquantized: the codes are value-cast and the scales map to no parameter", Source: "specs/vllm.md §1.3"},
	{Rule: "census.bf16-only", Case: "qwen35-fp4-attention", Engine: SGLang, To: "0.5.16", Family: FamilyQwen35MoE, Severity: e,
		Behavior: "modelopt_fp4 forces quant_config=None on Qwen3.5 attention and linear attention (PR #18937): `Parameter …input_scale not found in params_dict`, then AssertionError in linear.py::weight_loader (param_data.shape == loaded_weight.shape) (#19587)", Source: "specs/sglang.md §0, §4.1"},

	// ---------------- layout ----------------
	{Rule: "layout.expert-order", Case: "proj-before-id", Engine: VLLM, Severity: e,
		Behavior: "experts.<proj>.<e> matches neither expert mapping (experts.<e>.<proj>.) and trips the fused-name substring test: scales silently dropped (IndexError in some loaders), garbage (PR #40888)", Source: "specs/vllm.md §4.1"},
	{Rule: "layout.expert-order", Case: "proj-before-id", Engine: SGLang, Severity: e,
		Behavior: "make_expert_params_mapping only rewrites experts.<e>.<proj>.: the keys are skipped (`Parameter … not found in params_dict` or silently) and the expert params stay uninitialised; garbage", Source: "specs/sglang.md §3.1"},
	{Rule: "layout.fused-experts", Case: "fused-scale-names", Engine: VLLM, From: "0.27", Severity: e,
		Behavior: "AttributeError: Layer {layer} has no parameter 'w13_weight_weight_scale' for checkpoint weight '{tensor}' (RoutedExperts.load_weights); qwen3_5.py's loader raises IndexError (chunk of a 0-/1-D tensor) or KeyError params_dict['…experts.w13_weight_weight_scale']", Source: "specs/vllm.md §4.1"},
	{Rule: "layout.fused-experts", Case: "fused-scale-names", Engine: VLLM, To: "0.20", Severity: e,
		Behavior: "the fused expert path maps only weights: chunk(…, dim=-2) on a 0-/1-D scale raises IndexError, or params_dict['…experts.w13_weight_weight_scale'] raises KeyError (forks drop them silently, #49638)", Source: "specs/vllm.md §4.1"},
	{Rule: "layout.fused-experts", Case: "fused-scale-names", Engine: SGLang, Severity: e,
		Behavior: "the fused 3-D experts path maps only weights, never scales: fused scale keys are skipped and the expert scales stay at their init; garbage", Source: "specs/sglang.md §3.1"},
	{Rule: "layout.fused-experts", Case: "fused-quantized-weights", Engine: VLLM, To: "0.20", Severity: e,
		Behavior: "FusedMoE.make_expert_params_mapping maps only per-expert names experts.<e>.<proj>.: the fused 3-D quantized tensors are not loaded and the expert weights stay uninitialised", Source: "specs/vllm.md §4.1"},
	{Rule: "layout.fused-experts", Case: "fused-quantized-weights", Engine: SGLang, Family: FamilyQwen3MoE, Severity: e,
		Behavior: "qwen3_moe.py maps per-expert names only: the fused 3-D tensors are skipped silently and the expert weights stay uninitialised", Source: "specs/sglang.md §3.6"},
	// R4: the catalogue says vLLM's FlashInfer TRTLLM FP8 MoE applies one
	// expert's weight_scale to all 256 experts; specs/vllm.md §4.4 finds no
	// code path that collapses per-expert weight scales and names the
	// mechanisms that produce the symptom. The spec's reading wins: this
	// fact (mechanism 1a) is what the R4 checkpoint reproduces.
	{Rule: "layout.fused-sticky", Case: "fused-plus-per-expert", Engine: VLLM, Family: FamilyQwen35MoE, Severity: e,
		Behavior: "Qwen3_5Model.load_weights sets is_fused_expert on the first experts.gate_up_proj/down_proj key and keeps it: every later per-expert key (e.g. experts.17.gate_proj.weight_scale) falls through to `Parameter … not found in params_dict, skip loading`; those expert scales stay 1.0 and every expert dequantizes with the wrong amplitude, silently", Source: "specs/vllm.md §4.1, §4.4 (1a)"},
	{Rule: "layout.fused-on-disk", Case: "nvfp4-scalar", Engine: SGLang, To: "0.5.15", Severity: e,
		Behavior: "weight_loader_v2 with loaded_shard_id=None writes the scalar into slot 0 only; slots 1..n of weight_scale_2/input_scale stay uninitialised (torch.empty) and enter max(): wrong global scales (fixed by PR #29151 in v0.5.16; Phi-4 NVFP4 GSM8K 0.005 → 0.945)", Source: "specs/sglang.md §0, §2.2"},
	{Rule: "layout.fused-on-disk", Case: "nvfp4-scalar", Engine: VLLM, To: "0.20", Severity: e,
		Behavior: "[old] a pre-fused scale with no shard id fills slot 0 only; the NVFP4 weight_scale_2/input_scale params are torch.empty, so the other slots are uninitialised memory entering max() (inferred from §2 [old] slot-0 loading and the §3 init)", Source: "specs/vllm.md §2, §3"},
	{Rule: "layout.fused-on-disk", Case: "multi-scale", Engine: SGLang, From: "0.5.16", Severity: e,
		Behavior: "ValueError: Expected scalar scale for fused-in-checkpoint merged-column checkpoint load, got shape ({shape}) (QKV: …fused-in-checkpoint QKV checkpoint load when loaded_shard_id is None, got shape …)", Source: "specs/sglang.md §2.2"},
	{Rule: "layout.fused-on-disk", Case: "multi-scale", Engine: SGLang, To: "0.5.15", Severity: e,
		Behavior: "bare AssertionError (PerTensorScaleParameter asserts loaded_weight.shape[0] == 1)", Source: "specs/sglang.md §2.2, §4.1"},
	{Rule: "layout.fused-on-disk", Case: "multi-scale", Engine: VLLM, Severity: e,
		Behavior: "bare AssertionError (PerTensorScaleParameter._load_into_shard_id: shape[0]==1, then param_data[shard].shape == loaded.shape)", Source: "specs/vllm.md §2"},

	// layout.gdn-packed-scale: Qwen3.5 linear_attn.in_proj_qkv per-tensor scales (FP8), by shape.
	// R5: the catalogue (after MO PR #1340) describes "N independent per-tensor
	// source scalars combining into one fused-shard parameter"; specs/sglang.md
	// §4.1 reads the loader the other way round (one 0-d scale that must
	// broadcast to the three slots of the tuple shard (0, 1, 2)), and only on
	// v0.5.10.x. The spec's reading wins.
	{Rule: "layout.gdn-packed-scale", Case: "0d", Engine: SGLang, From: "0.5.10", To: "0.5.10", Family: FamilyQwen35MoE, Severity: e,
		Behavior: "AssertionError: Unexpected scalar for tuple shard load: loaded_shard_id=(0, 1, 2), split_sizes=[1, 1, 1] (qwen3_5.py _make_packed_weight_loader; the load aborts)", Source: "specs/sglang.md §4.1"},
	{Rule: "layout.gdn-packed-scale", Case: "1", Engine: SGLang, From: "0.5.10", To: "0.5.10", Family: FamilyQwen35MoE, Severity: e,
		Behavior: "RuntimeError: split_with_sizes expects split_sizes to sum exactly to 1 (input tensor's size at dimension 0), but got split_sizes=[1, 1, 1]", Source: "specs/sglang.md §4.1, §4.2 (#23051)"},
	{Rule: "layout.gdn-packed-scale", Case: "3", Engine: SGLang, To: "0.5.9", Family: FamilyQwen35MoE, Severity: e,
		Behavior: "bare AssertionError (_load_into_shard_id asserts loaded_weight.shape[0] == 1)", Source: "specs/sglang.md §4.1"},
	{Rule: "layout.gdn-packed-scale", Case: "other", Engine: SGLang, To: "0.5.9", Family: FamilyQwen35MoE, Severity: e,
		Behavior: "bare AssertionError (_load_into_shard_id asserts loaded_weight.shape[0] == 1)", Source: "specs/sglang.md §4.1"},
	{Rule: "layout.gdn-packed-scale", Case: "other", Engine: SGLang, From: "0.5.10", Family: FamilyQwen35MoE, Severity: e,
		Behavior: "RuntimeError: split_with_sizes expects split_sizes to sum exactly to {numel} …, but got split_sizes=[1, 1, 1]", Source: "specs/sglang.md §4.1"},
	{Rule: "layout.gdn-packed-scale", Case: "nd1", Engine: SGLang, To: "0.5.9", Family: FamilyQwen35MoE, Severity: e,
		Behavior: "bare AssertionError (a [1,1] per-shard scale fails param_data[shard].shape == loaded.shape)", Source: "specs/sglang.md §4.1"},
	{Rule: "layout.gdn-packed-scale", Case: "nd1", Engine: SGLang, From: "0.5.10", To: "0.5.10", Family: FamilyQwen35MoE, Severity: e,
		Behavior: "RuntimeError: split_with_sizes expects split_sizes to sum exactly to 1 …, but got split_sizes=[1, 1, 1]", Source: "specs/sglang.md §4.1"},
	{Rule: "layout.gdn-packed-scale", Case: "3", Engine: VLLM, Family: FamilyQwen35MoE, Severity: e,
		Behavior: "AssertionError: assert loaded_weight.shape[0] == 1 (PerTensorScaleParameter._load_into_shard_id; the tuple shard (0,1,2) expects one scalar; PR #47396 open)", Source: "specs/vllm.md §2, specs/sglang.md §6 (vLLM 47396)"},
	{Rule: "layout.gdn-packed-scale", Case: "other", Engine: VLLM, Family: FamilyQwen35MoE, Severity: e,
		Behavior: "bare AssertionError (PerTensorScaleParameter._load_into_shard_id accepts [] or [1] only)", Source: "specs/vllm.md §2"},
	{Rule: "layout.gdn-packed-scale", Case: "nd1", Engine: VLLM, Family: FamilyQwen35MoE, Severity: e,
		Behavior: "bare AssertionError (a [1,1] scale fails param_data[shard].shape == loaded.shape)", Source: "specs/vllm.md §2"},

	// ---------------- names.unmapped ----------------
	{Rule: "names.unmapped", Case: "top-level", Engine: VLLM, Severity: e,
		Behavior: "ValueError: There is no module or parameter named '{tensor}' in {Class} (AutoWeightsLoader)", Source: "specs/vllm.md §6, §7 (#44081)"},
	{Rule: "names.unmapped", Case: "in-model", Engine: VLLM, Severity: w,
		Behavior: "the model's own load_weights skips keys that map to no parameter (silently or with a `… skip loading` warning)", Source: "specs/vllm.md §4.1, §6"},
	{Rule: "names.unmapped", Case: "in-model", Engine: SGLang, Family: FamilyQwen3MoE, Severity: w,
		Behavior: "qwen3_moe.py skips the key silently (`if name not in params_dict: continue`)", Source: "specs/sglang.md §3.6"},
	{Rule: "names.unmapped", Case: "in-model", Engine: SGLang, Family: FamilyQwen35MoE, Severity: w,
		Behavior: "qwen3_5.py logs `Parameter {name} not found in params_dict` (dense) or skips it silently (MoE, ignore_suffixes); names ending weight_scale_2 whose param is missing raise KeyError", Source: "specs/sglang.md §3.6"},
	{Rule: "names.unmapped", Case: "in-model", Engine: SGLang, Severity: w,
		Behavior: "the key maps to no parameter and is skipped (warning or silently, depending on the model)", Source: "specs/sglang.md §2.3"},
	{Rule: "names.unmapped", Case: "top-level", Engine: SGLang, Severity: w,
		Behavior: "the key maps to no parameter and is skipped (warning or silently, depending on the model)", Source: "specs/sglang.md §2.3"},

	// ---------------- shape.scale ----------------
	{Rule: "shape.scale", Case: "dense-nd1", Engine: VLLM, Severity: e,
		Behavior: "bare AssertionError (PerTensorScaleParameter._load_into_shard_id: only [] or [1] pass param_data[shard].shape == loaded.shape)", Source: "specs/vllm.md §2"},
	{Rule: "shape.scale", Case: "dense-nd1", Engine: SGLang, Severity: e,
		Behavior: "bare AssertionError (_load_into_shard_id: accepted per-shard scale shapes are [] and [1] only)", Source: "specs/sglang.md §2.2"},
	{Rule: "shape.scale", Case: "dense-multi", Engine: VLLM, Severity: e,
		Behavior: "bare AssertionError (a per-channel or [N] tensor fails shape[0]==1 / param_data[shard].shape == loaded.shape)", Source: "specs/vllm.md §2"},
	{Rule: "shape.scale", Case: "dense-multi", Engine: SGLang, Severity: e,
		Behavior: "bare AssertionError (_load_into_shard_id asserts loaded_weight.shape[0] == 1)", Source: "specs/sglang.md §2.2"},
	{Rule: "shape.scale", Case: "moe-1", Engine: VLLM, To: "0.20", Severity: e,
		Behavior: "RuntimeError: output with shape [] doesn't match the broadcast shape [1] (FusedMoE._load_per_tensor_weight_scale; #43297, fixed by PR #43362)", Source: "specs/vllm.md §4.2, §7"},
	{Rule: "shape.scale", Case: "moe-nd1", Engine: VLLM, To: "0.20", Severity: e,
		Behavior: "RuntimeError: output with shape [] doesn't match the broadcast shape (FusedMoE plain assignment of a non-0-d scale; #43297)", Source: "specs/vllm.md §4.2, §7"},
	{Rule: "shape.scale", Case: "moe-multi", Engine: VLLM, From: "0.27", Severity: e,
		Behavior: "RuntimeError: shape '[]' is invalid for input of size {numel} (RoutedExperts _to_scalar)", Source: "specs/vllm.md §4.2"},
	{Rule: "shape.scale", Case: "moe-multi", Engine: VLLM, To: "0.20", Severity: e,
		Behavior: "RuntimeError from the plain assignment of a [N] tensor into a 0-d slot (FusedMoE._load_per_tensor_weight_scale)", Source: "specs/vllm.md §4.2"},
	{Rule: "shape.scale", Case: "moe-multi", Engine: SGLang, Severity: e,
		Behavior: "RuntimeError: expand(torch.FloatTensor{[{numel}]}, size=[]): the number of sizes provided (0) must be greater or equal to the number of dimensions in the tensor (1)", Source: "specs/sglang.md §3.3"},

	// ---------------- values (per target) ----------------
	{Rule: "values.gate-up-scale2", Case: "differ", Engine: VLLM, Severity: e,
		Behavior: "process_weights_after_loading logs `w1_weight_scale_2 must match w3_weight_scale_2. Accuracy may be affected.` and uses column 0 (gate) for the whole w13 without requantization: the up half runs gate/up times too large (#54974)", Source: "specs/vllm.md §4.3"},
	{Rule: "values.gate-up-scale2", Case: "differ", Engine: SGLang, Severity: e,
		Behavior: "CUTLASS / CuteDSL use the gate scale for both halves (Marlin warns `w1_weight_scale_2 must match w3_weight_scale_2. Accuracy may be affected.` and takes column 0): the up half runs at the wrong amplitude", Source: "specs/sglang.md §3.4"},
	{Rule: "values.fused-scale2", Case: "differ", Engine: VLLM, Severity: e,
		Behavior: "logs `In NVFP4 linear, the global scale for input or weight are different for parallel layers (e.g. q_proj, k_proj, v_proj). This  will likely results in reduce accuracy...` and uses the max without requantization: shards below the max dequantize max/own times too large", Source: "specs/vllm.md §3"},
	{Rule: "values.fused-scale2", Case: "differ", Engine: SGLang, Severity: e,
		Behavior: "alpha = input_scale.max() * weight_scale_2.max() with no requantization: shards below the max dequantize too large, silently", Source: "specs/sglang.md §2.3"},
	{Rule: "values.fused-input-scale", Case: "dense", Engine: VLLM, Severity: w,
		Behavior: "input_scale := max over the shards (FP8 silently; NVFP4 with the `global scale … different for parallel layers` warning): coarser activation scale for the other shards", Source: "specs/vllm.md §2, §3"},
	{Rule: "values.fused-input-scale", Case: "dense", Engine: SGLang, Severity: w,
		Behavior: "input_scale := max over the shards: coarser activation scale for the other shards", Source: "specs/sglang.md §2.3"},
	{Rule: "values.fused-input-scale", Case: "expert", Engine: VLLM, Severity: w,
		Behavior: "gate and up input scales of an expert land in the same slot (last write wins, no check); FP8 then takes the max over experts", Source: "specs/vllm.md §4.2"},
	{Rule: "values.fused-input-scale", Case: "expert", Engine: SGLang, Severity: w,
		Behavior: "gate and up write the same input_scale row (last writer wins; equality not checked for ModelOpt)", Source: "specs/sglang.md §3.3"},
	{Rule: "values.fp8-shard-scales", Case: "differ", Engine: VLLM, Severity: w,
		Behavior: "requantize_with_max_scale dequantizes each shard with its own scale and requantizes with the max (MoE: per expert s_e = max(s_w1, s_w3)): legal, slightly lossy", Source: "specs/vllm.md §2, §4.2"},
	{Rule: "values.fp8-shard-scales", Case: "differ", Engine: SGLang, Severity: w,
		Behavior: "requantize_with_max_scale requantizes every logical slice to the max (MoE: max over w1/w3 per expert, then dequantize/requantize): legal, slightly lossy", Source: "specs/sglang.md §2.3, §3.4"},
	{Rule: "values.input-scale-spread", Case: "fp8", Engine: VLLM, Severity: w,
		Behavior: "process_fp8_input_tensor_strategy_moe takes the max over experts (INFO `Found input_scales that are not equal for fp8 MoE layer. Using the maximum across experts for each layer.`): every expert quantizes its activations with the largest scale", Source: "specs/vllm.md §4.2"},
	{Rule: "values.input-scale-spread", Case: "nvfp4", Engine: VLLM, Severity: w,
		Behavior: "FlashInfer backends take a13/a2 = max over all experts; VLLM_CUTLASS keeps them per expert: with a global max most experts use a far too coarse activation scale", Source: "specs/vllm.md §4.3"},
	{Rule: "values.input-scale-spread", Case: "fp8", Engine: SGLang, Severity: w,
		Behavior: "w13/w2 input scales collapse to the global max() over local experts (one scalar per layer)", Source: "specs/sglang.md §3.4"},
	{Rule: "values.input-scale-spread", Case: "nvfp4", Engine: SGLang, Severity: w,
		Behavior: "CUTLASS / TRT-LLM / CuteDSL take the global max() over experts; other backends keep them per expert", Source: "specs/sglang.md §3.4"},

	// ---------------- kv ----------------
	{Rule: "kv.dropped", Case: "dropped", Engine: VLLM, To: "0.20", Family: FamilyQwen3MoE, Severity: w,
		Behavior: "old qwen3_moe filters .k_scale/.v_scale through ignore_suffixes: the KV scales are dropped silently and the FP8 KV cache runs with scale 1.0 (#25047, fixed by PR #35656)", Source: "specs/vllm.md §5"},
	{Rule: "kv.dropped", Case: "dropped", Engine: VLLM, To: "0.27", Family: FamilyQwen35MoE, Severity: w,
		Behavior: "qwen3_5 never calls maybe_remap_kv_scale_name: k_proj.k_scale becomes qkv_proj.k_scale, which is not a parameter, and is skipped; the FP8 KV cache (auto from kv_cache_quant_algo) runs at 1.0 with `Using KV cache scaling factor 1.0 for fp8_e4m3. If this is unintended, verify that k/v_scale scaling factors are properly set in the checkpoint.` (#54623)", Source: "specs/vllm.md §5"},
	{Rule: "kv.dropped", Case: "dropped", Engine: VLLM, Severity: w,
		Behavior: "maybe_remap_kv_scale_name finds no parameter for the name: `Found k_scale in the checkpoint (e.g. {tensor}), but not found the expected name in the model (e.g. {expected}). k_scale is not loaded.`; the FP8 KV cache runs at 1.0", Source: "specs/vllm.md §5"},
	{Rule: "kv.dropped", Case: "dropped", Engine: SGLang, Family: FamilyQwen3MoE, Severity: w,
		Behavior: "Qwen3-MoE builds RadixAttention without quant_config: k_proj.k_scale/v_proj.v_scale are silently dropped and the FP8 KV cache runs at 1.0 (#39942)", Source: "specs/sglang.md §5"},
	{Rule: "kv.dropped", Case: "dropped", Engine: SGLang, To: "0.5.16", Family: FamilyQwen35MoE, Severity: w,
		Behavior: "Qwen3.5 RadixAttention has no quant_config before v0.5.17: the KV scales are dropped (dense: warning; MoE: silently) while the FP8 KV cache is still auto-selected, at scale 1.0", Source: "specs/sglang.md §5"},
	{Rule: "kv.dropped", Case: "dropped", Engine: SGLang, From: "0.5.17", Family: FamilyQwen35MoE, Severity: w,
		Behavior: "QWEN3_5_KV_SCALE_MAPPER only maps the substrings .self_attn.k_proj.k_scale / .self_attn.v_proj.v_scale; this name is not remapped and the MoE loader skips .k_scale/.v_scale silently (ignore_suffixes): the FP8 KV cache runs at 1.0", Source: "specs/sglang.md §5, §3.6"},
	{Rule: "kv.dropped", Case: "dropped", Engine: SGLang, Severity: w,
		Behavior: "maybe_remap_kv_scale_name finds no parameter: `Found k_scale in the checkpoint (e.g. {tensor}), but not found the expected name in the model (e.g. {expected}). k_scale is not loaded.`; the FP8 KV cache runs at 1.0", Source: "specs/sglang.md §5"},
	{Rule: "kv.pair", Case: "v-missing", Engine: VLLM, Severity: w,
		Behavior: "k > 0 and v absent: v_scale := max(k, v) = k (the k scale is used for values)", Source: "specs/vllm.md §5"},
	{Rule: "kv.pair", Case: "k-missing", Engine: VLLM, Severity: e,
		Behavior: "AssertionError (assert k_all_pos in BaseKVCacheMethod.process_weights_after_loading: k_scale is still −1.0)", Source: "specs/vllm.md §5"},
	{Rule: "kv.pair", Case: "v-missing", Engine: SGLang, Severity: w,
		Behavior: "k > 0, v ≤ 0: v_scale := max(k, v) = k", Source: "specs/sglang.md §5"},
	{Rule: "kv.pair", Case: "k-missing", Engine: SGLang, Severity: e,
		Behavior: "AssertionError (bare `assert layer.k_scale > 0.0`: k ≤ 0 < v)", Source: "specs/sglang.md §5"},
	{Rule: "kv.missing", Case: "absent", Engine: VLLM, Severity: w,
		Behavior: "k/v scales stay −1.0 and become 1.0 with the warning `Using KV cache scaling factor 1.0 for fp8_e4m3. If this is unintended, verify that k/v_scale scaling factors are properly set in the checkpoint.`", Source: "specs/vllm.md §5"},
	{Rule: "kv.missing", Case: "absent", Engine: SGLang, Severity: w,
		Behavior: "k/v scales stay ≤ 0 and become 1.0 silently", Source: "specs/sglang.md §5"},
	{Rule: "kv.unused", Case: "not-quantized", Engine: VLLM, Severity: i,
		Behavior: "--kv-cache-dtype auto keeps a BF16 KV cache without an FP8 KV algo in the config; checkpoint scales are ignored", Source: "specs/vllm.md §5"},
	{Rule: "kv.unused", Case: "not-quantized", Engine: SGLang, Severity: i,
		Behavior: "configure_kv_cache_dtype selects FP8 only when kv_cache_quant_algo is FP8; otherwise the KV scales are ignored", Source: "specs/sglang.md §1.3"},
	{Rule: "kv.shape", Case: "multi", Engine: VLLM, Severity: e,
		Behavior: "AssertionError: Attempted to load weight ({shape}) into parameter (torch.Size([])) (default_weight_loader; per-head KV scales are rejected)", Source: "specs/vllm.md §5"},
	{Rule: "kv.shape", Case: "multi", Engine: SGLang, Severity: e,
		Behavior: "AssertionError: Attempted to load weight ({shape}) into parameter (torch.Size([])) (default_weight_loader)", Source: "specs/sglang.md §5"},

	// ---------------- tp ----------------
	{Rule: "tp.divisible", Case: "split", Engine: VLLM, Severity: e,
		Behavior: "AssertionError: {dim} is not divisible by {tp} (divide() while building the parallel layer)", Source: "specs/sglang.md §2.1 (same divide() in vLLM), specs/vllm.md §4.3"},
	{Rule: "tp.divisible", Case: "split", Engine: SGLang, Severity: e,
		Behavior: "AssertionError: {dim} is not divisible by {tp} (divide(); MergedColumnParallelLinear asserts all(output_size % tp_size == 0))", Source: "specs/sglang.md §2.1"},
	{Rule: "tp.nvfp4-k", Case: "nvfp4", Engine: VLLM, Severity: e,
		Behavior: "ValueError: Unsupported model when in features size is not multiple of 16", Source: "specs/vllm.md §3"},
	{Rule: "tp.nvfp4-k", Case: "w4a16", Engine: VLLM, Severity: e,
		Behavior: "ValueError: Unsupported model: input feature size is not a multiple of 16.", Source: "specs/vllm.md §3"},
	{Rule: "tp.nvfp4-k", Case: "nvfp4", Engine: SGLang, Severity: e,
		Behavior: "ValueError: Unsupported model when in features size is not multiple of 16", Source: "specs/sglang.md §2.1"},
	{Rule: "tp.moe-intermediate", Case: "nvfp4", Engine: VLLM, Severity: e,
		Behavior: "the per-rank block-scale slice (I/tp)/16 is not whole: Marlin pads and crashes, the other NVFP4 MoE kernels read misaligned groups (#49949 / PR #49951)", Source: "specs/vllm.md §4.3"},
	{Rule: "tp.moe-intermediate", Case: "nvfp4", Engine: SGLang, Severity: e,
		Behavior: "_load_w13/_load_w2 narrow the block scales by (I/tp)/group_size, which is not whole: size-mismatch RuntimeError from copy_ or misaligned groups (inferred from §3.2 shapes [E, 2·I/tp, H/gs] / [E, H, (I/tp)/gs])", Source: "specs/sglang.md §3.2, §3.3"},
	{Rule: "tp.fp8-align", Case: "fp8", Engine: VLLM, Severity: w,
		Behavior: "CUTLASS prefers K % 16 == 0 and N % 16 == 0; old cutlass_scaled_mm asserted b.shape[0] % 16 == 0 and b.shape[1] % 16 == 0, newer versions fall back to Triton", Source: "specs/vllm.md §2"},
}
