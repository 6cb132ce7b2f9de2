package backend

// Optional backend extensions for hybrid-attention models (Qwen3.5-MoE,
// specs/transformers.md §4). A backend that runs such a model implements
// them besides Backend; the model checks with a type assertion and fails
// with a clear error on a backend without them, so backends that only run
// Qwen3-MoE need none of this. Rounding follows the package contract: dt
// is the model dtype and "round" means rounding to it (a no-op for F32).

// GatedDeltaSpec describes the Gated DeltaNet recurrence of one
// linear-attention layer over a batch of independent sequences laid out
// one after the other along the rows.
type GatedDeltaSpec struct {
	// KeyHeads and ValueHeads are linear_num_key_heads and
	// linear_num_value_heads; ValueHeads is a multiple of KeyHeads and value
	// head h uses key head h / (ValueHeads/KeyHeads).
	KeyHeads, ValueHeads int
	// KeyDim and ValueDim are linear_key_head_dim and linear_value_head_dim.
	KeyDim, ValueDim int
	// SeqLens are the sequence lengths in row order; they sum to Rows. The
	// recurrent state starts at zero for every sequence.
	SeqLens []int
}

// QKVCols returns the channels of the convolved projection:
// 2·KeyHeads·KeyDim + ValueHeads·ValueDim.
func (s GatedDeltaSpec) QKVCols() int { return 2*s.KeyHeads*s.KeyDim + s.ValueHeads*s.ValueDim }

// LinearAttention holds the operations of a Gated DeltaNet layer
// (Qwen3_5MoeGatedDeltaNet) that are not plain Linears.
type LinearAttention interface {
	// CausalConv1DSilu is the depthwise causal convolution along time with
	// silu, per sequence: x [M, C], w [C, K] (conv1d.weight [C, 1, K]),
	// dst [M, C]; c[t,ch] = Σ_{j<K} w[ch,j]·x[t-K+1+j, ch] with zeros
	// before the sequence start (w[ch,K-1] multiplies the current row),
	// accumulated in float32 in ascending j, rounded; dst = round(silu(c))
	// with silu in float32.
	CausalConv1DSilu(dst, x, w Tensor, seqLens []int, dt DType) error
	// GatedDeltaRule runs the gated delta rule. qkv [M, spec.QKVCols()] is
	// the convolved projection, columns [q | k | v] (q and k KeyHeads×KeyDim,
	// v ValueHeads×ValueDim); a and b [M, ValueHeads] are the in_proj_a and
	// in_proj_b outputs; aLog and dtBias [1, ValueHeads] are A_log and
	// dt_bias. Per row: β = round(sigmoid(b)); g = -exp(aLog)·softplus(a +
	// dtBias) in float32 (softplus(x) = x above 20). The core is float32:
	// q and k are L2-normalised per key head (x·rsqrt(Σx² + 1e-6)), q is
	// scaled by KeyDim^-0.5, and per sequence and value head the state
	// S [KeyDim × ValueDim] starts at 0 and for each row t:
	// S = S·exp(g_t); δ = (v_t − Sᵀk_t)·β_t; S = S + k_t δᵀ; o_t = Sᵀq_t.
	// dst [M, ValueHeads·ValueDim] = round(o). The chunked form transformers
	// runs for a prompt equals this at float32 rounding level; sums are
	// "accumulated" in the package's sense.
	GatedDeltaRule(dst, qkv, a, b, aLog, dtBias Tensor, spec GatedDeltaSpec, dt DType) error
	// GatedRMSNorm is Qwen3_5MoeRMSNormGated over groups of `group`
	// consecutive columns (value heads): n = x·rsqrt(mean(x²)+eps) in
	// float32, dst = round(round(w·round(n))·silu(z)) with silu(z) in
	// float32 (not rounded). x, z and dst [M, C], w [1, group]; dst may
	// alias x.
	GatedRMSNorm(dst, x, z, w Tensor, group int, eps float32, dt DType) error
}

// SigmoidGate holds the sigmoid output gates of Qwen3.5-MoE: the gated
// attention output and the shared expert's shared_expert_gate.
type SigmoidGate interface {
	// SigmoidMul computes dst = round(x·round(sigmoid(gate))) elementwise,
	// sigmoid in float32. gate is [M, C] like x, or [M, 1] broadcast over
	// the row. dst may alias x.
	SigmoidMul(dst, x, gate Tensor, dt DType) error
}
