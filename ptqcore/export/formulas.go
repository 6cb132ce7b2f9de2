package export

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"

	"github.com/ptqgate/ptqgate/ptqcore/numerics"
	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
)

// Format constants of the export formulas (specs/modelopt.md §4.3).
const (
	// E4M3Max is the largest finite float8_e4m3fn value (ModelOpt's maxbound for FP8).
	E4M3Max = 448
	// E2M1Max is the largest E2M1 magnitude (ModelOpt's maxbound for NVFP4).
	E2M1Max = 6
	// NVFP4Block is the number of input elements sharing one E4M3 block scale.
	NVFP4Block = 16
	// NVFP4Global is 6·448, the divisor of NVFP4's weight_scale_2 and input_scale.
	NVFP4Global = E2M1Max * E4M3Max
	// MinBlockScale is the smallest E4M3 block scale (the subnormal 2^-9):
	// block scales are clamped to it (ModelOpt #1382) so none underflows to 0.
	MinBlockScale = 1.0 / 512
	// E4M3NaNAbove is the magnitude above which torch's float8_e4m3fn cast
	// gives NaN (464 is the tie that still rounds to 448).
	E4M3NaNAbove = 464
	// float32Tiny is torch.finfo(torch.float32).tiny, the smallest normal float32.
	float32Tiny = 0x1p-126
)

// roundTo rounds a float32 to the given floating-point dtype (BF16 and F16
// round to nearest even; F32 is unchanged).
func roundTo(dt safetensors.DType, v float32) float32 {
	switch dt {
	case safetensors.BF16:
		return numerics.RoundBF16(v)
	case safetensors.F16:
		return numerics.RoundF16(v)
	}
	return v
}

// FP8WeightScale is ModelOpt's FP8 weight_scale: the raw weight amax
// (converted to float32) divided by 448, computed in float64 and stored as a
// float32 0-d tensor (torch.tensor(amax.item() / maxbound)). The raw amax is
// used, not export_amax, so 0 stays 0.
func FP8WeightScale(amax float32) float32 { return float32(float64(amax) / E4M3Max) }

// OverflowError says an FP8 weight quotient exceeds what float8_e4m3fn can
// hold (|v| > 464 casts to NaN in torch): the weight amax is smaller than
// the weight's own maximum. It names the tensor and maps to exit 1.
type OverflowError struct {
	Tensor   string
	Index    int
	Value    float32
	Quotient float32
	Scale    float32
}

func (e *OverflowError) Error() string {
	return fmt.Sprintf("tensor %q: element %d (%g) divided by weight_scale %g is %g, beyond float8_e4m3fn's range (torch casts |v| > %d to NaN): the weight amax is below the weight's maximum",
		e.Tensor, e.Index, e.Value, e.Scale, e.Quotient, E4M3NaNAbove)
}

// ExitCode makes an overflowing FP8 weight a failed check (exit 1).
func (e *OverflowError) ExitCode() int { return 1 }

// QuantizeFP8 casts a weight to float8_e4m3fn bytes the way ModelOpt's export
// does: q = e4m3(w / weight_scale) with the quotient computed in the model's
// dtype dt. For BF16 and F16 that is torch's CUDA kernel for a reduced-float
// tensor divided by a 0-d float32 tensor on the same device (the exporter
// moves the scale to the weight's device): the scale is first cast to dt,
// the quotient is computed in float32 and rounded to dt, and the result is
// cast to E4M3 with round-to-nearest-even. For F32 the quotient is one
// float32 division. (torch's CPU kernel keeps the scale in float32 instead;
// testdata/golden.json records both, and the bytes differ for a fraction of
// the codes: see TestFP8GoldenTorch.)
//
// w holds values already representable in dt (the model's in-memory
// weights). A quotient beyond ±464, which torch would turn into NaN, is an
// *OverflowError naming tensor. A zero scale (an all-zero weight) gives
// zero codes instead of torch's 0/0 = NaN.
func QuantizeFP8(tensor string, w []float32, scale float32, dt safetensors.DType) ([]byte, error) {
	out := make([]byte, len(w))
	if scale == 0 {
		return out, nil
	}
	s := roundTo(dt, scale)
	firstBad := make([]int, 0, 1)
	var mu sync.Mutex
	parallelChunks(len(w), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			q := roundTo(dt, float32(w[i]/s))
			if q > E4M3NaNAbove || q < -E4M3NaNAbove || q != q {
				mu.Lock()
				firstBad = append(firstBad, i)
				mu.Unlock()
				return
			}
			out[i] = numerics.F32ToE4M3(q)
		}
	})
	if len(firstBad) > 0 {
		i := slices.Min(firstBad)
		return nil, &OverflowError{Tensor: tensor, Index: i, Value: w[i], Quotient: roundTo(dt, float32(w[i]/s)), Scale: scale}
	}
	return out, nil
}

