// Package numerics holds the low-precision codecs of ptqgate with torch's
// exact rounding rules (specs/transformers.md §9, specs/modelopt.md §4.3):
// BF16 and F16 (round to nearest even), FP8 E4M3 (float8_e4m3fn) and E5M2,
// the E8M0 scale format (float8_e8m0fnu), FP4 E2M1 and its nibble packing,
// and the decoding of raw little-endian tensor bytes to float32.
//
// The casts are torch's casts, not quantizers:
//   - F32ToE4M3 does not clamp. It rounds to nearest even over the E4M3 grid;
//     |x| > 464 (the tie above 448 goes to 448) and ±Inf become NaN (0x7F,
//     or 0xFF for negative inputs), as x.to(torch.float8_e4m3fn) does.
//     Quantizers must clamp to ±448 themselves before casting, as
//     transformers' Fp8Quantize and ModelOpt's FP8 paths do; the project's
//     quantizers do that with F32ToE4M3Sat (clamp, then cast). ModelOpt's
//     FP8 weight export divides by amax/448 without clamping, so a weight
//     whose scaled value exceeds 464 becomes NaN there; the exporter decides
//     which of the two it reproduces.
//   - F32ToE5M2 overflows to ±Inf (61440 and above), like torch.
//   - F32ToE8M0 drops the sign and rounds the exponent up iff the float32
//     significand is ≥ 1.5; 0 gives 0x00 (2^-127), Inf and NaN give 0xFF.
//   - F32ToE2M1 is ModelOpt's _cast_fp4: round half to even on the code grid,
//     saturating at ±6 (no clamp needed), with negative values that round to
//     zero encoded as code 8 (−0).
//   - F32ToBF16 and F32ToF16 round to nearest even; NaN becomes 0x7FC0
//     (BF16) or a quiet NaN with the input's sign (F16).
package numerics

import (
	"encoding/binary"
	"fmt"
	"math"
)

// BF16ToF32 widens a bfloat16 bit pattern to float32 (exact).
func BF16ToF32(b uint16) float32 { return math.Float32frombits(uint32(b) << 16) }

// F32ToBF16 rounds a float32 to bfloat16, round to nearest even; NaN
// becomes 0x7FC0.
func F32ToBF16(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7FFFFFFF > 0x7F800000 {
		return 0x7FC0
	}
	u += 0x7FFF + (u>>16)&1
	return uint16(u >> 16)
}

// RoundBF16 rounds a float32 to the nearest bfloat16 value.
func RoundBF16(f float32) float32 { return BF16ToF32(F32ToBF16(f)) }

// F16ToF32 widens an IEEE half-precision bit pattern to float32 (exact).
func F16ToF32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1F
	mant := uint32(h & 0x3FF)
	switch {
	case exp == 0x1F:
		return math.Float32frombits(sign | 0x7F800000 | mant<<13)
	case exp != 0:
		return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
	case mant == 0:
		return math.Float32frombits(sign)
	}
	// subnormal: mant · 2^-24, exact in float32
	v := float32(mant) * (1.0 / (1 << 24))
	return math.Float32frombits(sign | math.Float32bits(v))
}

// F32ToF16 rounds a float32 to IEEE half precision, round to nearest even,
// overflowing to ±Inf; NaN becomes a quiet NaN (0x7E00 with the sign).
func F32ToF16(f float32) uint16 {
	u := math.Float32bits(f)
	sign := uint16(u>>16) & 0x8000
	exp := int(u>>23) & 0xFF
	mant := u & 0x7FFFFF
	if exp == 0xFF {
		if mant != 0 {
			return sign | 0x7E00
		}
		return sign | 0x7C00
	}
	if exp == 0 {
		return sign // float32 subnormals are far below half's smallest subnormal
	}
	e := exp - 112 // half exponent field
	if e >= 0x1F {
		return sign | 0x7C00
	}
	if e <= 0 {
		// half subnormal: value in units of 2^-24 is full · 2^-(126-exp)
		shift := uint(126 - exp)
		if shift > 24 {
			return sign
		}
		full := mant | 0x800000
		q := full >> shift
		rem := full & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || (rem == half && q&1 == 1) {
			q++
		}
		return sign | uint16(q)
	}
	m := mant >> 13
	rem := mant & 0x1FFF
	if rem > 0x1000 || (rem == 0x1000 && m&1 == 1) {
		m++
		if m == 0x400 {
			m = 0
			e++
			if e >= 0x1F {
				return sign | 0x7C00
			}
		}
	}
	return sign | uint16(e)<<10 | uint16(m)
}

