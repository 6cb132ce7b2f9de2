//go:build cuda

package gpu_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/ptqgate/ptqgate/fixtures"
	"github.com/ptqgate/ptqgate/internal/refdata"
	"github.com/ptqgate/ptqgate/ptqcore/backend"
	"github.com/ptqgate/ptqgate/ptqcore/calib"
	"github.com/ptqgate/ptqgate/ptqcore/model"
	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
)

// qwen35Case is the Qwen3.5-MoE reference (Gated DeltaNet layers 0–2,
// gated full attention in layer 3, shared experts with sigmoid gates).
const qwen35Case = "qwen3_5-moe-tiny"

// Tolerances of testdata/hf/qwen3_5-moe-tiny/README.md: logits and
// hidden states abs 5e-5, routing weights abs 2e-5, amax relative 2e-5.
var qwen35Tol = struct{ logits, hidden, routerLogits, routingWeights, amax float64 }{5e-5, 5e-5, 5e-5, 2e-5, 2e-5}

// qwen35GPUCPUTol bounds |GPU − CPU| of the float32 Qwen3.5 forward: the
// new kernels follow the CPU's order of operations, so only float64
// library functions (exp, log1p) and float64 sums of squares reduced in
// another order can move a value by a float32 ulp, which the recurrence
// carries along; the bound is ten times below the reference tolerance
// (observed on an H200: bit-identical logits and hidden states).
const qwen35GPUCPUTol = 5e-6

// qwen35AmaxGPUCPURel bounds the relative amax difference GPU vs CPU.
const qwen35AmaxGPUCPURel = 1e-5

// Op-level tolerances of the Gated DeltaNet kernels against the CPU
// backend: |GPU − CPU| ≤ k·ulp_dt(CPU) + eps·max|CPU|. Element-wise
// kernels differ at most where a float64 exp or sum of squares rounds
// differently (one ulp of the output; two for the norm, whose inverse and
// output each can move); the recurrence carries such a difference through
// the state, where cancellation can make a tiny output's ulp distance
// large, hence the absolute term. (Observed on an H200: every element of
// every shape and dtype bit-identical.)
const (
	deltaOpULPs  = 2
	deltaRuleEps = 1.0 / (1 << 20)
)

// ulpOf is the spacing of dt values at v (float32 for F32).
func ulpOf(dt backend.DType, v float32) float64 {
	bits := map[backend.DType]int{backend.F32: 24, backend.BF16: 8, backend.F16: 11}[dt]
	a := math.Abs(float64(v))
	if dt == backend.F16 && a < math.Ldexp(1, -14) {
		return math.Ldexp(1, -24)
	}
	if a < math.SmallestNonzeroFloat32*(1<<23) {
		return math.SmallestNonzeroFloat32
	}
	_, e := math.Frexp(a)
	return math.Ldexp(1, e-bits)
}

// closeOps compares GPU with CPU results within k·ulp + eps·max|CPU| and
// returns the number of bit-identical elements and the largest |GPU − CPU|.
func closeOps(what string, g, c []float32, dt backend.DType, k, eps float64) (same int, worst float64) {
	Expect(g).To(HaveLen(len(c)), what)
	_, scale := maxAbsDiff(c, c)
	for i := range g {
		d := math.Abs(float64(g[i]) - float64(c[i]))
		if math.Float32bits(g[i]) == math.Float32bits(c[i]) {
			same++
			continue
		}
		worst = max(worst, d)
		lim := k*ulpOf(dt, c[i]) + eps*scale
		Expect(d <= lim).To(BeTrue(), "%s element %d: GPU %g, CPU %g (|Δ| %g > %g)", what, i, g[i], c[i], d, lim)
	}
	return same, worst
}

// uniform returns n values uniform in [lo, hi), rounded to dt.
func uniform(r *rand.Rand, n int, lo, hi float64, dt backend.DType) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = roundTo(dt, float32(lo+(hi-lo)*r.Float64()))
	}
	return out
}

func sum(xs []int) int {
	t := 0
	for _, x := range xs {
		t += x
	}
	return t
}

// deltaShape is one Gated DeltaNet configuration of the op-level specs.
type deltaShape struct {
	nk, nv, dk, dv, conv int
	seqs                 []int
}

