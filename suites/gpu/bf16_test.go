//go:build cuda

package gpu_test

import (
	"fmt"
	"math"
	"math/rand/v2"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/ptqgate/ptqgate/fixtures"
	"github.com/ptqgate/ptqgate/ptqcore/backend"
	"github.com/ptqgate/ptqgate/ptqcore/backend/cuda"
	"github.com/ptqgate/ptqgate/ptqcore/calib"
	"github.com/ptqgate/ptqgate/ptqcore/model"
)

// bf16Fixture writes a bfloat16 Qwen3-MoE big enough for the tensor-core
// paths (head_dim 128: flash attention; K multiples of 64) with a dense
// layer and an unreachable expert, and returns its folder.
func bf16Fixture() string {
	dir := GinkgoT().TempDir()
	Expect(fixtures.Write(dir, fixtures.Options{
		Architecture: fixtures.Qwen3MoE, Layers: 3, Experts: 16, TopK: 4, HiddenSize: 256, IntermediateSize: 512,
		MoEIntermediate: 128, Heads: 4, KVHeads: 2, HeadDim: 128, Vocab: 1000, MLPOnlyLayers: []int{1},
		NormTopKProb: true, DType: fixtures.DTypeBF16, Layout: fixtures.LayoutFused, Seed: 77,
		Unreachable: []fixtures.ExpertRef{{Layer: 2, Expert: 15}},
	})).To(Succeed())
	return dir
}

// randomBatches makes calibration batches of random token ids.
func randomBatches(seed uint64, vocab int, lens ...[]int) *calib.Batches {
	r := rand.New(rand.NewPCG(seed, seed+1))
	b := &calib.Batches{Path: "random"}
	for _, lb := range lens {
		var seqs [][]int32
		for _, n := range lb {
			s := make([]int32, n)
			for i := range s {
				s[i] = int32(r.IntN(vocab))
			}
			seqs = append(seqs, s)
		}
		b.Batches = append(b.Batches, seqs)
	}
	return b
}

// bf16Batches: sequences from 1 to 256 tokens (one to four query tiles).
func bf16Batches() *calib.Batches {
	return randomBatches(9, 1000, []int{150, 90, 7}, []int{256}, []int{33, 200, 1})
}

// bf16ErrRatio bounds the GPU's bfloat16 logit error (against the float32
// forward of the same weights) by that of the CPU backend's bfloat16
// forward: the GPU keeps every bfloat16 rounding point and only sums in
// another order, so its error must be of the same size (observed ratio
// about 1; rounding noise makes either side the larger one).
const bf16ErrRatio = 1.5

