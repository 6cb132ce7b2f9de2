// Package quant is ptqgate's model of ModelOpt quantizers: which quantizers a
// model has and what they are called, their numeric formats, and the recipes
// (presets, YAML recipe files, legacy quant_cfg dicts) that configure them.
//
// Names follow ModelOpt (specs/modelopt.md §1.2) so that recipes and reports
// mean the same thing to users of that toolkit:
//
//   - every nn.Linear has "<m>.input_quantizer" and "<m>.weight_quantizer";
//   - HF v5 fused experts have one shared "<experts>.gate_up_proj_input_quantizer"
//     and "<experts>.down_proj_input_quantizer" and per-expert
//     "<experts>.gate_up_proj_weight_quantizers.<e>" and
//     "<experts>.down_proj_weight_quantizers.<e>";
//   - HF attention modules of full-attention layers have "<attn>.k_bmm_quantizer"
//     and "<attn>.v_bmm_quantizer".
//
// Not modelled: the output quantizers of Linears (always disabled in
// ModelOpt's presets), the q/p bmm quantizers of attention (no preset enables
// them), SequentialQuantizers (list cfgs, W4A8) and quantizers of module classes
// other than the three above (Conv1d, Embedding, BatchNorm: the
// default-disabled list names them, and its entries then match nothing). MoE
// routers ("mlp.gate", a transformers v5
// TopKRouter) are not nn.Linear and have no quantizers, exactly as in ModelOpt.
//
// Recipes are applied the way ModelOpt's set_quantizer_by_cfg applies a
// quant_cfg list (specs/modelopt.md §1.3): entries in order, an entry with a
// cfg replaces the whole quantizer configuration, an entry without one only
// toggles enable. Patterns are fnmatch globs matched against the raw dotted
// name and against its singular-normalized form (ModelOpt #1340).
//
// Errors that must end ptqgate with an exit code other than 1 carry an
// ExitCode method (docs/architecture.md): UnsupportedError is exit 2.
package quant