// RoundF16 rounds a float32 to the nearest half-precision value.
func RoundF16(f float32) float32 { return F16ToF32(F32ToF16(f)) }

var (
	e4m3Table [256]float32
	e5m2Table [256]float32
	e8m0Table [256]float32
	e4m3fnuz  [256]float32
	e5m2fnuz  [256]float32
)

// e2m1Table is the FP4 decode table (modelopt.md §4.3).
var e2m1Table = [16]float32{0, 0.5, 1, 1.5, 2, 3, 4, 6, float32(math.Copysign(0, -1)), -0.5, -1, -1.5, -2, -3, -4, -6}

func init() {
	nan := float32(math.NaN())
	for i := 0; i < 256; i++ {
		b := uint8(i)
		sign := float32(1)
		if b&0x80 != 0 {
			sign = -1
		}
		e, m := int(b>>3)&0xF, float64(b&7)
		switch {
		case b&0x7F == 0x7F:
			e4m3Table[i] = nan
		case e == 0:
			e4m3Table[i] = sign * float32(math.Ldexp(m/8, -6))
		default:
			e4m3Table[i] = sign * float32(math.Ldexp(1+m/8, e-7))
		}
		e5m2Table[i] = F16ToF32(uint16(b) << 8)
		if b == 0xFF {
			e8m0Table[i] = nan
		} else {
			e8m0Table[i] = float32(math.Ldexp(1, int(b)-127))
		}
		// FNUZ variants: bias 8 / 16, no negative zero, 0x80 is the only NaN, no Inf.
		switch {
		case b == 0x80:
			e4m3fnuz[i], e5m2fnuz[i] = nan, nan
		default:
			if e == 0 {
				e4m3fnuz[i] = sign * float32(math.Ldexp(m/8, -7))
			} else {
				e4m3fnuz[i] = sign * float32(math.Ldexp(1+m/8, e-8))
			}
			e5, m5 := int(b>>2)&0x1F, float64(b&3)
			if e5 == 0 {
				e5m2fnuz[i] = sign * float32(math.Ldexp(m5/4, -15))
			} else {
				e5m2fnuz[i] = sign * float32(math.Ldexp(1+m5/4, e5-16))
			}
		}
	}
}

// E4M3ToF32 decodes a float8_e4m3fn byte (0x7F and 0xFF are NaN; max 448).
func E4M3ToF32(b uint8) float32 { return e4m3Table[b] }

// F32ToE4M3 is torch's float32 → float8_e4m3fn cast: round to nearest even,
// NOT saturating. |x| > 464 and ±Inf give NaN (0x7F, 0xFF when negative);
// NaN gives 0x7F (0xFF for a NaN with the sign bit set, as torch does).
func F32ToE4M3(f float32) uint8 {
	u := math.Float32bits(f)
	sign := uint8(u>>24) & 0x80
	u &= 0x7FFFFFFF
	const first480 = 0x43F00000 // 480.0: the first value beyond the E4M3 range
	if u >= first480 {
		return sign | 0x7F
	}
	if u < 121<<23 { // below 2^-6: subnormal grid of 2^-9
		// Adding 2^14 (ulp 2^-9) rounds to the grid, ties to even.
		const bias = 141 << 23
		v := float32(math.Float32frombits(u) + math.Float32frombits(bias))
		return sign | uint8(math.Float32bits(v)-bias)
	}
	// Rebias the exponent (subtract 120 << 23, i.e. add its two's
	// complement) and round the 20 dropped mantissa bits to nearest even.
	odd := (u >> 20) & 1
	u = u - 120<<23 + 0x7FFFF + odd
	return sign | uint8(u>>20)
}

// F32ToE4M3Sat clamps to ±448 and then casts: the quantizer form used where
// torch code clamps before x.to(float8_e4m3fn). NaN stays NaN (0x7F).
func F32ToE4M3Sat(f float32) uint8 {
	if f > 448 {
		f = 448
	} else if f < -448 {
		f = -448
	}
	return F32ToE4M3(f)
}

