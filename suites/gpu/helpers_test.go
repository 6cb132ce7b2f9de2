//go:build cuda

package gpu_test

import (
	"math"
	"math/rand/v2"

	. "github.com/onsi/gomega"

	"github.com/ptqgate/ptqgate/ptqcore/backend"
	"github.com/ptqgate/ptqgate/ptqcore/numerics"
)

// both holds the same tensor on the GPU and on the CPU.
type both struct {
	g, c backend.Tensor
}

func upload(rows, cols int, data []float32) both {
	g, err := gpu.Upload(rows, cols, append([]float32(nil), data...))
	Expect(err).NotTo(HaveOccurred())
	c, err := cpuBE.Upload(rows, cols, append([]float32(nil), data...))
	Expect(err).NotTo(HaveOccurred())
	return both{g, c}
}

func alloc(rows, cols int) both {
	g, err := gpu.Alloc(rows, cols)
	Expect(err).NotTo(HaveOccurred())
	c, err := cpuBE.Alloc(rows, cols)
	Expect(err).NotTo(HaveOccurred())
	return both{g, c}
}

func (t both) free() {
	gpu.Free(t.g)
	cpuBE.Free(t.c)
}

func download(be backend.Backend, t backend.Tensor) []float32 {
	out := make([]float32, t.Rows()*t.Cols())
	Expect(be.Download(t, out)).To(Succeed())
	return out
}

// results downloads both copies.
func (t both) results() (g, c []float32) { return download(gpu, t.g), download(cpuBE, t.c) }

// randn returns n values of an approximately standard normal scaled by s,
// rounded to dt.
func randn(r *rand.Rand, n int, s float64, dt backend.DType) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = roundTo(dt, float32(r.NormFloat64()*s))
	}
	return out
}

func roundTo(dt backend.DType, v float32) float32 {
	switch dt {
	case backend.BF16:
		return numerics.RoundBF16(v)
	case backend.F16:
		return numerics.RoundF16(v)
	}
	return v
}

// ordered maps a float32 to an integer that orders like the value, so
// that the difference of two is their distance in float32 ulps.
func ordered(v float32) int64 {
	u := int64(math.Float32bits(v))
	if u&0x80000000 != 0 {
		return -(u & 0x7fffffff)
	}
	return u
}

// ulps returns the largest distance between got and want in units in the
// last place of dt (float32 ulps for F32), and the index where it occurs.
// NaN against non-NaN counts as infinitely far.
func ulps(got, want []float32, dt backend.DType) (int64, int) {
	Expect(got).To(HaveLen(len(want)))
	shift := uint(0)
	switch dt {
	case backend.BF16:
		shift = 16
	case backend.F16:
		shift = 13 // only compares values already rounded to f16 approximately
	}
	var worst int64
	at := -1
	for i := range got {
		a, b := got[i], want[i]
		if a != a || b != b {
			if (a != a) != (b != b) {
				return math.MaxInt64, i
			}
			continue
		}
		d := ordered(a) - ordered(b)
		if d < 0 {
			d = -d
		}
		d >>= shift
		if d > worst {
			worst, at = d, i
		}
	}
	return worst, at
}

// bitsEqual reports whether two slices are bit-identical (NaNs included).
func bitsEqual(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// maxAbsDiff returns max|a-b| and max|b|.
func maxAbsDiff(a, b []float32) (diff, scale float64) {
	for i := range a {
		diff = max(diff, math.Abs(float64(a[i])-float64(b[i])))
		scale = max(scale, math.Abs(float64(b[i])))
	}
	return diff, scale
}
