// Package backend defines the tensor operations the model forward and the
// calibration need, over opaque device tensors, so that one forward
// (ptqcore/model) runs on every device: the CPU backend (backend/cpu,
// always built) and the CUDA backend (backend/cuda, build tag cuda).
//
// Tensors are row-major matrices of float32 values. A model computing in
// bf16 or f16 stores values that are exactly representable in that type:
// every operation that produces values takes the model DType and rounds its
// outputs to it exactly where Hugging Face transformers rounds
// (specs/transformers.md §10), so f32 checkpoints compute in f32 and
// bf16/f16 checkpoints match the reference rounding points. The operation
// docs state the rounding points; a backend must follow them bit for bit
// where they say "rounded", and may only differ in the order of
// floating-point accumulation where they say "accumulated".
//
// The contract that makes expert execution modes agree bit for bit: every
// dot product (Linear, GroupedLinear, attention) accumulates its terms in
// float32 in ascending index order from zero, each product rounded to
// float32 before it is added (no fused multiply-add), and is then rounded
// to the model DType; the same output element therefore has the same value
// whichever operation or tiling computed it.
package backend

import (
	"errors"
	"fmt"
	"strings"
)

// DType is the floating-point type a model computes in.
type DType uint8

// Model dtypes.
const (
	F32  DType = iota // float32: outputs are float32 values (no extra rounding)
	BF16              // bfloat16: outputs rounded to bf16 (round to nearest even)
	F16               // float16: outputs rounded to f16 (round to nearest even)
)

// String returns the dtype as config.json spells it ("float32", "bfloat16", "float16").
func (d DType) String() string {
	switch d {
	case F32:
		return "float32"
	case BF16:
		return "bfloat16"
	case F16:
		return "float16"
	}
	return fmt.Sprintf("DType(%d)", uint8(d))
}

// ParseDType reads a dtype as config.json ("float32", "bfloat16",
// "float16", with or without a "torch." prefix) or a safetensors header
// ("F32", "BF16", "F16") spells it.
func ParseDType(s string) (DType, error) {
	switch strings.TrimPrefix(strings.ToLower(s), "torch.") {
	case "float32", "float", "f32", "fp32":
		return F32, nil
	case "bfloat16", "bf16":
		return BF16, nil
	case "float16", "half", "f16", "fp16":
		return F16, nil
	}
	return 0, fmt.Errorf("unsupported dtype %q (want float32, bfloat16 or float16)", s)
}

// Tensor is an opaque device matrix of Rows × Cols float32 values, row-major.
// Only the backend that made a tensor may use it.
type Tensor interface {
	Rows() int
	Cols() int
}

// NormKind selects the RMSNorm variant.
type NormKind uint8

// RMSNorm variants (specs/transformers.md §3, §4, §10.4).
const (
	// NormWeighted is Qwen3's x·w RMSNorm: y = round(w · round(x·rsqrt(mean(x²)+eps))),
	// the normalisation computed in float32.
	NormWeighted NormKind = iota
	// NormOffset is Qwen3.5's zero-centred RMSNorm: y = round(x·rsqrt(mean(x²)+eps)·(1+w)),
	// all in float32, rounded once.
	NormOffset
)

// ReductionKind selects the shape of an amax reduction.
type ReductionKind uint8

// Amax reductions (specs/modelopt.md §2.2).
const (
	PerTensor ReductionKind = iota // one value: max|x| over the whole tensor
	PerRow                         // one value per row (a weight's axis 0)
	PerColumn                      // one value per column (a weight's axis 1, an activation's last axis)
	PerBlock                       // one value per Block consecutive elements of each row, row-major
)

// Reduction describes an amax reduction.
type Reduction struct {
	Kind ReductionKind
	// Block is the block length along a row for PerBlock; Cols must be a
	// multiple of it.
	Block int
}

// Len returns the number of amax values the reduction gives for a rows ×
// cols tensor, or an error when the shape does not fit the reduction.
func (r Reduction) Len(rows, cols int) (int, error) {
	switch r.Kind {
	case PerTensor:
		return 1, nil
	case PerRow:
		return rows, nil
	case PerColumn:
		return cols, nil
	case PerBlock:
		if r.Block <= 0 {
			return 0, fmt.Errorf("amax reduction: block size %d must be positive", r.Block)
		}
		if cols%r.Block != 0 {
			return 0, fmt.Errorf("amax reduction: %d columns are not a multiple of the block size %d", cols, r.Block)
		}
		return rows * (cols / r.Block), nil
	}
	return 0, fmt.Errorf("amax reduction: unknown kind %d", r.Kind)
}

// RoPESpec describes a rotary position embedding with the rotate_half
// (split-half) convention over the first RotaryDim dimensions of each head.
type RoPESpec struct {
	Heads     int     // heads in the tensor (its Cols = Heads·HeadDim)
	HeadDim   int     // dimensions per head
	RotaryDim int     // rotated dimensions per head (even, ≤ HeadDim); the rest pass through
	Theta     float64 // rope_theta
	// Positions holds the position of every row (len = Rows).
	Positions []int32
}

// AttentionSpec describes causal grouped-query attention over a batch of
// independent sequences laid out one after the other along the rows.
type AttentionSpec struct {
	Heads   int     // query heads (q Cols = Heads·HeadDim)
	KVHeads int     // key/value heads; Heads must be a multiple of it
	HeadDim int     // dimensions per head
	Scale   float32 // multiplies q·k (head_dim^-0.5)
	// SeqLens are the lengths of the sequences, in row order; they sum to Rows.
	SeqLens []int
}

