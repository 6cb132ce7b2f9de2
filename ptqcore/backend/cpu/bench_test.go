package cpu_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/ptqgate/ptqgate/ptqcore/backend"
	"github.com/ptqgate/ptqgate/ptqcore/backend/cpu"
)

// BenchmarkLinear measures the GEMM kernel in GFLOP/s on calibration-like
// shapes (tokens × hidden against projection weights).
func BenchmarkLinear(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, sh := range [][3]int{{512, 768, 256}, {512, 256, 512}, {64, 192, 256}, {512, 2048, 2048}} {
		m, n, k := sh[0], sh[1], sh[2]
		b.Run(fmt.Sprintf("%dx%dx%d", m, n, k), func(b *testing.B) {
			be := cpu.New()
			x, _ := be.Upload(m, k, randVals(r, m*k, 1, backend.F32))
			w, _ := be.Upload(n, k, randVals(r, n*k, 1, backend.F32))
			dst, _ := be.Alloc(m, n)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := be.Linear(dst, x, w, nil, backend.BF16); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkGroupedLinear measures the segmented expert GEMM: 512 tokens ×
// top-8 rows over 64 experts.
func BenchmarkGroupedLinear(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	const e, rows, n, k = 64, 4096, 192, 256
	be := cpu.New()
	x, _ := be.Upload(rows, k, randVals(r, rows*k, 1, backend.F32))
	w, _ := be.Upload(e*n, k, randVals(r, e*n*k, 1, backend.F32))
	dst, _ := be.Alloc(rows, n)
	offsets := make([]int, e+1)
	for i := range offsets {
		offsets[i] = i * rows / e
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := be.GroupedLinear(dst, x, w, offsets, backend.BF16); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(2*float64(rows*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}