// E5M2ToF32 decodes a float8_e5m2 byte (IEEE-like; max 57344, Inf 0x7C).
func E5M2ToF32(b uint8) float32 { return e5m2Table[b] }

// F32ToE5M2 is torch's float32 → float8_e5m2 cast: round to nearest even
// with overflow to ±Inf (61440 and above); NaN gives 0x7F (0xFF if negative).
func F32ToE5M2(f float32) uint8 {
	u := math.Float32bits(f)
	sign := uint8(u>>24) & 0x80
	u &= 0x7FFFFFFF
	const first65536 = 143 << 23
	if u >= first65536 {
		if u > 0x7F800000 {
			return sign | 0x7F
		}
		return sign | 0x7C
	}
	if u < 113<<23 { // below 2^-14: subnormal grid of 2^-16
		const bias = 134 << 23
		v := float32(math.Float32frombits(u) + math.Float32frombits(bias))
		return sign | uint8(math.Float32bits(v)-bias)
	}
	odd := (u >> 21) & 1
	u = u - 112<<23 + 0xFFFFF + odd
	return sign | uint8(u>>21)
}

// E8M0ToF32 decodes a float8_e8m0fnu byte: 2^(b-127); 0xFF is NaN.
func E8M0ToF32(b uint8) float32 { return e8m0Table[b] }

// F32ToE8M0 is torch's float32 → float8_e8m0fnu cast: the sign is dropped,
// Inf and NaN give 0xFF, and the exponent rounds to nearest even on the
// significand's guard, round and sticky bits — for normal numbers, up iff
// the significand is ≥ 1.5 (1.5 → 2, 1.25 → 1, 0.75 → 1, 0 → 0x00).
func F32ToE8M0(f float32) uint8 {
	u := math.Float32bits(f)
	exp := (u >> 23) & 0xFF
	if exp == 0xFF {
		return 0xFF
	}
	g := u&0x400000 != 0
	r := u&0x200000 != 0
	s := u&0x1FFFFF != 0
	lsb := exp > 0
	if g && (r || s || lsb) {
		exp++
	}
	return uint8(exp)
}

// E2M1ToF32 decodes a 4-bit E2M1 code (only the low nibble is used).
func E2M1ToF32(code uint8) float32 { return e2m1Table[code&0xF] }

// F32ToE2M1 is ModelOpt's _cast_fp4: with a = |x|, the code is the number
// of boundaries {0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5} below a, plus one if a
// is exactly 0.75, 1.75 or 3.5 (round half to even), plus 8 if x < 0. Values
// beyond 5 saturate to ±6; a negative value that rounds to zero is code 8
// (−0); −0.0 itself is code 0. NaN gives code 0.
func F32ToE2M1(f float32) uint8 {
	a := f
	var sign uint8
	if f < 0 {
		a = -f
		sign = 8
	}
	var code uint8
	for _, b := range [...]float32{0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5} {
		if b < a {
			code++
		}
	}
	if a == 0.75 || a == 1.75 || a == 3.5 {
		code++
	}
	return sign + code
}

// PackE2M1 packs 4-bit codes two per byte: element 2i in the low nibble,
// element 2i+1 in the high nibble. An odd count leaves the last high
// nibble zero.
func PackE2M1(codes []uint8) []byte {
	out := make([]byte, (len(codes)+1)/2)
	for i, c := range codes {
		if i%2 == 0 {
			out[i/2] |= c & 0xF
		} else {
			out[i/2] |= (c & 0xF) << 4
		}
	}
	return out
}

// UnpackE2M1 returns the first n 4-bit codes of packed (element 2i from the
// low nibble). n is clamped to [0, 2·len(packed)].
func UnpackE2M1(packed []byte, n int) []uint8 {
	if n > 2*len(packed) {
		n = 2 * len(packed)
	}
	if n < 0 {
		n = 0
	}
	out := make([]uint8, n)
	for i := range out {
		b := packed[i/2]
		if i%2 == 0 {
			out[i] = b & 0xF
		} else {
			out[i] = b >> 4
		}
	}
	return out
}

