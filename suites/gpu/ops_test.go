//go:build cuda

package gpu_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/ptqgate/ptqgate/ptqcore/backend"
)

var dtypes = []backend.DType{backend.F32, backend.BF16, backend.F16}

// Tolerances of the GPU against the CPU backend. float32 and float16 use
// the CUDA-core kernels with the CPU's operation order: bit-identical,
// except where a float64 sum is reduced in another order (RMSNorm's mean
// of squares, softmax denominators), which can move the result by one ulp
// (reduceF32ULPs). bfloat16 GEMMs accumulate on tensor cores in another
// order than the CPU: |GPU − CPU| ≤ one bfloat16 ulp of the result plus
// gemmBF16Rel·Σ|x·w| (the float32 summation error bound, which dominates
// only where the sum cancels).
const (
	reduceF32ULPs = 1
	gemmBF16Rel   = 1.0 / (1 << 16)
)

// expectGEMMClose checks bfloat16 tensor-core results against the CPU's
// within one bfloat16 ulp plus gemmBF16Rel·Σ|x||w| per element.
func expectGEMMClose(g, c []float32, x, w backend.Tensor, m, n, k int) {
	ax, aw := absOf(x), absOf(w)
	xa, err := cpuBE.Upload(m, k, ax)
	Expect(err).NotTo(HaveOccurred())
	wa, err := cpuBE.Upload(n, k, aw)
	Expect(err).NotTo(HaveOccurred())
	mag, err := cpuBE.Alloc(m, n)
	Expect(err).NotTo(HaveOccurred())
	Expect(cpuBE.Linear(mag, xa, wa, nil, backend.F32)).To(Succeed())
	mv := download(cpuBE, mag)
	for i := range g {
		lim := bf16ULP(c[i]) + gemmBF16Rel*float64(mv[i])
		Expect(math.Abs(float64(g[i])-float64(c[i]))).To(BeNumerically("<=", lim), "element %d: GPU %g, CPU %g, Σ|x·w| %g", i, g[i], c[i], mv[i])
	}
}

func absOf(t backend.Tensor) []float32 {
	v := download(cpuBE, t)
	for i := range v {
		v[i] = float32(math.Abs(float64(v[i])))
	}
	return v
}

// bf16ULP is the spacing of bfloat16 values at v.
func bf16ULP(v float32) float64 {
	_, e := math.Frexp(math.Abs(float64(v)))
	return math.Ldexp(1, e-8)
}