// RouterSpec describes softmax top-k routing.
type RouterSpec struct {
	TopK int
	// Normalize renormalises the selected probabilities to sum 1
	// (norm_topk_prob), in float32.
	Normalize bool
}

// Backend is a device that runs the forward. Methods that take a DType
// round their outputs to it as documented. Every method returns an error
// instead of panicking on mismatched shapes or device failures.
type Backend interface {
	// Name names the device ("cpu", "cuda:0 NVIDIA H100 …").
	Name() string

	// Alloc returns a zero-filled rows × cols tensor.
	Alloc(rows, cols int) (Tensor, error)
	// Upload returns a rows × cols tensor holding data (len rows·cols).
	// The backend may keep a reference to data instead of copying it (the
	// CPU backend does): the caller must not modify data while the tensor
	// is in use.
	Upload(rows, cols int, data []float32) (Tensor, error)
	// Download copies t into dst (len Rows·Cols).
	Download(t Tensor, dst []float32) error
	// View returns rows [row0, row1) of t, sharing its storage.
	View(t Tensor, row0, row1 int) (Tensor, error)
	// Free releases a tensor made by Alloc or Upload; views and nil are ignored.
	Free(t Tensor)
	// Close releases the device; no tensor may be used afterwards.
	Close() error

	// GatherRows sets dst[r] = src[idx[r]] for every row r of dst (len(idx) = dst.Rows()).
	GatherRows(dst, src Tensor, idx []int32) error
	// Linear computes dst = round(x·wᵀ + bias): x [M,K], w [N,K], dst [M,N],
	// bias nil or [1,N]. The dot product accumulates as the package doc
	// says; the bias is added in float32 before the rounding.
	Linear(dst, x, w, bias Tensor, dt DType) error
	// GroupedLinear is the segmented expert GEMM: the rows of x are
	// grouped by expert, expert e owning rows [offsets[e], offsets[e+1]);
	// w holds E stacked weights [E·N, K] (expert e = rows e·N … e·N+N-1);
	// dst [M,N] row r = round(x[r]·w_eᵀ) for the expert e owning r. It
	// returns, from the same pass over x, max|x| of each expert's rows
	// (0 for an expert without rows). len(offsets) = E+1, offsets[0] = 0,
	// offsets[E] = M, non-decreasing.
	GroupedLinear(dst, x, w Tensor, offsets []int, dt DType) ([]float32, error)
	// RMSNorm normalises each group of `group` consecutive elements of each
	// row of x (group = Cols for a whole-row norm, head_dim for q_norm/k_norm)
	// with weight w [1,group]: dst = the kind's formula, computed in float32.
	RMSNorm(dst, x, w Tensor, group int, eps float32, kind NormKind, dt DType) error
	// RoPE rotates x in place: per row and head, for i < RotaryDim/2,
	// with c = round(cos(pos·f_i)), s = round(sin(pos·f_i)) and
	// f_i = 1/theta^(2i/RotaryDim) (float32, as transformers computes it),
	// x' = round(round(x·c) + round(rotate_half(x)·s)) over the rotated dims.
	RoPE(x Tensor, spec RoPESpec, dt DType) error
	// Attention computes causal grouped-query attention per sequence
	// (eager order): scores = round(round(q·k)·Scale), causal mask,
	// p = round(softmax_f32(scores)), dst = round(Σ_j p_j·v_j). q [M, H·D],
	// k and v [M, KV·D], dst [M, H·D]; query head h uses kv head h/(H/KV).
	Attention(dst, q, k, v Tensor, spec AttentionSpec, dt DType) error
	// SiluMul computes dst = round(round(silu(g))·u) with g = gu[:, :I] and
	// u = gu[:, I:], gu [M, 2I], dst [M, I]; silu in float32.
	SiluMul(dst, gu Tensor, dt DType) error
	// Add computes dst = round(a + b) elementwise (dst may alias a or b).
	Add(dst, a, b Tensor, dt DType) error
	// ScaleRows multiplies row r of x in place by s[r]: x = round(x·s[r]).
	ScaleRows(x Tensor, s []float32, dt DType) error
	// ScatterAddRows adds row r of src into row idx[r] of dst:
	// dst[idx[r]] = round(dst[idx[r]] + src[r]); the additions into one
	// destination row happen in ascending r (the eager index_add_ order).
	ScatterAddRows(dst, src Tensor, idx []int32, dt DType) error
	// RouterTopK takes router logits [T, E] (already rounded to the model
	// dtype), computes p = softmax_f32(logits) over all E experts, selects
	// the TopK largest per row (descending, ties to the lower index),
	// renormalises them in float32 if Normalize, and returns the indices
	// [T·TopK] and the weights rounded to dt [T·TopK].
	RouterTopK(logits Tensor, spec RouterSpec, dt DType) ([]int32, []float32, error)
	// Amax reduces max|x| as r says. A NaN anywhere in a reduced group
	// makes that value NaN; ±Inf gives +Inf.
	Amax(x Tensor, r Reduction) ([]float32, error)
}

// ErrShape is wrapped by errors about mismatched tensor shapes.
var ErrShape = errors.New("tensor shape mismatch")

// ShapeError returns an error wrapping ErrShape for operation op.
func ShapeError(op, format string, args ...any) error {
	return fmt.Errorf("%s: %w: %s", op, ErrShape, fmt.Sprintf(format, args...))
}