// elemSize is the byte size of one element of the dtypes DecodeFloats knows
// (F4 is handled separately: two values per byte).
var elemSize = map[string]int{
	"F64": 8, "F32": 4, "F16": 2, "BF16": 2,
	"F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "F8_E4M3FNUZ": 1, "F8_E5M2FNUZ": 1,
}

// IsFloatDType reports whether DecodeFloats can decode the safetensors dtype.
func IsFloatDType(dtype string) bool {
	_, ok := elemSize[dtype]
	return ok || dtype == "F4"
}

// DecodeFloats decodes raw little-endian tensor bytes of a safetensors
// dtype to float32: F64 (rounded to float32), F32, F16, BF16, F8_E4M3,
// F8_E5M2, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ and F4 (E2M1, two values per
// byte, element 2i in the low nibble). A byte count that is not a whole
// number of elements or an unknown dtype is an error.
func DecodeFloats(dtype string, raw []byte) ([]float32, error) {
	if dtype == "F4" {
		out := make([]float32, 2*len(raw))
		for i, b := range raw {
			out[2*i] = e2m1Table[b&0xF]
			out[2*i+1] = e2m1Table[b>>4]
		}
		return out, nil
	}
	size, ok := elemSize[dtype]
	if !ok {
		return nil, fmt.Errorf("decode: dtype %q is not a floating-point format", dtype)
	}
	if len(raw)%size != 0 {
		return nil, fmt.Errorf("decode %s: %d bytes is not a whole number of %d-byte elements", dtype, len(raw), size)
	}
	out := make([]float32, len(raw)/size)
	switch dtype {
	case "F64":
		for i := range out {
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:])))
		}
	case "F32":
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	case "F16":
		for i := range out {
			out[i] = F16ToF32(binary.LittleEndian.Uint16(raw[2*i:]))
		}
	case "BF16":
		for i := range out {
			out[i] = BF16ToF32(binary.LittleEndian.Uint16(raw[2*i:]))
		}
	default:
		table := map[string]*[256]float32{"F8_E4M3": &e4m3Table, "F8_E5M2": &e5m2Table, "F8_E8M0": &e8m0Table,
			"F8_E4M3FNUZ": &e4m3fnuz, "F8_E5M2FNUZ": &e5m2fnuz}[dtype]
		for i, b := range raw {
			out[i] = table[b]
		}
	}
	return out, nil
}

// EncodeFloats encodes float32 values as raw little-endian bytes of a
// safetensors dtype with torch's casts: F64, F32, F16 and BF16 (round to
// nearest even), F8_E4M3 (F32ToE4M3, not saturating), F8_E5M2, F8_E8M0 and
// F4 (F32ToE2M1, packed; an odd count is an error).
func EncodeFloats(dtype string, vals []float32) ([]byte, error) {
	switch dtype {
	case "F64":
		out := make([]byte, 8*len(vals))
		for i, v := range vals {
			binary.LittleEndian.PutUint64(out[8*i:], math.Float64bits(float64(v)))
		}
		return out, nil
	case "F32":
		out := make([]byte, 4*len(vals))
		for i, v := range vals {
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v))
		}
		return out, nil
	case "F16", "BF16":
		conv := F32ToF16
		if dtype == "BF16" {
			conv = F32ToBF16
		}
		out := make([]byte, 2*len(vals))
		for i, v := range vals {
			binary.LittleEndian.PutUint16(out[2*i:], conv(v))
		}
		return out, nil
	case "F8_E4M3", "F8_E5M2", "F8_E8M0":
		conv := map[string]func(float32) uint8{"F8_E4M3": F32ToE4M3, "F8_E5M2": F32ToE5M2, "F8_E8M0": F32ToE8M0}[dtype]
		out := make([]byte, len(vals))
		for i, v := range vals {
			out[i] = conv(v)
		}
		return out, nil
	case "F4":
		if len(vals)%2 != 0 {
			return nil, fmt.Errorf("encode F4: %d values is odd (two values per byte)", len(vals))
		}
		codes := make([]uint8, len(vals))
		for i, v := range vals {
			codes[i] = F32ToE2M1(v)
		}
		return PackE2M1(codes), nil
	}
	return nil, fmt.Errorf("encode: unsupported dtype %q", dtype)
}
