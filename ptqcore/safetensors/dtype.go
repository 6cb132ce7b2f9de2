package safetensors

import (
	"fmt"
	"math/bits"
)

// DType is a safetensors element type string as it appears in a header
// ("F32", "BF16", "F8_E4M3", ...). A DType read from a file may be one this
// package does not know; such tensors are kept as raw bytes.
type DType string

// The dtype strings of safetensors 0.8.0 (specs/transformers.md §8).
const (
	F64        DType = "F64"
	F32        DType = "F32"
	F16        DType = "F16"
	BF16       DType = "BF16"
	I64        DType = "I64"
	I32        DType = "I32"
	I16        DType = "I16"
	I8         DType = "I8"
	U8         DType = "U8"
	U16        DType = "U16"
	U32        DType = "U32"
	U64        DType = "U64"
	Bool       DType = "BOOL"
	F8E4M3     DType = "F8_E4M3"
	F8E5M2     DType = "F8_E5M2"
	F8E8M0     DType = "F8_E8M0"
	F8E4M3FNUZ DType = "F8_E4M3FNUZ"
	F8E5M2FNUZ DType = "F8_E5M2FNUZ"
	F6E2M3     DType = "F6_E2M3"
	F6E3M2     DType = "F6_E3M2"
	F4         DType = "F4" // float4_e2m1fn_x2: two values per byte, shape counts values
	C64        DType = "C64"
	BOOL       DType = "BOOL" // same as Bool, spelled as in headers
)

// dtypeOrder is the Rust safetensors Dtype enum in declaration order
// ("increasing alignment order"). The writer sorts tensors by this rank,
// descending, then by name, exactly as safetensors' serialize does.
var dtypeOrder = []DType{Bool, F4, F6E2M3, F6E3M2, U8, I8, F8E5M2, F8E4M3, F8E8M0, F8E4M3FNUZ, F8E5M2FNUZ,
	I16, U16, F16, BF16, I32, U32, F32, C64, F64, I64, U64}

var dtypeBits = map[DType]int{
	Bool: 8, F4: 4, F6E2M3: 6, F6E3M2: 6, U8: 8, I8: 8, F8E5M2: 8, F8E4M3: 8, F8E8M0: 8, F8E4M3FNUZ: 8, F8E5M2FNUZ: 8,
	I16: 16, U16: 16, F16: 16, BF16: 16, I32: 32, U32: 32, F32: 32, C64: 64, F64: 64, I64: 64, U64: 64,
}

var dtypeRank = func() map[DType]int {
	m := make(map[DType]int, len(dtypeOrder))
	for i, d := range dtypeOrder {
		m[d] = i
	}
	return m
}()

// DTypes returns every dtype this package knows, in safetensors enum order.
func DTypes() []DType { return append([]DType(nil), dtypeOrder...) }

// Bits returns the size of one element in bits (F4 is 4: two values per
// byte). known is false for a dtype this package does not know.
func (d DType) Bits() (bits int, known bool) {
	b, ok := dtypeBits[d]
	return b, ok
}

// Known reports whether the dtype is one of the safetensors dtypes.
func (d DType) Known() bool { _, ok := dtypeBits[d]; return ok }

// IsFloat reports whether the dtype holds real floating-point values
// (F64, F32, F16, BF16, the F8, F6 and F4 formats).
func (d DType) IsFloat() bool {
	switch d {
	case F64, F32, F16, BF16, F8E4M3, F8E5M2, F8E8M0, F8E4M3FNUZ, F8E5M2FNUZ, F6E2M3, F6E3M2, F4:
		return true
	}
	return false
}

// String returns the header spelling.
func (d DType) String() string { return string(d) }

// ByteSize returns the number of bytes numel elements of d occupy. It fails
// for an unknown dtype, a negative count, a count whose bits are not a whole
// number of bytes (an odd number of F4 values) or an overflow.
func (d DType) ByteSize(numel int64) (int64, error) {
	b, ok := d.Bits()
	if !ok {
		return 0, fmt.Errorf("unknown dtype %q", string(d))
	}
	if numel < 0 {
		return 0, fmt.Errorf("negative element count %d", numel)
	}
	hi, lo := bits.Mul64(uint64(numel), uint64(b))
	if hi != 0 || lo > 1<<63-1 {
		return 0, fmt.Errorf("%d elements of %s overflow int64 bytes", numel, d)
	}
	if lo%8 != 0 {
		return 0, fmt.Errorf("%d elements of %s (%d bits each) are not a whole number of bytes", numel, d, b)
	}
	return int64(lo / 8), nil
}

// NumElements returns the product of the dimensions of shape (1 for a
// scalar, shape []). It fails on a negative dimension or an overflow.
func NumElements(shape []int64) (int64, error) {
	n := uint64(1)
	for i, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("dimension %d is negative (%d)", i, d)
		}
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > 1<<63-1 {
			return 0, fmt.Errorf("shape %v: element count overflows int64", shape)
		}
		n = lo
	}
	return int64(n), nil
}
