package export

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/ptqgate/ptqgate/ptqcore/numerics"
	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
)

// benchWeight is a 2048×2048 bf16-representable normal weight and its amax.
func benchWeight() ([]float32, float32) {
	r := rand.New(rand.NewPCG(1, 2))
	w := make([]float32, 2048*2048)
	var amax float32
	for i := range w {
		w[i] = numerics.RoundBF16(float32(r.NormFloat64() * 0.02))
		amax = max(amax, float32(math.Abs(float64(w[i]))))
	}
	return w, amax
}

func BenchmarkQuantizeFP8(b *testing.B) {
	w, amax := benchWeight()
	scale := FP8WeightScale(amax)
	b.SetBytes(int64(len(w)))
	for b.Loop() {
		if _, err := QuantizeFP8("w", w, scale, safetensors.BF16); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkQuantizeNVFP4(b *testing.B) {
	w, amax := benchWeight()
	s2 := NVFP4WeightScale2(amax)
	b.SetBytes(int64(len(w)))
	for b.Loop() {
		QuantizeNVFP4(w, 2048, 2048, s2)
	}
}