var deltaShapes = []deltaShape{
	{nk: 2, nv: 2, dk: 16, dv: 16, conv: 4, seqs: []int{24, 24}},             // the reference model
	{nk: 1, nv: 4, dk: 32, dv: 48, conv: 4, seqs: []int{1, 50, 7}},           // nv > nk, a one-token sequence
	{nk: 4, nv: 8, dk: 64, dv: 100, conv: 3, seqs: []int{33, 90, 2, 5}},      // dv not a multiple of 32
	{nk: 2, nv: 6, dk: 128, dv: 128, conv: 4, seqs: []int{200, 3, 64}},       // 64 KiB of state: opt-in shared memory
	{nk: 1, nv: 1, dk: 8, dv: 1024, conv: 2, seqs: []int{9}},                 // the widest block
	{nk: 3, nv: 3, dk: 256, dv: 40, conv: 4, seqs: []int{1, 1, 1, 1, 17, 2}}, // dk above the block size
}

// deltaInputs are the inputs of one layer's recurrence, in both backends.
type deltaInputs struct {
	spec                     backend.GatedDeltaSpec
	qkv, a, b, aLog, dtBias  both
	convIn, convW, z, normW  both
	rows, qkvCols, coreWidth int
}

func newDeltaInputs(r *rand.Rand, s deltaShape, dt backend.DType) deltaInputs {
	spec := backend.GatedDeltaSpec{KeyHeads: s.nk, ValueHeads: s.nv, KeyDim: s.dk, ValueDim: s.dv, SeqLens: s.seqs}
	m, cols, width := sum(s.seqs), spec.QKVCols(), s.nv*s.dv
	return deltaInputs{
		spec: spec, rows: m, qkvCols: cols, coreWidth: width,
		qkv:    upload(m, cols, randn(r, m*cols, 1, dt)),
		a:      upload(m, s.nv, randn(r, m*s.nv, 1, dt)),
		b:      upload(m, s.nv, randn(r, m*s.nv, 1.5, dt)),
		aLog:   upload(1, s.nv, uniform(r, s.nv, -3, -1, dt)),
		dtBias: upload(1, s.nv, randn(r, s.nv, 0.5, dt)),
		convIn: upload(m, cols, randn(r, m*cols, 1, dt)),
		convW:  upload(cols, s.conv, randn(r, cols*s.conv, 0.5, dt)),
		z:      upload(m, width, randn(r, m*width, 1, dt)),
		normW:  upload(1, s.dv, uniform(r, s.dv, 0.6, 1.4, dt)),
	}
}

func (in deltaInputs) free() {
	for _, t := range []both{in.qkv, in.a, in.b, in.aLog, in.dtBias, in.convIn, in.convW, in.z, in.normW} {
		t.free()
	}
}

func linearAttention(be backend.Backend) backend.LinearAttention {
	la, ok := be.(backend.LinearAttention)
	Expect(ok).To(BeTrue(), "%s does not implement backend.LinearAttention", be.Name())
	return la
}

func sigmoidGate(be backend.Backend) backend.SigmoidGate {
	sg, ok := be.(backend.SigmoidGate)
	Expect(ok).To(BeTrue(), "%s does not implement backend.SigmoidGate", be.Name())
	return sg
}