var _ = Describe("a bfloat16 model on the GPU", Label("gpu"), func() {
	It("gives bit-identical logits in both expert modes, as close to the float32 forward as the CPU's bfloat16 forward", func() {
		dir := bf16Fixture()
		b := bf16Batches()
		m, err := model.Load(dir)
		Expect(err).NotTo(HaveOccurred())
		Expect(m.DType).To(Equal(backend.BF16))
		grouped := forwardAll(m, gpu, b, model.ExpertsGrouped)
		eager := forwardAll(m, gpu, b, model.ExpertsEager)
		onCPU := forwardAll(m, cpuBE, b, model.ExpertsGrouped)
		// The float32 forward of the same bfloat16 weights is the truth
		// both bfloat16 forwards approximate.
		m.DType = backend.F32
		truth := forwardAll(m, cpuBE, b, model.ExpertsGrouped)
		var gMax, cMax, gSum, cSum, scale float64
		n := 0
		for i := range grouped {
			Expect(bitsEqual(grouped[i].Logits, eager[i].Logits)).To(BeTrue(), "batch %d: grouped and eager logits differ", i)
			for j, t := range truth[i].Logits {
				dg := math.Abs(float64(grouped[i].Logits[j]) - float64(t))
				dc := math.Abs(float64(onCPU[i].Logits[j]) - float64(t))
				gMax, cMax = max(gMax, dg), max(cMax, dc)
				gSum, cSum = gSum+dg, cSum+dc
				scale = max(scale, math.Abs(float64(t)))
				n++
			}
		}
		AddReportEntry("bf16 fixture: |logit − float32 forward|, GPU bf16 vs CPU bf16",
			fmt.Sprintf("max %.4g vs %.4g, mean %.4g vs %.4g (max |logit| %.3g)", gMax, cMax, gSum/float64(n), cSum/float64(n), scale))
		Expect(gSum).To(BeNumerically("<=", bf16ErrRatio*cSum), "mean error of the GPU's bfloat16 forward")
		Expect(gMax).To(BeNumerically("<=", bf16ErrRatio*cMax), "max error of the GPU's bfloat16 forward")
	})

	It("calibrates with identical counts in both modes, and the GPU's amax stay close to the CPU's", func() {
		dir := bf16Fixture()
		b := bf16Batches()
		var results []*calib.Result
		for _, mode := range []model.ExpertsMode{model.ExpertsGrouped, model.ExpertsEager} {
			m, err := model.Load(dir)
			Expect(err).NotTo(HaveOccurred())
			results = append(results, calibrate(m, gpu, fp8All(), b, calib.Options{Experts: mode}))
		}
		// Both GPU modes: identical counts and amax, bit for bit.
		sameCalibration(results[0], results[1], 0)
		m, err := model.Load(dir)
		Expect(err).NotTo(HaveOccurred())
		c := calibrate(m, cpuBE, fp8All(), b, calib.Options{Experts: model.ExpertsGrouped})
		g := results[0]
		// Routing decided on bfloat16 router logits: the GPU's top-k equals
		// the CPU's unless two probabilities are within a rounding step.
		routed, differ := 0, 0
		for i := range g.Experts {
			routed += int(c.Experts[i].Tokens)
			differ += int(math.Abs(float64(g.Experts[i].Tokens - c.Experts[i].Tokens)))
		}
		AddReportEntry("bf16 fixture: routing pairs that moved between experts (GPU vs CPU)", fmt.Sprintf("%d of %d", differ/2, routed))
		Expect(float64(differ)).To(BeNumerically("<=", 0.002*float64(routed)))
		worst := 0.0
		for i := range g.Quantizers {
			for j := range g.Quantizers[i].Amax {
				worst = max(worst, relErr(float64(g.Quantizers[i].Amax[j]), float64(c.Quantizers[i].Amax[j])))
			}
		}
		AddReportEntry("bf16 fixture: max relative amax difference GPU vs CPU", worst)
		Expect(worst).To(BeNumerically("<=", bf16AmaxTol))
	})

	It("streams weights through a small window and gives the resident run's logits bit for bit", func() {
		dir := bf16Fixture()
		b := bf16Batches()
		m, err := model.Load(dir)
		Expect(err).NotTo(HaveOccurred())
		run := func(opt cuda.Options) ([]*model.Output, cuda.Stats, *cuda.Backend) {
			be, err := cuda.NewWithOptions(opt)
			Expect(err).NotTo(HaveOccurred())
			outs := forwardAll(m, be, b, model.ExpertsGrouped)
			Expect(m.Prepare(be)).To(Succeed()) // for the weight figures
			stats, err := be.Stats()
			Expect(err).NotTo(HaveOccurred())
			m.Release()
			return outs, stats[0], be
		}
		resident, rs, rb := run(cuda.Options{StreamMinBytes: 16 << 10})
		Expect(rb.Close()).To(Succeed())
		streamed, ss, st := run(cuda.Options{Weights: cuda.WeightsStream, StreamMinBytes: 16 << 10, StreamWindow: 2 << 20})
		defer func() { Expect(st.Close()).To(Succeed()) }()
		for i := range resident {
			Expect(bitsEqual(streamed[i].Logits, resident[i].Logits)).To(BeTrue(), "batch %d", i)
		}
		AddReportEntry("streaming stats", fmt.Sprintf("resident %+v; streamed %+v", rs, ss))
		Expect(ss.StreamedWeights).To(BeNumerically(">", 3*ss.StreamWindow), "the model must not fit the window")
		Expect(ss.UploadedBytes).To(BeNumerically(">", ss.StreamedWeights), "weights must have been evicted and uploaded again")
		Expect(rs.PoolUsedHigh-ss.PoolUsedHigh).To(BeNumerically(">", ss.StreamedWeights/2), "streaming must hold far fewer weights than the resident run")
		// Layerwise calibration over the streamed weights equals the
		// resident calibration.
		m2, err := model.Load(dir)
		Expect(err).NotTo(HaveOccurred())
		r1 := calibrate(m2, st, fp8AllLayerwise(), b, calib.Options{})
		m3, err := model.Load(dir)
		Expect(err).NotTo(HaveOccurred())
		r2 := calibrate(m3, gpu, fp8AllLayerwise(), b, calib.Options{})
		sameCalibration(r1, r2, 0)
	})

	It("spreads the layers over two logical devices with the same results", func() {
		_, _, two := spreadOverTwo([]int{0, 0})
		Expect(two.Close()).To(Succeed())
	})

	It("spreads the layers over two real GPUs with the same results", func() {
		n, err := cuda.VisibleDevices()
		Expect(err).NotTo(HaveOccurred())
		if n < 2 {
			Skip(fmt.Sprintf("%d GPU visible: this spec needs two (run it on a two-GPU host)", n))
		}
		dir, b, two := spreadOverTwo([]int{0, 1})
		defer func() { Expect(two.Close()).To(Succeed()) }()
		m1, err := model.Load(dir)
		Expect(err).NotTo(HaveOccurred())
		r1 := calibrate(m1, gpu, fp8AllLayerwise(), b, calib.Options{})
		m2, err := model.Load(dir)
		Expect(err).NotTo(HaveOccurred())
		r2 := calibrate(m2, two, fp8AllLayerwise(), b, calib.Options{})
		sameCalibration(r1, r2, 0)
	})
})

