//go:build cuda

package gpu_test

import (
	"errors"
	"math"
	"math/rand/v2"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/ptqgate/ptqgate/ptqcore/backend"
	"github.com/ptqgate/ptqgate/ptqcore/export"
	"github.com/ptqgate/ptqgate/ptqcore/numerics"
	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
)

var stDType = map[backend.DType]safetensors.DType{backend.F32: safetensors.F32, backend.BF16: safetensors.BF16, backend.F16: safetensors.F16}

// weightLike returns rows×cols values of a weight in dt with a few
// special values: zeros, an all-zero 16-block, tiny and large magnitudes.
func weightLike(r *rand.Rand, rows, cols int, dt backend.DType) []float32 {
	w := randn(r, rows*cols, 0.05, dt)
	for i := 0; i < min(16, cols); i++ {
		w[i] = 0
	}
	w[len(w)/2] = roundTo(dt, 1e-7)
	w[len(w)/3] = roundTo(dt, -0.9)
	w[len(w)-1] = roundTo(dt, float32(math.Copysign(0, -1)))
	return w
}

var _ = Describe("export quantize/pack kernels", Label("gpu"), func() {
	var r *rand.Rand
	BeforeEach(func() { r = rand.New(rand.NewPCG(3, 4)) })

	for _, dt := range dtypes {
		It("FP8 E4M3 weights are bit-identical to the exporter in "+dt.String(), func() {
			for _, sh := range [][2]int{{300, 200}, {7, 50}} {
				w := weightLike(r, sh[0], sh[1], dt)
				var amax float32
				for _, v := range w {
					amax = max(amax, float32(math.Abs(float64(v))))
				}
				scale := export.FP8WeightScale(amax)
				t, err := gpu.Upload(sh[0], sh[1], w)
				Expect(err).NotTo(HaveOccurred())
				want, err := export.QuantizeFP8("w", w, scale, stDType[dt])
				Expect(err).NotTo(HaveOccurred())
				got, _, ok, err := gpu.QuantizeFP8(t, scale, dt)
				Expect(err).NotTo(HaveOccurred())
				Expect(ok).To(BeTrue())
				Expect(got).To(Equal(want))
				// A scale below the weight's maximum overflows where the
				// exporter reports it.
				_, werr := export.QuantizeFP8("w", w, scale/2, stDType[dt])
				var ov *export.OverflowError
				Expect(errors.As(werr, &ov)).To(BeTrue())
				_, bad, ok, err := gpu.QuantizeFP8(t, scale/2, dt)
				Expect(err).NotTo(HaveOccurred())
				Expect(ok).To(BeFalse())
				Expect(bad).To(Equal(ov.Index))
				// The saturating cast clamps before the E4M3 conversion.
				sat, err := gpu.QuantizeFP8Sat(t, scale/2, dt)
				Expect(err).NotTo(HaveOccurred())
				s := roundTo(dt, scale/2)
				for i, v := range w {
					Expect(sat[i]).To(Equal(numerics.F32ToE4M3Sat(roundTo(dt, v/s))), "element %d", i)
				}
				gpu.Free(t)
			}
		})

		It("NVFP4 codes and block scales are bit-identical to the exporter in "+dt.String(), func() {
			for _, sh := range [][2]int{{128, 256}, {9, 50}} {
				w := weightLike(r, sh[0], sh[1], dt)
				var amax float32
				for _, v := range w {
					amax = max(amax, float32(math.Abs(float64(v))))
				}
				scale2 := export.NVFP4WeightScale2(amax)
				t, err := gpu.Upload(sh[0], sh[1], w)
				Expect(err).NotTo(HaveOccurred())
				wantP, wantS := export.QuantizeNVFP4(w, sh[0], sh[1], scale2)
				gotP, gotS, err := gpu.QuantizeNVFP4(t, scale2)
				Expect(err).NotTo(HaveOccurred())
				Expect(gotS).To(Equal(wantS))
				Expect(gotP).To(Equal(wantP))
				gpu.Free(t)
			}
		})
	}
})