// parallelMin is the element count below which work stays on one goroutine.
const parallelMin = 1 << 16

// parallelChunks calls fn on disjoint [lo, hi) ranges covering [0, n),
// concurrently on up to GOMAXPROCS goroutines for large n. Each element is
// computed independently, so the result does not depend on the split.
func parallelChunks(n int, fn func(lo, hi int)) {
	workers := min(runtime.GOMAXPROCS(0), n/parallelMin)
	if workers <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	chunk := (n + workers - 1) / workers
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}

// DequantizeFP8 returns e4m3(q)·scale as float32 values.
func DequantizeFP8(q []byte, scale float32) []float32 {
	out := make([]float32, len(q))
	for i, b := range q {
		out[i] = float32(numerics.E4M3ToF32(b) * scale)
	}
	return out
}

// Reciprocals of the Python-constant divisors. ModelOpt divides CUDA
// tensors by Python numbers (amax.float() / 448, / (6.0 * 448.0)); torch's
// CUDA kernel computes x / c for a CPU scalar c as x · float32(1/c), which
// differs from a true division in the last bit for some x (testdata/golden.json
// records both devices). ptqgate reproduces the CUDA export.
var (
	inv448  = float32(1) / float32(E4M3Max)
	inv2688 = float32(1) / float32(NVFP4Global)
)

// NVFP4WeightScale2 is NVFP4's weight_scale_2: float32(amax) / (6·448) as
// torch computes it on CUDA, float32(amax) · float32(1/2688).
func NVFP4WeightScale2(amax float32) float32 { return float32(amax * inv2688) }

// PaddedCols returns cols rounded up to a multiple of the NVFP4 block (16):
// ModelOpt zero-pads the input dimension before blocking.
func PaddedCols(cols int) int { return (cols + NVFP4Block - 1) / NVFP4Block * NVFP4Block }

// NVFP4BlockScales returns the E4M3 block scales of a row-major
// [rows, cols] weight, [rows, PaddedCols(cols)/16] bytes: per block of 16
// inputs (zero-padded), s = block_amax / float32(6·scale2) in float32, s = 1
// where s is 0, clamped to [2^-9, 448], cast to E4M3 with round to nearest
// even (NVFP4QTensor.get_weights_scaling_factor, specs/modelopt.md §4.3).
func NVFP4BlockScales(w []float32, rows, cols int, scale2 float32) []byte {
	nb := PaddedCols(cols) / NVFP4Block
	out := make([]byte, rows*nb)
	denom := float32(E2M1Max * scale2)
	parallelChunks(rows*cols, func(lo, hi int) {
		for r := lo / max(cols, 1); r < rows && r*cols < hi; r++ {
			if r*cols < lo {
				continue
			}
			row := w[r*cols : (r+1)*cols]
			for b := 0; b < nb; b++ {
				out[r*nb+b] = blockScale(row[b*NVFP4Block:min((b+1)*NVFP4Block, cols)], denom)
			}
		}
	})
	return out
}

// blockScale is one E4M3 block scale: block_amax / denom, 1 for a zero
// block, clamped to [2^-9, 448].
func blockScale(block []float32, denom float32) byte {
	var bmax float32
	for _, v := range block {
		bmax = max(bmax, float32(math.Abs(float64(v))))
	}
	s := float32(bmax / denom)
	if s == 0 {
		s = 1
	}
	return numerics.F32ToE4M3(min(max(s, MinBlockScale), E4M3Max))
}

// QuantizeNVFP4 quantizes a row-major [rows, cols] weight to NVFP4 as
// ModelOpt's NVFP4QTensor.quantize does (specs/modelopt.md §4.3), with
// scale2 the weight_scale_2 of NVFP4WeightScale2 and the block scales of
// NVFP4BlockScales: cols is zero-padded to a multiple of 16 (kp =
// PaddedCols(cols)); scaled = w / float32(e4m3(block scale)·scale2) in
// float32; the E2M1 code is ModelOpt's _cast_fp4 (numerics.F32ToE2M1);
// codes are packed two per byte with the even element in the low nibble.
// It returns the packed weight, [rows, kp/2] bytes, and the block scales.
func QuantizeNVFP4(w []float32, rows, cols int, scale2 float32) (packed, blockScales []byte) {
	kp := PaddedCols(cols)
	nb := kp / NVFP4Block
	blockScales = NVFP4BlockScales(w, rows, cols, scale2)
	packed = make([]byte, rows*kp/2)
	parallelChunks(rows*cols, func(lo, hi int) {
		var block [NVFP4Block]float32
		for r := lo / max(cols, 1); r < rows && r*cols < hi; r++ {
			if r*cols < lo {
				continue
			}
			row := w[r*cols : (r+1)*cols]
			for b := 0; b < nb; b++ {
				n := copy(block[:], row[b*NVFP4Block:min((b+1)*NVFP4Block, cols)])
				clear(block[n:])
				d := float32(numerics.E4M3ToF32(blockScales[r*nb+b]) * scale2)
				dst := packed[r*kp/2+b*NVFP4Block/2:]
				for j := 0; j < NVFP4Block; j += 2 {
					dst[j/2] = e2m1(float32(block[j]/d)) | e2m1(float32(block[j+1]/d))<<4
				}
			}
		}
	})
	return packed, blockScales
}