// spreadOverTwo runs the bf16 fixture on a backend whose layers are split
// over the two device ordinals (half the weights each): the logits must
// equal the one-device run bit for bit and both devices must hold weights.
// It returns the fixture, its batches and the two-device backend, which the
// caller closes.
func spreadOverTwo(devices []int) (string, *calib.Batches, *cuda.Backend) {
	dir := bf16Fixture()
	b := bf16Batches()
	m, err := model.Load(dir)
	Expect(err).NotTo(HaveOccurred())
	one := forwardAll(m, gpu, b, model.ExpertsGrouped)
	var weights int64
	for _, p := range m.Params() {
		weights += int64(2 * len(p.Data))
	}
	two, err := cuda.NewWithOptions(cuda.Options{Devices: devices, WeightBudget: weights / 2, StreamMinBytes: 16 << 10})
	Expect(err).NotTo(HaveOccurred())
	Expect(two.Devices()).To(Equal(2))
	spread := forwardAll(m, two, b, model.ExpertsGrouped)
	for i := range one {
		Expect(bitsEqual(spread[i].Logits, one[i].Logits)).To(BeTrue(), "batch %d", i)
	}
	Expect(m.Prepare(two)).To(Succeed())
	stats, err := two.Stats()
	Expect(err).NotTo(HaveOccurred())
	m.Release()
	Expect(stats[0].ResidentWeights).To(BeNumerically(">", 0))
	Expect(stats[1].ResidentWeights).To(BeNumerically(">", 0))
	AddReportEntry("resident weight bytes per device", fmt.Sprintf("%d / %d", stats[0].ResidentWeights, stats[1].ResidentWeights))
	return dir, b, two
}

// bf16AmaxTol bounds the relative amax difference between the GPU and the
// CPU on the bfloat16 fixture: amax are maxima of bfloat16 activations,
// which differ by at most a bfloat16 rounding step or two (2^-7 each)
// when an accumulation rounds the other way.
const bf16AmaxTol = 2.0 / 128