var _ = Describe("Gated DeltaNet and sigmoid-gate operations against the CPU backend", Label("gpu"), func() {
	var r *rand.Rand
	BeforeEach(func() { r = rand.New(rand.NewPCG(35, 36)) })

	for _, dt := range dtypes {
		It(fmt.Sprintf("CausalConv1DSilu per sequence in %v", dt), func() {
			same, total, worst := 0, 0, 0.0
			for _, s := range deltaShapes {
				in := newDeltaInputs(r, s, dt)
				y := alloc(in.rows, in.qkvCols)
				Expect(linearAttention(gpu).CausalConv1DSilu(y.g, in.convIn.g, in.convW.g, s.seqs, dt)).To(Succeed())
				Expect(linearAttention(cpuBE).CausalConv1DSilu(y.c, in.convIn.c, in.convW.c, s.seqs, dt)).To(Succeed())
				g, c := y.results()
				n, w := closeOps(fmt.Sprintf("conv %v %+v", dt, s), g, c, dt, 1, 0)
				same, total, worst = same+n, total+len(g), max(worst, w)
				y.free()
				in.free()
			}
			AddReportEntry(fmt.Sprintf("causal conv1d %v: bit-identical / max |GPU − CPU|", dt), fmt.Sprintf("%d of %d / %.3g", same, total, worst))
		})

		It(fmt.Sprintf("GatedDeltaRule with head repetition and several sequences in %v", dt), func() {
			same, total, worst := 0, 0, 0.0
			for _, s := range deltaShapes {
				in := newDeltaInputs(r, s, dt)
				core := alloc(in.rows, in.coreWidth)
				Expect(linearAttention(gpu).GatedDeltaRule(core.g, in.qkv.g, in.a.g, in.b.g, in.aLog.g, in.dtBias.g, in.spec, dt)).To(Succeed())
				Expect(linearAttention(cpuBE).GatedDeltaRule(core.c, in.qkv.c, in.a.c, in.b.c, in.aLog.c, in.dtBias.c, in.spec, dt)).To(Succeed())
				g, c := core.results()
				k := float64(deltaOpULPs)
				if dt != backend.F32 {
					k = 1
				}
				n, w := closeOps(fmt.Sprintf("delta rule %v %+v", dt, s), g, c, dt, k, deltaRuleEps)
				same, total, worst = same+n, total+len(g), max(worst, w)
				core.free()
				in.free()
			}
			AddReportEntry(fmt.Sprintf("gated delta rule %v: bit-identical / max |GPU − CPU|", dt), fmt.Sprintf("%d of %d / %.3g", same, total, worst))
		})

		It(fmt.Sprintf("GatedRMSNorm in place and into another tensor in %v", dt), func() {
			same, total, worst := 0, 0, 0.0
			for i, s := range deltaShapes {
				in := newDeltaInputs(r, s, dt)
				x := upload(in.rows, in.coreWidth, randn(r, in.rows*in.coreWidth, 2, dt))
				y := x
				if i%2 == 1 {
					y = alloc(in.rows, in.coreWidth)
				}
				Expect(linearAttention(gpu).GatedRMSNorm(y.g, x.g, in.z.g, in.normW.g, s.dv, 1e-6, dt)).To(Succeed())
				Expect(linearAttention(cpuBE).GatedRMSNorm(y.c, x.c, in.z.c, in.normW.c, s.dv, 1e-6, dt)).To(Succeed())
				g, c := y.results()
				k := float64(deltaOpULPs)
				if dt != backend.F32 {
					k = 1
				}
				n, w := closeOps(fmt.Sprintf("gated rmsnorm %v %+v", dt, s), g, c, dt, k, 0)
				same, total, worst = same+n, total+len(g), max(worst, w)
				if i%2 == 1 {
					y.free()
				}
				x.free()
				in.free()
			}
			AddReportEntry(fmt.Sprintf("gated rmsnorm %v: bit-identical / max |GPU − CPU|", dt), fmt.Sprintf("%d of %d / %.3g", same, total, worst))
		})

		It(fmt.Sprintf("SigmoidMul with a full-size and a broadcast [M,1] gate, in place, in %v", dt), func() {
			for _, sh := range []struct{ m, n int }{{48, 64}, {300, 1000}, {1, 7}, {5, 1}} {
				for _, bcast := range []bool{false, true} {
					gc := sh.n
					if bcast {
						gc = 1
					}
					x := upload(sh.m, sh.n, randn(r, sh.m*sh.n, 1, dt))
					gate := upload(sh.m, gc, randn(r, sh.m*gc, 3, dt))
					out := alloc(sh.m, sh.n)
					Expect(sigmoidGate(gpu).SigmoidMul(out.g, x.g, gate.g, dt)).To(Succeed())
					Expect(sigmoidGate(cpuBE).SigmoidMul(out.c, x.c, gate.c, dt)).To(Succeed())
					g, c := out.results()
					closeOps(fmt.Sprintf("sigmoid·mul %v %+v broadcast %v", dt, sh, bcast), g, c, dt, 1, 0)
					// In place, as the model calls it.
					Expect(sigmoidGate(gpu).SigmoidMul(x.g, x.g, gate.g, dt)).To(Succeed())
					Expect(sigmoidGate(cpuBE).SigmoidMul(x.c, x.c, gate.c, dt)).To(Succeed())
					gi, ci := x.results()
					Expect(bitsEqual(gi, g)).To(BeTrue(), "in place differs from out of place")
					closeOps("sigmoid·mul in place", gi, ci, dt, 1, 0)
					x.free()
					gate.free()
					out.free()
				}
			}
		})
	}

	It("rejects bad sequence lengths, an aliased convolution and mismatched shapes", func() {
		la := linearAttention(gpu)
		x, err := gpu.Upload(6, 4, make([]float32, 24))
		Expect(err).NotTo(HaveOccurred())
		w, err := gpu.Upload(4, 3, make([]float32, 12))
		Expect(err).NotTo(HaveOccurred())
		y, err := gpu.Alloc(6, 4)
		Expect(err).NotTo(HaveOccurred())
		Expect(errors.Is(la.CausalConv1DSilu(y, x, w, []int{2, 3}, backend.F32), backend.ErrShape)).To(BeTrue())
		Expect(errors.Is(la.CausalConv1DSilu(y, x, w, []int{7, -1}, backend.F32), backend.ErrShape)).To(BeTrue())
		Expect(la.CausalConv1DSilu(x, x, w, []int{6}, backend.F32)).NotTo(Succeed())
		spec := backend.GatedDeltaSpec{KeyHeads: 2, ValueHeads: 3, KeyDim: 1, ValueDim: 1, SeqLens: []int{6}}
		Expect(errors.Is(la.GatedDeltaRule(y, x, x, x, w, w, spec, backend.F32), backend.ErrShape)).To(BeTrue())
		gate, err := gpu.Alloc(6, 2)
		Expect(err).NotTo(HaveOccurred())
		Expect(errors.Is(sigmoidGate(gpu).SigmoidMul(y, x, gate, backend.F32), backend.ErrShape)).To(BeTrue())
		for _, t := range []backend.Tensor{x, w, y, gate} {
			gpu.Free(t)
		}
		// The backend is still usable after rejected calls.
		z, err := gpu.Upload(1, 1, []float32{1})
		Expect(err).NotTo(HaveOccurred())
		Expect(download(gpu, z)).To(Equal([]float32{1}))
		gpu.Free(z)
	})

	It("times the recurrence at Qwen3.5-35B-A3B's linear-attention shapes against the CPU", func() {
		s := deltaShape{nk: 16, nv: 32, dk: 128, dv: 128, conv: 4, seqs: []int{2048, 1024, 1024}}
		in := newDeltaInputs(r, s, backend.BF16)
		defer in.free()
		core := alloc(in.rows, in.coreWidth)
		defer core.free()
		conv := alloc(in.rows, in.qkvCols)
		defer conv.free()
		la := linearAttention(gpu)
		wait := func() { download(gpu, must(gpu.View(core.g, 0, 1))) }
		step := func() {
			Expect(la.CausalConv1DSilu(conv.g, in.convIn.g, in.convW.g, s.seqs, backend.BF16)).To(Succeed())
			Expect(la.GatedDeltaRule(core.g, in.qkv.g, in.a.g, in.b.g, in.aLog.g, in.dtBias.g, in.spec, backend.BF16)).To(Succeed())
			Expect(la.GatedRMSNorm(core.g, core.g, in.z.g, in.normW.g, s.dv, 1e-6, backend.BF16)).To(Succeed())
		}
		step()
		wait()
		t0 := time.Now()
		const reps = 3
		for range reps {
			step()
		}
		wait()
		per := time.Since(t0) / reps
		t0 = time.Now()
		Expect(la.GatedDeltaRule(core.g, in.qkv.g, in.a.g, in.b.g, in.aLog.g, in.dtBias.g, in.spec, backend.BF16)).To(Succeed())
		wait()
		rule := time.Since(t0)
		t0 = time.Now()
		Expect(linearAttention(cpuBE).GatedDeltaRule(core.c, in.qkv.c, in.a.c, in.b.c, in.aLog.c, in.dtBias.c, in.spec, backend.BF16)).To(Succeed())
		onCPU := time.Since(t0)
		g, c := core.results()
		same, worst := closeOps("delta rule at 35B-A3B shapes", g, c, backend.BF16, 1, deltaRuleEps)
		AddReportEntry("Gated DeltaNet layer core, 4096 tokens (2048+1024+1024), 16 key / 32 value heads of 128, bf16",
			fmt.Sprintf("conv+rule+norm %v per layer on the GPU; rule alone %v (CPU backend %v); bit-identical %d of %d, max |Δ| %.3g",
				per, rule, onCPU, same, len(g), worst))
	})
})