// E2M1 boundaries as float32 bit patterns (non-negative floats order like
// their bits): the code of |x| counts the boundaries below it.
var (
	e2m1Bounds = [7]uint32{0x3E800000, 0x3F400000, 0x3FA00000, 0x3FE00000, 0x40200000, 0x40600000, 0x40A00000} // 0.25 0.75 1.25 1.75 2.5 3.5 5
	e2m1Ties   = [3]uint32{0x3F400000, 0x3FE00000, 0x40600000}                                                 // 0.75 1.75 3.5 round up (to even)
)

// e2m1 is numerics.F32ToE2M1 (ModelOpt's _cast_fp4) without branches on
// the value: the comparisons are done on the bit patterns with borrow
// arithmetic. TestE2M1Fast checks it against numerics.F32ToE2M1.
func e2m1(x float32) uint8 {
	u := math.Float32bits(x)
	a := u & 0x7FFFFFFF
	if a > 0x7F800000 { // NaN
		return 0
	}
	var code uint32
	for _, b := range e2m1Bounds {
		code += (b - a) >> 31 // 1 when b < a
	}
	for _, t := range e2m1Ties {
		code += ((a ^ t) - 1) >> 31 // 1 when a == t
	}
	sign := (u >> 31) & ((0 - a) >> 31) // negative and not ±0
	return uint8(code | sign<<3)
}

// DequantizeNVFP4 returns E2M1[code]·float32(e4m3(block scale))·scale2 for
// the first cols of each padded row: the inverse of QuantizeNVFP4 up to
// rounding, as a row-major [rows, cols] slice.
func DequantizeNVFP4(packed, blockScales []byte, rows, cols int, scale2 float32) []float32 {
	kp := PaddedCols(cols)
	nb := kp / NVFP4Block
	out := make([]float32, rows*cols)
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			b := packed[r*kp/2+c/2]
			code := b & 0xF
			if c%2 == 1 {
				code = b >> 4
			}
			s := float32(numerics.E4M3ToF32(blockScales[r*nb+c/NVFP4Block]) * scale2)
			out[r*cols+c] = float32(numerics.E2M1ToF32(code) * s)
		}
	}
	return out
}

// ExportAmax is ModelOpt's TensorQuantizer.export_amax for a per-tensor
// amax: 0 and NaN become maxbound, then the value is clamped to
// [float32 tiny, float32 max].
func ExportAmax(amax float32, maxbound float32) float32 {
	if amax == 0 || amax != amax {
		amax = maxbound
	}
	return min(max(amax, float32Tiny), math.MaxFloat32)
}

// FP8InputScale is an FP8 input_scale: export_amax / 448 in float32 (as
// torch computes it on CUDA, · float32(1/448)), so an amax of 0 or NaN
// gives 1.0.
func FP8InputScale(amax float32) float32 { return float32(ExportAmax(amax, E4M3Max) * inv448) }

// NVFP4InputScale is an NVFP4 input_scale: export_amax / (6·448) in
// float32 (on CUDA, · float32(1/2688)), so an amax of 0 or NaN gives 1/448.
func NVFP4InputScale(amax float32) float32 {
	return float32(ExportAmax(amax, E2M1Max) * inv2688)
}

// KVScale is a KV-cache k_scale or v_scale: the raw bmm-quantizer amax
// divided by 448 in float32 (on CUDA, · float32(1/448)), with no clamp
// (ModelOpt since #1012).
func KVScale(amax float32) float32 { return float32(amax * inv448) }

// RelativeError returns ‖a−b‖/‖a‖ (Frobenius norms, accumulated in float64)
// and max|a−b|. With ‖a‖ = 0 the relative error is 0 when b equals a, else
// +Inf.
func RelativeError(a, b []float32) (rel, maxAbs float64) {
	var acc errAcc
	acc.add(a, b)
	r := acc.result("")
	return float64(r.RelativeError), float64(r.MaxAbsError)
}
