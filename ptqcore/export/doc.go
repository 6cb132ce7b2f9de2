// Package export writes a calibrated model as a ModelOpt unified Hugging
// Face checkpoint (specs/modelopt.md §4) that vLLM and SGLang load: FP8
// per-tensor, NVFP4 (W4A4), W4A16 NVFP4, FP8 KV cache and MIXED_PRECISION.
//
// An export folder holds config.json (the source's, with
// quantization_config and the output dtype), hf_quant_config.json (producer
// "modelopt", the name the engines key on), the safetensors (sharded with
// an index above a size limit; __metadata__ {"format": "pt", "producer":
// "ptqgate <version>"}), copies of the tokenizer, generation and processor
// files, and ptqgate_report.json (the report without its volatile run
// section).
//
// # Layout
//
// Fused experts (gate_up [E, 2I, H], down [E, H, I] in memory) are always
// split into <experts>.<e>.{gate_proj,up_proj,down_proj}.* for every
// expert, routed or not; gate and up share the gate_up weight scale and all
// experts of a layer share its input scales. Linears that read the same
// input (q/k/v, gate/up) get ModelOpt's scale unification for NVFP4. Every
// unquantized module the engines could quantize (routers, shared-expert
// gates, lm_head, excluded attention, vision towers, MTP) is listed in
// exclude_modules / ignore with prefix wildcards that match no quantized
// layer under vLLM's and SGLang's matching rules (SummarizeExclude).
//
// # Numerics
//
// The scales and codes are ModelOpt's, bit for bit, as torch computes them
// on CUDA where the toolkit runs (testdata/golden.json, made by
// testdata/torch_golden.py on an H100/H200, pins both devices):
//
//   - FP8 weight: weight_scale = float32(amax/448) from the raw amax; codes
//     e4m3(round_dt(w / round_dt(weight_scale))) with dt the model's dtype
//     (torch's CUDA kernel casts the 0-d float32 scale to the weight's
//     dtype; its CPU kernel does not, which changes a few codes).
//   - FP8 input and KV scales: export_amax·float32(1/448), KV from the raw
//     amax with no clamp (torch on CUDA divides a tensor by a Python number
//     as a multiplication by its float32 reciprocal).
//   - NVFP4: weight_scale_2 = amax·float32(1/2688); per block of 16
//     block_amax / float32(6·weight_scale_2), 0 → 1, clamped to [2^-9, 448],
//     E4M3; codes by ModelOpt's _cast_fp4 of w / float32(e4m3(s)·weight_scale_2),
//     even element in the low nibble; K zero-padded to a multiple of 16;
//     input_scale = export_amax·float32(1/2688).
//
// # Safety
//
// Export writes into a temporary folder beside the destination and renames
// it into place only when complete (replacing an existing folder only with
// Force, and only then); the source checkpoint is only read; the same
// input gives byte-identical files. After writing, the folder is read back:
// every enabled quantizer must have produced its tensors (the format-gate
// fault, which reproduces the toolkit's PR-state export that skipped fused
// experts, fails this check), and the dequantization error of every
// quantized module against the model's weights goes into the report.
package export