var _ = Describe("CUDA backend operations against the CPU backend", Label("gpu"), func() {
	var r *rand.Rand
	BeforeEach(func() { r = rand.New(rand.NewPCG(1, 2)) })

	for _, dt := range dtypes {
		It(fmt.Sprintf("Linear with and without bias in %v", dt), func() {
			for _, sh := range []struct{ m, n, k int }{{300, 200, 264}, {1, 130, 64}, {257, 384, 1024}, {33, 70, 100}, {150, 1100, 136}} {
				x := upload(sh.m, sh.k, randn(r, sh.m*sh.k, 1, dt))
				w := upload(sh.n, sh.k, randn(r, sh.n*sh.k, 0.05, dt))
				bias := upload(1, sh.n, randn(r, sh.n, 0.1, dt))
				for _, withBias := range []bool{false, true} {
					y := alloc(sh.m, sh.n)
					bg, bc := backend.Tensor(nil), backend.Tensor(nil)
					if withBias {
						bg, bc = bias.g, bias.c
					}
					Expect(gpu.Linear(y.g, x.g, w.g, bg, dt)).To(Succeed())
					Expect(cpuBE.Linear(y.c, x.c, w.c, bc, dt)).To(Succeed())
					g, c := y.results()
					if dt == backend.BF16 && sh.k%8 == 0 {
						// Tensor cores: another float32 summation order.
						expectGEMMClose(g, c, x.c, w.c, sh.m, sh.n, sh.k)
					} else {
						Expect(bitsEqual(g, c)).To(BeTrue(), "%v %+v bias %v", dt, sh, withBias)
					}
					y.free()
				}
				x.free()
				w.free()
				bias.free()
			}
		})

		It(fmt.Sprintf("GroupedLinear equals per-expert Linear bit for bit and returns the CPU's per-expert amax in %v", dt), func() {
			counts := []int{0, 37, 130, 1, 0, 200, 128}
			offsets := []int{0}
			for _, c := range counts {
				offsets = append(offsets, offsets[len(offsets)-1]+c)
			}
			m, n, k, e := offsets[len(counts)], 96, 64, len(counts)
			xs := randn(r, m*k, 1, dt)
			xs[5*k+3] = -7.5 // a clear maximum inside expert 1
			x := upload(m, k, xs)
			w := upload(e*n, k, randn(r, e*n*k, 0.1, dt))
			y := alloc(m, n)
			ag, err := gpu.GroupedLinear(y.g, x.g, w.g, offsets, dt)
			Expect(err).NotTo(HaveOccurred())
			ac, err := cpuBE.GroupedLinear(y.c, x.c, w.c, offsets, dt)
			Expect(err).NotTo(HaveOccurred())
			Expect(bitsEqual(ag, ac)).To(BeTrue(), "amax GPU %v CPU %v", ag, ac)
			Expect(ag[0]).To(BeZero())
			Expect(ag[1]).To(Equal(float32(7.5)))
			g, c := y.results()
			if dt == backend.BF16 {
				for ex := 0; ex < e; ex++ {
					lo, hi := offsets[ex], offsets[ex+1]
					xv, err := cpuBE.View(x.c, lo, hi)
					Expect(err).NotTo(HaveOccurred())
					wv, err := cpuBE.View(w.c, ex*n, (ex+1)*n)
					Expect(err).NotTo(HaveOccurred())
					expectGEMMClose(g[lo*n:hi*n], c[lo*n:hi*n], xv, wv, hi-lo, n, k)
				}
			} else {
				Expect(bitsEqual(g, c)).To(BeTrue())
			}
			// Eager form: one Linear per expert on views.
			for ex := 0; ex < e; ex++ {
				if counts[ex] == 0 {
					continue
				}
				xv, err := gpu.View(x.g, offsets[ex], offsets[ex+1])
				Expect(err).NotTo(HaveOccurred())
				wv, err := gpu.View(w.g, ex*n, (ex+1)*n)
				Expect(err).NotTo(HaveOccurred())
				ye, err := gpu.Alloc(counts[ex], n)
				Expect(err).NotTo(HaveOccurred())
				Expect(gpu.Linear(ye, xv, wv, nil, dt)).To(Succeed())
				Expect(bitsEqual(download(gpu, ye), g[offsets[ex]*n:offsets[ex+1]*n])).To(BeTrue(), "expert %d differs between Linear and GroupedLinear", ex)
				gpu.Free(ye)
			}
			x.free()
			w.free()
			y.free()
		})

		It(fmt.Sprintf("RMSNorm (both kinds, whole rows and heads) in %v", dt), func() {
			x := upload(50, 256, randn(r, 50*256, 2, dt))
			for _, group := range []int{256, 32} {
				w := upload(1, group, randn(r, group, 0.3, dt))
				for _, kind := range []backend.NormKind{backend.NormWeighted, backend.NormOffset} {
					y := alloc(50, 256)
					Expect(gpu.RMSNorm(y.g, x.g, w.g, group, 1e-6, kind, dt)).To(Succeed())
					Expect(cpuBE.RMSNorm(y.c, x.c, w.c, group, 1e-6, kind, dt)).To(Succeed())
					g, c := y.results()
					u, at := ulps(g, c, dt)
					Expect(u).To(BeNumerically("<=", reduceF32ULPs), "group %d kind %d element %d: %g vs %g", group, kind, at, g[max(at, 0)], c[max(at, 0)])
					y.free()
				}
				w.free()
			}
			// In place (q_norm/k_norm apply to their own tensor).
			y := upload(50, 256, randn(r, 50*256, 2, dt))
			w := upload(1, 32, randn(r, 32, 0.3, dt))
			Expect(gpu.RMSNorm(y.g, y.g, w.g, 32, 1e-6, backend.NormWeighted, dt)).To(Succeed())
			Expect(cpuBE.RMSNorm(y.c, y.c, w.c, 32, 1e-6, backend.NormWeighted, dt)).To(Succeed())
			g, c := y.results()
			u, _ := ulps(g, c, dt)
			Expect(u).To(BeNumerically("<=", reduceF32ULPs))
			x.free()
		})

		It(fmt.Sprintf("RoPE (full and partial rotary) in %v", dt), func() {
			pos := []int32{}
			for _, n := range []int{30, 45} {
				for t := 0; t < n; t++ {
					pos = append(pos, int32(t))
				}
			}
			for _, rot := range []int{64, 32} {
				x := upload(75, 4*64, randn(r, 75*256, 1, dt))
				spec := backend.RoPESpec{Heads: 4, HeadDim: 64, RotaryDim: rot, Theta: 1e6, Positions: pos}
				Expect(gpu.RoPE(x.g, spec, dt)).To(Succeed())
				Expect(cpuBE.RoPE(x.c, spec, dt)).To(Succeed())
				g, c := x.results()
				Expect(bitsEqual(g, c)).To(BeTrue())
				x.free()
			}
		})

		It(fmt.Sprintf("SiluMul, Add, ScaleRows, ScatterAddRows and GatherRows in %v", dt), func() {
			gu := upload(90, 2*48, randn(r, 90*96, 2, dt))
			a := alloc(90, 48)
			Expect(gpu.SiluMul(a.g, gu.g, dt)).To(Succeed())
			Expect(cpuBE.SiluMul(a.c, gu.c, dt)).To(Succeed())
			g, c := a.results()
			u, _ := ulps(g, c, dt)
			Expect(u).To(BeNumerically("<=", 1), "silu·mul") // exp in float64 on both sides

			b := upload(90, 48, randn(r, 90*48, 1, dt))
			s := alloc(90, 48)
			Expect(gpu.Add(s.g, a.g, b.g, dt)).To(Succeed())
			Expect(cpuBE.Add(s.c, a.c, b.c, dt)).To(Succeed())
			g, c = s.results()
			u, _ = ulps(g, c, dt)
			Expect(u).To(BeNumerically("<=", 1))

			scales := randn(r, 90, 1, dt)
			Expect(gpu.ScaleRows(s.g, scales, dt)).To(Succeed())
			Expect(cpuBE.ScaleRows(s.c, scales, dt)).To(Succeed())
			g, c = s.results()
			u, _ = ulps(g, c, dt)
			Expect(u).To(BeNumerically("<=", 1))

			idx := make([]int32, 90)
			for i := range idx {
				idx[i] = int32(r.IntN(20))
			}
			out := alloc(20, 48)
			Expect(gpu.ScatterAddRows(out.g, s.g, idx, dt)).To(Succeed())
			Expect(cpuBE.ScatterAddRows(out.c, s.c, idx, dt)).To(Succeed())
			g, c = out.results()
			u, _ = ulps(g, c, dt)
			Expect(u).To(BeNumerically("<=", 1))

			gat := alloc(90, 48)
			Expect(gpu.GatherRows(gat.g, b.g, idx)).To(Succeed())
			Expect(cpuBE.GatherRows(gat.c, b.c, idx)).To(Succeed())
			g, c = gat.results()
			Expect(bitsEqual(g, c)).To(BeTrue())
			for _, t := range []both{gu, a, b, s, out, gat} {
				t.free()
			}
		})

		It(fmt.Sprintf("RouterTopK in %v", dt), func() {
			for _, sh := range []struct {
				e, k int
				norm bool
			}{{128, 8, true}, {128, 8, false}, {8, 2, false}, {60, 4, true}} {
				logits := randn(r, 333*sh.e, 2, dt)
				logits[7] = logits[3] // a tie: the lower index wins
				l := upload(333, sh.e, logits)
				spec := backend.RouterSpec{TopK: sh.k, Normalize: sh.norm}
				ig, wg, err := gpu.RouterTopK(l.g, spec, dt)
				Expect(err).NotTo(HaveOccurred())
				ic, wc, err := cpuBE.RouterTopK(l.c, spec, dt)
				Expect(err).NotTo(HaveOccurred())
				Expect(ig).To(Equal(ic), "top-k indices %+v", sh)
				u, at := ulps(wg, wc, dt)
				Expect(u).To(BeNumerically("<=", reduceF32ULPs), "weights %+v element %d", sh, at)
				l.free()
			}
		})

		It(fmt.Sprintf("Attention, one to several query tiles per sequence, in %v", dt), func() {
			for _, hd := range []int{128, 64, 32} {
				seqs := []int{1, 70, 200}
				total := 271
				h, kvh := 4, 2
				q := upload(total, h*hd, randn(r, total*h*hd, 1, dt))
				k := upload(total, kvh*hd, randn(r, total*kvh*hd, 1, dt))
				v := upload(total, kvh*hd, randn(r, total*kvh*hd, 1, dt))
				o := alloc(total, h*hd)
				spec := backend.AttentionSpec{Heads: h, KVHeads: kvh, HeadDim: hd, Scale: float32(1 / math.Sqrt(float64(hd))), SeqLens: seqs}
				Expect(gpu.Attention(o.g, q.g, k.g, v.g, spec, dt)).To(Succeed())
				Expect(cpuBE.Attention(o.c, q.c, k.c, v.c, spec, dt)).To(Succeed())
				g, c := o.results()
				diff, scale := maxAbsDiff(g, c)
				AddReportEntry(fmt.Sprintf("attention %v head_dim %d: max |GPU-CPU|", dt, hd), fmt.Sprintf("%.3g (max |out| %.3g)", diff, scale))
				if dt == backend.BF16 && (hd == 64 || hd == 128) {
					// Tensor-core scores and p·v sums: a score or
					// probability may round to the neighbouring bfloat16.
					Expect(diff).To(BeNumerically("<=", attnBF16Tol*scale), "head_dim %d", hd)
				} else {
					u, at := ulps(g, c, dt)
					Expect(u).To(BeNumerically("<=", 2), "head_dim %d element %d: %g vs %g", hd, at, g[max(at, 0)], c[max(at, 0)])
				}
				for _, t := range []both{q, k, v, o} {
					t.free()
				}
			}
		})
	}

	It("Amax per tensor, row, column and block, with NaN, ±Inf and -0", func() {
		for _, dt := range []backend.DType{backend.F32, backend.BF16} {
			data := randn(r, 64*96, 3, dt)
			x := upload(64, 96, data)
			for _, red := range []backend.Reduction{{Kind: backend.PerTensor}, {Kind: backend.PerRow}, {Kind: backend.PerColumn}, {Kind: backend.PerBlock, Block: 16}} {
				g, err := gpu.Amax(x.g, red)
				Expect(err).NotTo(HaveOccurred())
				c, err := cpuBE.Amax(x.c, red)
				Expect(err).NotTo(HaveOccurred())
				Expect(bitsEqual(g, c)).To(BeTrue(), "%v %+v", dt, red)
			}
			x.free()
			special := append([]float32(nil), data...)
			special[0] = float32(math.NaN())
			special[100] = float32(math.Inf(-1))
			special[200] = float32(math.Copysign(0, -1))
			y := upload(64, 96, special)
			for _, red := range []backend.Reduction{{Kind: backend.PerTensor}, {Kind: backend.PerRow}, {Kind: backend.PerColumn}, {Kind: backend.PerBlock, Block: 32}} {
				g, err := gpu.Amax(y.g, red)
				Expect(err).NotTo(HaveOccurred())
				c, err := cpuBE.Amax(y.c, red)
				Expect(err).NotTo(HaveOccurred())
				Expect(bitsEqual(g, c)).To(BeTrue(), "%v %+v: GPU %v CPU %v", dt, red, g[:min(4, len(g))], c[:min(4, len(c))])
			}
			// A view reduces only its rows.
			v, err := gpu.View(y.g, 2, 5)
			Expect(err).NotTo(HaveOccurred())
			g, err := gpu.Amax(v, backend.Reduction{Kind: backend.PerTensor})
			Expect(err).NotTo(HaveOccurred())
			var want float32
			for _, f := range special[2*96 : 5*96] {
				want = max(want, float32(math.Abs(float64(f))))
			}
			Expect(g).To(Equal([]float32{want}))
			y.free()
		}
	})

	It("keeps float32 results when a float32 operation writes a bfloat16 tensor, and reads f32 data in bfloat16 operations exactly", func() {
		a := upload(40, 64, randn(r, 40*64, 1, backend.BF16))   // stored as bfloat16
		odd := upload(40, 64, randn(r, 40*64, 1, backend.F32))  // not bfloat16 values
		w := upload(32, 64, randn(r, 32*64, 0.1, backend.BF16)) // bfloat16 weight
		s := alloc(40, 64)
		Expect(gpu.Add(s.g, a.g, a.g, backend.BF16)).To(Succeed()) // materialised as bfloat16
		Expect(cpuBE.Add(s.c, a.c, a.c, backend.BF16)).To(Succeed())
		Expect(gpu.Add(s.g, s.g, odd.g, backend.F32)).To(Succeed()) // widened to float32
		Expect(cpuBE.Add(s.c, s.c, odd.c, backend.F32)).To(Succeed())
		g, c := s.results()
		Expect(bitsEqual(g, c)).To(BeTrue())
		y := alloc(40, 32)
		Expect(gpu.Linear(y.g, odd.g, w.g, nil, backend.BF16)).To(Succeed()) // f32 operand: exact path
		Expect(cpuBE.Linear(y.c, odd.c, w.c, nil, backend.BF16)).To(Succeed())
		g, c = y.results()
		Expect(bitsEqual(g, c)).To(BeTrue())
		for _, t := range []both{a, odd, w, s, y} {
			t.free()
		}
	})

	It("rejects mismatched shapes and freed tensors with errors", func() {
		x := upload(4, 8, make([]float32, 32))
		w := upload(3, 7, make([]float32, 21))
		y := alloc(4, 3)
		err := gpu.Linear(y.g, x.g, w.g, nil, backend.BF16)
		Expect(errors.Is(err, backend.ErrShape)).To(BeTrue(), "%v", err)
		_, err = gpu.GroupedLinear(y.g, x.g, w.g, []int{0, 5}, backend.BF16)
		Expect(errors.Is(err, backend.ErrShape)).To(BeTrue(), "%v", err)
		_, err = gpu.View(x.g, 3, 9)
		Expect(errors.Is(err, backend.ErrShape)).To(BeTrue())
		gpu.Free(x.g)
		Expect(gpu.Download(x.g, make([]float32, 32))).To(MatchError(ContainSubstring("after Free")))
		foreign, err := cpuBE.Alloc(1, 1)
		Expect(err).NotTo(HaveOccurred())
		_, err = gpu.Amax(foreign, backend.Reduction{Kind: backend.PerTensor})
		Expect(err).To(MatchError(ContainSubstring("not made by the CUDA backend")))
		w.free()
		y.free()
	})
})

// attnBF16Tol bounds the bfloat16 flash attention against the CPU's eager
// order, relative to the largest output magnitude.
const attnBF16Tol = 1.0 / 256
