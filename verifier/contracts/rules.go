package contracts

import (
	"sort"

	"github.com/ptqgate/ptqgate/reports"
)

// Scope says whether a rule is evaluated once (target "any") or once per
// target engine version.
type Scope string

// Rule scopes.
const (
	ScopeAny    Scope = "any"
	ScopeTarget Scope = "per target"
)

// Rule is one verifier check with a stable ID. Severity is the usual
// severity of its findings; a rule whose facts give per-case severities
// (e.g. a KV scale dropped at 1.0 is a warning unless it overflows) lists
// the most severe one and says so in Doc.
type Rule struct {
	ID       string
	Severity reports.Severity
	Scope    Scope
	// Title is a one-line summary.
	Title string
	// Doc says what is checked, what the engines do, and where the
	// catalogue and the specs disagree.
	Doc string
	// Sources are the spec sections the rule is derived from.
	Sources []string
	// Catalogue lists the specs/anchors.md §3 entries the rule catches.
	Catalogue []string
}

// rules is the rule table. Keep IDs stable: they are part of reports, JUnit
// case names and users' CI filters.
var rules = []Rule{
	// ---- config ----
	{ID: "config.json", Severity: reports.SeverityError, Scope: ScopeAny,
		Title:   "config.json is missing, not JSON, or lacks the keys that size the model",
		Doc:     "Both engines need config.json. Without the layer count, expert count and dimensions the census cannot know what must exist; the checks that need a missing key are skipped and named.",
		Sources: []string{"INTERFACES.md Checkpoint directories", "specs/transformers.md §7"}},
	{ID: "config.missing", Severity: reports.SeverityError, Scope: ScopeAny,
		Title:   "quantized tensors but no quantization config",
		Doc:     "Neither config.json quantization_config nor hf_quant_config.json exists, yet the checkpoint holds F8_E4M3/U8 weights: both engines then build an unquantized model and value-cast the codes (garbage, no error). Without quantized tensors it is an info (nothing to verify).",
		Sources: []string{"specs/vllm.md §1.1", "specs/sglang.md §1.1"}},
	{ID: "config.read", Severity: reports.SeverityInfo, Scope: ScopeTarget,
		Title:   "which quantization config the target reads",
		Doc:     "config.json quantization_config wins over hf_quant_config.json in both engines (SGLang falls through to the file for modelopt_mixed when the flat dict lacks quantized_layers or both KV keys). The finding names the file, layout and the quant_algo, KV algo and exclusion list the target resolves.",
		Sources: []string{"specs/vllm.md §1.1", "specs/sglang.md §1.1"}},
	{ID: "config.conflict", Severity: reports.SeverityWarning, Scope: ScopeAny,
		Title:   "config.json quantization_config and hf_quant_config.json disagree",
		Doc:     "The engines read config.json and ignore the file (other consumers, e.g. TensorRT-LLM, read the file), so a disagreement on quant_algo, kv_cache_quant_algo, group_size or the exclusions is a trap for whoever reads the other one.",
		Sources: []string{"specs/modelopt.md §4.7", "specs/vllm.md §1.1", "specs/sglang.md §1.1"}},
	{ID: "config.invalid", Severity: reports.SeverityError, Scope: ScopeTarget,
		Title:   "the quantization config is malformed for the target's parser",
		Doc:     "Type and presence checks each engine performs while parsing (quantization not a dict, missing quant_algo, kv_cache_quant_algo not a string, exclusions not a list, group_size not an integer, NVFP4 required keys, several hf_quant_config files, empty quantized_layers): the finding quotes the exception.",
		Sources: []string{"specs/vllm.md §1.2", "specs/sglang.md §1.1", "specs/sglang.md §1.3"}},
	{ID: "config.quant-algo", Severity: reports.SeverityError, Scope: ScopeTarget,
		Title:   "the target cannot load the checkpoint's quant_algo",
		Doc:     "vLLM upper-cases the algo and accepts FP8, FP8_PER_CHANNEL_PER_TOKEN, FP8_PB_WO, NVFP4, W4A16_NVFP4, MXFP8, MIXED_PRECISION; from the nested hf_quant_config.json only the FP8 family and NVFP4 (anything else: Unknown ModelOpt quant algo). SGLang is case-sensitive and accepts FP8 and NVFP4/NVFP4_AWQ through the ModelOpt classes (W4A16_NVFP4 raises) and MIXED_PRECISION only with an NVFP4-family layer. An error when the target was named with --target, an info (and the target is skipped) when it was only a default target.",
		Sources: []string{"specs/vllm.md §1.1", "specs/vllm.md §1.2", "specs/sglang.md §1.2"}},
	{ID: "config.group-size", Severity: reports.SeverityError, Scope: ScopeTarget,
		Title:   "NVFP4 group_size is not 16",
		Doc:     "Every NVFP4 kernel of both engines assumes 16-element blocks (SGLang Marlin raises); a missing group_size defaults to 16 where the parser allows it.",
		Sources: []string{"specs/vllm.md §1.2", "specs/sglang.md §1.3"}},
	{ID: "config.kv-algo", Severity: reports.SeverityWarning, Scope: ScopeTarget,
		Title:   "the KV-cache algo is unknown or is not read by the target",
		Doc:     "kv_cache_quant_algo must be FP8, NVFP4 or null. vLLM derives the flat (config.json) KV algo only from kv_cache_scheme and ignores a flat kv_cache_quant_algo key, so such a checkpoint's KV scales are not used by default.",
		Sources: []string{"specs/vllm.md §1.2", "specs/vllm.md §5", "specs/sglang.md §1.3"}},
	{ID: "config.act-dtype", Severity: reports.SeverityError, Scope: ScopeTarget,
		Title:   "config.json dtype is an activation dtype the target's quant method rejects",
		Doc:     "vLLM's ModelOpt FP8 and MIXED methods support bf16/fp16 activations only, NVFP4 also fp8: a float32 config dtype is refused at engine start unless overridden.",
		Sources: []string{"specs/vllm.md §1.1"}},

	// ---- exclusions ----
	{ID: "exclude.partial-fused", Severity: reports.SeverityError, Scope: ScopeTarget,
		Title:   "some but not all shards of a fused layer are excluded",
		Doc:     "vLLM's is_layer_skipped expands a fused layer (qkv_proj, gate_up_proj, in_proj_qkvz, in_proj_ba) into its shard names and SGLang's does the same through packed_modules_mapping: shards must agree or the engine raises. SGLang before v0.5.11 used a plain substring test, so an in_proj_qkv entry also excluded in_proj_qkvz.",
		Sources: []string{"specs/vllm.md §1.3", "specs/sglang.md §1.4"}},
	{ID: "exclude.per-expert", Severity: reports.SeverityError, Scope: ScopeTarget,
		Title:     "exclusion entries name individual routed experts",
		Doc:       "Both engines decide the precision of a whole MoE layer from its prefix (…mlp.experts): entries naming experts.<e>.<proj> exclude nothing. An error when those experts are stored unquantized (the engine builds the layer quantized and value-casts their BF16 weights), a warning otherwise.",
		Sources:   []string{"specs/vllm.md §1.3", "specs/sglang.md §1.4", "specs/anchors.md §3 R24"},
		Catalogue: []string{"R24"}},

	// ---- census ----
	{ID: "census.file", Severity: reports.SeverityError, Scope: ScopeAny,
		Title:   "a safetensors file is missing, truncated or corrupt",
		Doc:     "The container is validated strictly (header, offsets tiling the data, sizes); a bad file is reported and its tensors are not examined.",
		Sources: []string{"specs/transformers.md §8"}},
	{ID: "census.index-shard", Severity: reports.SeverityError, Scope: ScopeAny,
		Title:     "model.safetensors.index.json and the shards disagree",
		Doc:       "Every shard the index names must exist and hold exactly the tensors listed for it. A listed tensor that no shard holds is silently absent at load (quantized models skip the engines' integrity tracking).",
		Sources:   []string{"INTERFACES.md Checkpoint directories", "specs/anchors.md §3 R13", "specs/vllm.md §6"},
		Catalogue: []string{"R13"}},
	{ID: "census.missing-tensor", Severity: reports.SeverityError, Scope: ScopeAny,
		Title:     "a quantized module lacks a tensor its format requires",
		Doc:       "FP8: weight, weight_scale, input_scale. NVFP4: weight (U8), weight_scale (F8_E4M3 blocks), weight_scale_2, input_scale. W4A16_NVFP4: no input_scale. Neither engine checks completeness for quantized models: missing scales stay at their init (vLLM dense FP8 −3.4e38, MoE FP8 1.0, NVFP4 torch.empty; SGLang FP8 −3.4e38, NVFP4 input_scale 1.0 on main and uninitialised before).",
		Sources:   []string{"specs/modelopt.md §4.2", "specs/vllm.md §2", "specs/vllm.md §4.2", "specs/vllm.md §6", "specs/sglang.md §2.3", "specs/sglang.md §3.4"},
		Catalogue: []string{"R1", "R12"}},
	{ID: "census.dtype", Severity: reports.SeverityError, Scope: ScopeAny,
		Title:   "a quantization tensor has the wrong dtype",
		Doc:     "Neither engine checks dtypes: copy_ casts by value, so a U8 block scale, an F4-typed NVFP4 weight or a BF16 weight in an F8 slot loads as garbage. Required: FP8 weight F8_E4M3; NVFP4 weight U8 and weight_scale F8_E4M3; per-tensor scales F32.",
		Sources: []string{"specs/vllm.md §3", "specs/vllm.md §8", "specs/sglang.md §2.1"}},
	{ID: "census.shape", Severity: reports.SeverityError, Scope: ScopeAny,
		Title:   "a weight or block scale has the wrong shape",
		Doc:     "FP8 [out, in]; NVFP4 weight [out, in/2] and block scale [out, in/16], with out and in from config.json. Shape mismatches raise at load (vLLM dense AssertionError, MoE RuntimeError from copy_; SGLang AssertionError or RuntimeError).",
		Sources: []string{"specs/modelopt.md §4.2", "specs/modelopt.md §4.5", "specs/vllm.md §6", "specs/sglang.md §2.1", "specs/sglang.md §3.3"}},
	{ID: "census.format-mismatch", Severity: reports.SeverityError, Scope: ScopeAny,
		Title:   "a module is stored in another format than the config says",
		Doc:     "E.g. U8 (NVFP4) weights under an FP8 quant_algo, or a MIXED_PRECISION layer stored in another algo than quantized_layers lists: the engine builds the config's parameters and value-casts the stored bytes.",
		Sources: []string{"specs/modelopt.md §4.7", "specs/modelopt.md §7", "specs/vllm.md §1.2"}},
	{ID: "census.expert-missing", Severity: reports.SeverityError, Scope: ScopeAny,
		Title:   "an expert of a MoE layer is absent",
		Doc:     "Every expert 0..E-1 (E from config.json, text_config for VLMs) of every MoE layer (mlp_only_layers / decoder_sparse_step for Qwen3-MoE; every layer for Qwen3.5) must have gate, up and down weights. A missing expert's parameters stay uninitialised in both engines.",
		Sources: []string{"specs/transformers.md §3", "specs/transformers.md §4", "specs/vllm.md §4.1", "specs/sglang.md §3.1"}},
	{ID: "census.expert-range", Severity: reports.SeverityError, Scope: ScopeAny,
		Title:   "an expert id is outside 0..E-1",
		Doc:     "Expert ids in names are logical ids 0..num_experts-1; an id outside the mapping is never matched (1-based ids leave expert 0 empty and drop the last).",
		Sources: []string{"specs/vllm.md §4.1", "specs/vllm.md §4.4", "specs/sglang.md §3.1"}},
	{ID: "census.excluded-quantized", Severity: reports.SeverityError, Scope: ScopeTarget,
		Title:   "a module the target excludes is stored quantized",
		Doc:     "The target's exclusion matching (vLLM: exact shard names, legacy substring, fnmatch, foo* splitting; SGLang: regex fullmatch of the prefix or any component, plus dot-boundary shard matching) leaves the module unquantized, but the checkpoint stores it quantized: extra scale keys raise (vLLM AutoWeightsLoader: There is no module or parameter named …) or are skipped, and the codes are value-cast.",
		Sources: []string{"specs/vllm.md §1.3", "specs/sglang.md §1.4", "specs/vllm.md §7 (#44081)"}},
	{ID: "census.unexcluded-unquantized", Severity: reports.SeverityError, Scope: ScopeTarget,
		Title:     "a module the target quantizes is stored unquantized",
		Doc:       "The target builds the module with the quant method (not excluded) but the checkpoint stores BF16: the BF16 weight is value-cast into the F8/U8 parameter and the scales stay at their init. Garbage, no error.",
		Sources:   []string{"specs/vllm.md §1.3", "specs/sglang.md §1.4", "specs/anchors.md §3 R2"},
		Catalogue: []string{"R2"}},
	{ID: "census.bf16-only", Severity: reports.SeverityError, Scope: ScopeTarget,
		Title:   "a module the target always builds unquantized is stored quantized",
		Doc:     "Routers (SGLang always; vLLM's Qwen3-MoE), shared_expert_gate (both), vision towers (vLLM) and, for Qwen3.5 under modelopt_fp4 on SGLang v0.5.9–v0.5.16, attention and linear attention are built without a quant method whatever the exclusions say.",
		Sources: []string{"specs/vllm.md §1.3", "specs/sglang.md §0", "specs/sglang.md §3.5", "specs/sglang.md §4.1"}},
	{ID: "census.experts-unquantized", Severity: reports.SeverityWarning, Scope: ScopeAny,
		Title:     "a quantized checkpoint keeps a MoE layer's routed experts unquantized",
		Doc:       "Legitimate only if intended: the expert bulk is most of a MoE's bytes, and the catalogue's silent failures (experts skipped by the quantizer or the exporter) look exactly like this.",
		Sources:   []string{"specs/anchors.md §3 R3, R6, R7", "specs/modelopt.md §5"},
		Catalogue: []string{"R3", "R6", "R7"}},

	// ---- layout ----
	{ID: "layout.expert-order", Severity: reports.SeverityError, Scope: ScopeTarget,
		Title:     "expert keys are named experts.<proj>.<e> instead of experts.<e>.<proj>",
		Doc:       "Both loaders map experts.<e>.<proj>. only; ModelOpt ≥0.43 un-BMM naming matches neither mapping and trips vLLM's fused-name substring test: scales are dropped.",
		Sources:   []string{"specs/vllm.md §4.1", "specs/vllm.md §7 (PR #40888)", "specs/sglang.md §3.1"},
		Catalogue: []string{"R17"}},
	{ID: "layout.fused-experts", Severity: reports.SeverityError, Scope: ScopeTarget,
		Title:     "quantized experts use the fused 3-D layout or fused scale names",
		Doc:       "The fused experts.gate_up_proj / down_proj path maps weights only: fused scale keys (experts.gate_up_proj_weight_scale, …) crash or are dropped, and quantized fused weights are unmapped by per-expert-only loaders.",
		Sources:   []string{"specs/vllm.md §4.1", "specs/vllm.md §7 (#49638)", "specs/sglang.md §3.1"},
		Catalogue: []string{"R16"}},
	{ID: "layout.fused-sticky", Severity: reports.SeverityError, Scope: ScopeTarget,
		Title:     "Qwen3.5: a fused expert tensor makes vLLM skip every later per-expert key",
		Doc:       "vLLM qwen3_5.py keeps is_fused_expert set after the first experts.gate_up_proj/down_proj key, so later per-expert scale keys are skipped and the expert scales stay 1.0 (specs/vllm.md §4.4 mechanism 1a). The catalogue (R4) blames the FlashInfer TRTLLM FP8 MoE backend for applying one expert's scale to all experts; specs/vllm.md §4.4 reads the source and finds no path that collapses per-expert weight scales, so ptqgate follows the spec and checks the mechanisms that do produce the symptom.",
		Sources:   []string{"specs/vllm.md §4.1", "specs/vllm.md §4.4"},
		Catalogue: []string{"R4"}},
	{ID: "layout.fused-on-disk", Severity: reports.SeverityError, Scope: ScopeTarget,
		Title:     "a dense fused layer is stored pre-fused with per-tensor scales",
		Doc:       "A scalar scale of a pre-fused qkv_proj / gate_up_proj is written into slot 0 only by SGLang ≤ v0.5.15 and vLLM [old]; the other slots keep their init. FP8 survives (−3.4e38 init, max is right); NVFP4 weight_scale_2 / input_scale slots are uninitialised memory entering max().",
		Sources:   []string{"specs/sglang.md §0 (#29151)", "specs/sglang.md §2.2", "specs/vllm.md §2", "specs/vllm.md §3"},
		Catalogue: []string{"R18"}},
	{ID: "layout.gdn-packed-scale", Severity: reports.SeverityError, Scope: ScopeTarget,
		Title:     "Qwen3.5 linear_attn.in_proj_qkv per-tensor scales do not fit the target's packed loader",
		Doc:       "SGLang maps in_proj_qkv onto in_proj_qkvz with the tuple shard (0,1,2). v0.5.10.x refuses a 0-d scale (AssertionError: Unexpected scalar for tuple shard load) and a [1] scale (split_with_sizes RuntimeError); v0.5.9 and vLLM assert shape[0]==1 on a [3] vector. The catalogue (R5) words it as N scalars combining into one shard; specs/sglang.md §4.1 shows the opposite direction (one scalar that must broadcast to three slots), which ptqgate follows.",
		Sources:   []string{"specs/sglang.md §4.1", "specs/vllm.md §2", "specs/sglang.md §6 (vLLM 47396)"},
		Catalogue: []string{"R5", "R19"}},

	// ---- names ----
	{ID: "names.unmapped", Severity: reports.SeverityError, Scope: ScopeTarget,
		Title:     "a checkpoint key maps to no loader parameter",
		Doc:       "Keys outside the model family's name grammar (modules, projections and parameter suffixes the loader maps). vLLM raises for keys reaching AutoWeightsLoader directly (lm_head.*) and skips the rest; SGLang skips (Qwen3-MoE silently, Qwen3.5 with a warning or KeyError). An error when the key carries weights or scales that then never reach the engine, a warning for other extras.",
		Sources:   []string{"specs/vllm.md §4.1", "specs/vllm.md §6", "specs/sglang.md §3.6", "specs/anchors.md §3 R23"},
		Catalogue: []string{"R23"}},
	{ID: "shape.scale", Severity: reports.SeverityError, Scope: ScopeTarget,
		Title:   "a per-tensor scale has a shape the target's loader rejects",
		Doc:     "Dense per-tensor scales must be [] or [1] in both engines. Per-expert MoE scales: vLLM [new] reshapes to 0-d ([] and [1] pass), vLLM [old] rejects [1] (#43297); SGLang accepts anything that broadcasts to 0-d. Emit scales as 0-d.",
		Sources: []string{"specs/vllm.md §2", "specs/vllm.md §4.2", "specs/sglang.md §2.2", "specs/sglang.md §3.3"}},

	// ---- values ----
	{ID: "values.nonfinite", Severity: reports.SeverityError, Scope: ScopeAny,
		Title:     "a scale is NaN or infinite",
		Doc:       "Neither engine validates scale values (except the KV positivity assert); an Inf input scale becomes 1/Inf or Inf·x and the per-layer max spreads it to every expert.",
		Sources:   []string{"specs/vllm.md §6", "specs/sglang.md §2.3", "specs/anchors.md §3 R14"},
		Catalogue: []string{"R14"}},
	{ID: "values.nonpositive", Severity: reports.SeverityError, Scope: ScopeAny,
		Title:     "a scale is zero or negative",
		Doc:       "A zero input scale gives 1/0 = inf global scales and NaN tokens for prompts that reach the expert; a zero KV scale trips the engines' positivity assert.",
		Sources:   []string{"specs/vllm.md §4.3", "specs/vllm.md §5", "specs/anchors.md §3 R10, R15"},
		Catalogue: []string{"R10", "R15"}},
	{ID: "values.block-scale", Severity: reports.SeverityError, Scope: ScopeAny,
		Title:   "an NVFP4 E4M3 block scale is zero, negative or NaN",
		Doc:     "ModelOpt replaces zero block scales by 1 and clamps to [2^-9, 448]; a zero, negative or NaN (0x7F/0xFF) block scale zeroes, flips or poisons 16 weights.",
		Sources: []string{"specs/modelopt.md §4.3", "specs/modelopt.md §7"}},
	{ID: "values.gate-up-scale2", Severity: reports.SeverityError, Scope: ScopeTarget,
		Title:     "NVFP4 expert gate and up weight_scale_2 differ",
		Doc:       "Both engines fuse gate and up into w13 with one global scale and do not requantize the block scales: the up half runs at gate/up times the right amplitude.",
		Sources:   []string{"specs/vllm.md §4.3", "specs/sglang.md §3.4", "specs/anchors.md §3 R20"},
		Catalogue: []string{"R20"}},
	{ID: "values.fused-scale2", Severity: reports.SeverityError, Scope: ScopeTarget,
		Title:   "NVFP4 weight_scale_2 differs across the shards of a dense fused layer",
		Doc:     "q/k/v, gate/up, in_proj_qkv/in_proj_z and in_proj_b/in_proj_a must carry bit-identical weight_scale_2: the engines use the max without requantization.",
		Sources: []string{"specs/vllm.md §3", "specs/sglang.md §2.3"}},
	{ID: "values.fused-input-scale", Severity: reports.SeverityWarning, Scope: ScopeTarget,
		Title:   "input scales differ across shards that share one input",
		Doc:     "Fused dense shards (and an expert's gate/up) see the same input: the engines keep the max (or, for FP8 MoE gate/up, the last one written); only precision is lost.",
		Sources: []string{"specs/vllm.md §2", "specs/vllm.md §3", "specs/vllm.md §4.2", "specs/sglang.md §3.3"}},
	{ID: "values.fp8-shard-scales", Severity: reports.SeverityWarning, Scope: ScopeTarget,
		Title:   "unequal FP8 per-shard weight scales (the engine requantizes)",
		Doc:     "FP8 shards of a fused layer (and an expert's gate/up) with different weight_scale are dequantized and requantized to the max at load: legal, slightly lossy. ModelOpt exports q/k/v with different FP8 weight scales by design.",
		Sources: []string{"specs/vllm.md §2", "specs/vllm.md §4.2", "specs/sglang.md §2.3", "specs/modelopt.md §4.4"}},
	{ID: "values.input-scale-spread", Severity: reports.SeverityWarning, Scope: ScopeTarget,
		Title:   "wide input-scale spread across the experts of a layer",
		Doc:     "Per-tensor backends collapse expert input scales to one per layer (the max); max/median above 10 means most experts quantize their activations with a scale far too coarse (or one expert is an outlier).",
		Sources: []string{"specs/vllm.md §4.2", "specs/vllm.md §4.4", "specs/sglang.md §3.4", "specs/anchors.md §1b"}},
	{ID: "values.unit-scales", Severity: reports.SeverityWarning, Scope: ScopeAny,
		Title:   "every weight or input scale is exactly 1.0",
		Doc:     "Scales that are all exactly 1.0 are what an uncalibrated or constant-amax export writes; legitimate only for recipes that ask for it.",
		Sources: []string{"specs/anchors.md §3 R11", "specs/modelopt.md §1.4"}},

	// ---- KV cache ----
	{ID: "kv.dropped", Severity: reports.SeverityError, Scope: ScopeTarget,
		Title:     "the target drops the checkpoint's KV scales and runs the FP8 KV cache at 1.0",
		Doc:       "The KV scale names are not in the target's remap table for this model family and version (vLLM Qwen3.5 ≤ 0.27, old Qwen3-MoE; SGLang Qwen3-MoE, Qwen3.5 ≤ 0.5.16 and non-k_proj names after). A warning (range risk only) unless the checkpoint's own scales exceed 1.0 (amax > 448), which overflows FP8 at scale 1.0: then an error.",
		Sources:   []string{"specs/vllm.md §5", "specs/sglang.md §5", "INTERFACES.md Verify"},
		Catalogue: []string{"R21", "R22"}},
	{ID: "kv.unit", Severity: reports.SeverityWarning, Scope: ScopeAny,
		Title:     "every KV scale is exactly 1.0",
		Doc:       "ModelOpt before PR #1012 clamped KV scales to max(amax/448, 1.0), and uncalibrated KV quantizers export 1.0: the checkpoint carries no KV range information.",
		Sources:   []string{"specs/sglang.md §5", "specs/anchors.md §3 R11", "INTERFACES.md Verify"},
		Catalogue: []string{"R11"}},
	{ID: "kv.pair", Severity: reports.SeverityError, Scope: ScopeTarget,
		Title:   "a full-attention layer has a k_scale without v_scale or the reverse",
		Doc:     "k present, v absent: both engines copy k to v (warning). v present, k absent: both engines assert k > 0 (error).",
		Sources: []string{"specs/vllm.md §5", "specs/sglang.md §5"}},
	{ID: "kv.missing", Severity: reports.SeverityWarning, Scope: ScopeTarget,
		Title:   "the FP8 KV cache is enabled but some full-attention layers carry no KV scales",
		Doc:     "Layers without scales run at 1.0 (vLLM warns, SGLang silently). ModelOpt's default fp8_cast KV mode writes no scales at all.",
		Sources: []string{"specs/vllm.md §5", "specs/sglang.md §5", "specs/modelopt.md §1.4"}},
	{ID: "kv.unused", Severity: reports.SeverityInfo, Scope: ScopeTarget,
		Title:   "the checkpoint has KV scales but the target does not quantize the KV cache by default",
		Doc:     "Without an FP8 KV algo in the config the engines keep a BF16 KV cache and ignore the scales (unless the user passes --kv-cache-dtype fp8).",
		Sources: []string{"specs/vllm.md §5", "specs/sglang.md §1.3"}},
	{ID: "kv.shape", Severity: reports.SeverityError, Scope: ScopeTarget,
		Title:   "a KV scale is not a single element",
		Doc:     "Per-head KV scales are rejected by both loaders (default_weight_loader fills single-element tensors only).",
		Sources: []string{"specs/vllm.md §5", "specs/sglang.md §5"}},

	// ---- tensor parallelism ----
	{ID: "tp.divisible", Severity: reports.SeverityError, Scope: ScopeTarget,
		Title:   "a dimension split by --tp is not divisible by it",
		Doc:     "Column-parallel layers split their output rows, row-parallel layers their input columns, experts their intermediate size, attention its query heads.",
		Sources: []string{"specs/sglang.md §2.1", "specs/vllm.md §4.3"}},
	{ID: "tp.nvfp4-k", Severity: reports.SeverityError, Scope: ScopeTarget,
		Title:   "an NVFP4 dense layer's input features per rank are not a multiple of 16",
		Doc:     "in/tp for row-parallel layers (o_proj, down_proj, out_proj), in for the others.",
		Sources: []string{"specs/vllm.md §3", "specs/sglang.md §2.1"}},
	{ID: "tp.moe-intermediate", Severity: reports.SeverityError, Scope: ScopeTarget,
		Title:     "NVFP4 MoE intermediate size per rank is not a multiple of 16",
		Doc:       "The per-rank block-scale slice is (I/tp)/16 groups: Nemotron-3-Nano I=1856 at TP8 gives 232 and crashes Marlin.",
		Sources:   []string{"specs/vllm.md §4.3", "specs/anchors.md §3 R27"},
		Catalogue: []string{"R27"}},
	{ID: "tp.fp8-align", Severity: reports.SeverityWarning, Scope: ScopeTarget,
		Title:   "FP8 per-tensor GEMM dims per rank are not multiples of 16",
		Doc:     "CUTLASS prefers K and N multiples of 16; old vLLM asserted it, newer versions fall back to Triton.",
		Sources: []string{"specs/vllm.md §2"}},

	// ---- reference ----
	{ID: "reference.outlier", Severity: reports.SeverityWarning, Scope: ScopeAny,
		Title:   "a module's dequantization error is far above its layer's median",
		Doc:     "With --reference: relative error ‖W−Ŵ‖/‖W‖ more than 3× the median of the same projection in the same layer (and above 0.05) points to a scale that does not belong to the weight.",
		Sources: []string{"specs/modelopt.md §4.3"}},
	{ID: "reference.mismatch", Severity: reports.SeverityError, Scope: ScopeAny,
		Title:   "a dequantized weight does not reproduce the reference",
		Doc:     "With --reference: relative error above 0.5 (FP8 is ~3%, NVFP4 ~10%), or a reference tensor whose shape differs: the stored codes or scales are wrong.",
		Sources: []string{"specs/modelopt.md §4.3"}},
	{ID: "reference.missing", Severity: reports.SeverityInfo, Scope: ScopeAny,
		Title:   "a quantized module has no counterpart in the reference checkpoint",
		Doc:     "Looked up under the same name, the other text prefix (model. ↔ model.language_model.) and the fused 3-D experts layout.",
		Sources: []string{"specs/transformers.md §6"}},

	// ---- ptqgate_report.json ----
	{ID: "report.missing-tensor", Severity: reports.SeverityError, Scope: ScopeAny,
		Title:     "ptqgate_report.json says a quantizer was enabled but its tensors are missing",
		Doc:       "Cross-check of an export's own report: every enabled weight quantizer needs a quantized weight and weight_scale, every enabled input quantizer an input_scale, every enabled KV quantizer its k/v scale (constant-amax 448 quantizers export none).",
		Sources:   []string{"INTERFACES.md Fault injection (format-gate)", "specs/modelopt.md §4.2", "specs/modelopt.md §4.5"},
		Catalogue: []string{"R1", "R2"}},
	{ID: "report.unreadable", Severity: reports.SeverityError, Scope: ScopeAny,
		Title:   "ptqgate_report.json is present but is not a readable ptqgate report",
		Doc:     "The file is read with the reports package; a corrupt copy hides what the export claims.",
		Sources: []string{"INTERFACES.md Report model"}},
}

var rulesByID = func() map[string]*Rule {
	m := make(map[string]*Rule, len(rules))
	for i := range rules {
		m[rules[i].ID] = &rules[i]
	}
	return m
}()

// Rules returns the rule table sorted by ID.
func Rules() []Rule {
	out := append([]Rule(nil), rules...)
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// LookupRule returns the rule with the given ID.
func LookupRule(id string) (Rule, bool) {
	r, ok := rulesByID[id]
	if !ok {
		return Rule{}, false
	}
	return *r, true
}