func must[T any](v T, err error) T {
	Expect(err).NotTo(HaveOccurred())
	return v
}

var _ = Describe("Qwen3.5-MoE on the GPU", Label("gpu"), func() {
	It(fmt.Sprintf("matches transformers on %s in both layouts and expert modes, bit-identically across them, and the CPU within %g", qwen35Case, qwen35GPUCPUTol), func() {
		f, err := safetensors.Open(filepath.Join(caseDir(qwen35Case), "expected.safetensors"))
		Expect(err).NotTo(HaveOccurred())
		defer f.Close()
		exp := expected{f}
		b := loadBatches(qwen35Case)
		worst := map[string]float64{}
		track := func(key, what string, got, want []float32, tol float64) {
			within(what, got, want, tol, 0)
			d, _ := maxAbsDiff(got, want)
			worst[key] = max(worst[key], d)
		}
		var first []*model.Output
		for _, dir := range []string{caseDir(qwen35Case), fusedCopy(qwen35Case)} {
			for _, mode := range []model.ExpertsMode{model.ExpertsGrouped, model.ExpertsEager} {
				m, err := model.Load(dir)
				Expect(err).NotTo(HaveOccurred())
				outs := forwardAll(m, gpu, b, mode)
				for bi, out := range outs {
					track("logits", fmt.Sprintf("%s logits.b%d", mode, bi), out.Logits, exp.floats(fmt.Sprintf("logits.b%d", bi)), qwen35Tol.logits)
				}
				out := outs[0]
				Expect(m.Layers).To(HaveLen(4))
				for li := range m.Layers {
					track("hidden", fmt.Sprintf("%s hidden.layer%d", mode, li), out.Hidden[li], exp.floats(fmt.Sprintf("hidden.layer%d", li)), qwen35Tol.hidden)
					track("router", fmt.Sprintf("router_logits.layer%d", li), out.RouterLogits[li], exp.floats(fmt.Sprintf("router_logits.layer%d", li)), qwen35Tol.routerLogits)
					track("routing", fmt.Sprintf("topk_weights.layer%d", li), out.TopKWeights[li], exp.floats(fmt.Sprintf("topk_weights.layer%d", li)), qwen35Tol.routingWeights)
					Expect(out.TopK[li]).To(Equal(exp.int32s(fmt.Sprintf("topk.layer%d", li))), "topk.layer%d", li)
				}
				if first == nil {
					first = outs
					cpuOuts := forwardAll(m, cpuBE, b, mode)
					var dl, dh float64
					for bi := range outs {
						d, _ := maxAbsDiff(outs[bi].Logits, cpuOuts[bi].Logits)
						dl = max(dl, d)
					}
					for li := range outs[0].Hidden {
						d, _ := maxAbsDiff(outs[0].Hidden[li], cpuOuts[0].Hidden[li])
						dh = max(dh, d)
					}
					AddReportEntry(qwen35Case+": max |GPU − CPU| logits / hidden (float32)", fmt.Sprintf("%.3g / %.3g", dl, dh))
					Expect(dl).To(BeNumerically("<=", qwen35GPUCPUTol))
					Expect(dh).To(BeNumerically("<=", qwen35GPUCPUTol))
					continue
				}
				for bi := range outs {
					Expect(bitsEqual(outs[bi].Logits, first[bi].Logits)).To(BeTrue(), "batch %d: %s logits in %s differ from the first run", bi, mode, dir)
				}
			}
		}
		AddReportEntry(qwen35Case+": max |GPU − transformers| logits / hidden / router logits / routing weights",
			fmt.Sprintf("%.3g / %.3g / %.3g / %.3g", worst["logits"], worst["hidden"], worst["router"], worst["routing"]))
	})

	It(fmt.Sprintf("matches transformers' amax and eager hook counts on %s in every mode, and the CPU calibration", qwen35Case), func() {
		var ref refdata.Amax
		readJSON(filepath.Join(caseDir(qwen35Case), "amax.json"), &ref)
		var counts refdata.Counts
		readJSON(filepath.Join(caseDir(qwen35Case), "counts.json"), &counts)
		b := loadBatches(qwen35Case)
		worstRef, worstCPU := 0.0, 0.0
		for _, dir := range []string{caseDir(qwen35Case), fusedCopy(qwen35Case)} {
			for _, tc := range []struct {
				mode   model.ExpertsMode
				recipe string
			}{{model.ExpertsGrouped, fp8All()}, {model.ExpertsEager, fp8All()}, {model.ExpertsGrouped, fp8AllLayerwise()}} {
				m, err := model.Load(dir)
				Expect(err).NotTo(HaveOccurred())
				res := calibrate(m, gpu, tc.recipe, b, calib.Options{Experts: tc.mode})
				checkAmax(res, &ref, qwen35Tol.amax)
				checkCounts(res, &counts)
				Expect(res.Uncalibrated).To(BeEmpty())
				for name, want := range ref.Amax {
					if q, ok := res.Quantizer(name); ok && len(q.Amax) == 1 {
						worstRef = max(worstRef, relErr(float64(q.Amax[0]), want))
					}
				}
				m.Release()
				mc, err := model.Load(dir)
				Expect(err).NotTo(HaveOccurred())
				cres := calibrate(mc, cpuBE, tc.recipe, b, calib.Options{Experts: tc.mode})
				sameCalibration(res, cres, qwen35AmaxGPUCPURel)
				for i := range res.Quantizers {
					for j := range res.Quantizers[i].Amax {
						worstCPU = max(worstCPU, relErr(float64(res.Quantizers[i].Amax[j]), float64(cres.Quantizers[i].Amax[j])))
					}
				}
			}
		}
		AddReportEntry(qwen35Case+": max relative amax difference vs transformers / vs the CPU", fmt.Sprintf("%.3g / %.3g", worstRef, worstCPU))
	})

	It("runs a bfloat16 Qwen3.5-MoE with 128-wide Gated DeltaNet heads as close to the float32 forward as the CPU's bfloat16 forward", func() {
		opt, err := fixtures.Defaults(qwen35Case)
		Expect(err).NotTo(HaveOccurred())
		opt.HiddenSize, opt.MoEIntermediate, opt.SharedExpertSize, opt.Vocab = 256, 128, 128, 512
		opt.LinearKeyHeads, opt.LinearValueHeads, opt.LinearKeyHeadDim, opt.LinearValueHeadDim = 2, 4, 128, 128
		opt.HeadDim, opt.DType, opt.Layout, opt.Seed = 64, fixtures.DTypeBF16, fixtures.LayoutFused, 3535
		dir := GinkgoT().TempDir()
		Expect(fixtures.Write(dir, opt)).To(Succeed())
		b := randomBatches(35, opt.Vocab, []int{150, 90, 7}, []int{256}, []int{33, 1, 64})
		m, err := model.Load(dir)
		Expect(err).NotTo(HaveOccurred())
		Expect(m.DType).To(Equal(backend.BF16))
		t0 := time.Now()
		grouped := forwardAll(m, gpu, b, model.ExpertsGrouped)
		gpuTime := time.Since(t0)
		eager := forwardAll(m, gpu, b, model.ExpertsEager)
		onCPU := forwardAll(m, cpuBE, b, model.ExpertsGrouped)
		m.DType = backend.F32
		truth := forwardAll(m, cpuBE, b, model.ExpertsGrouped)
		var gMax, cMax, gSum, cSum float64
		for i := range grouped {
			Expect(bitsEqual(grouped[i].Logits, eager[i].Logits)).To(BeTrue(), "batch %d: grouped and eager logits differ", i)
			for j, t := range truth[i].Logits {
				dg := math.Abs(float64(grouped[i].Logits[j]) - float64(t))
				dc := math.Abs(float64(onCPU[i].Logits[j]) - float64(t))
				gMax, cMax, gSum, cSum = max(gMax, dg), max(cMax, dc), gSum+dg, cSum+dc
			}
		}
		AddReportEntry("bf16 Qwen3.5 fixture: |logit − float32 forward|, GPU bf16 vs CPU bf16",
			fmt.Sprintf("max %.4g vs %.4g, sum %.4g vs %.4g; GPU forward of 3 batches %v", gMax, cMax, gSum, cSum, gpuTime))
		Expect(gSum).To(BeNumerically("<=", bf16ErrRatio*cSum), "mean error of the GPU's bfloat16 forward")
		Expect(gMax).To(BeNumerically("<=", bf16ErrRatio*cMax), "max error of the GPU's bfloat16 forward")
	})
})
