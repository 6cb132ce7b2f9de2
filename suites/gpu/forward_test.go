//go:build cuda

package gpu_test

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/ptqgate/ptqgate/internal/refdata"
	"github.com/ptqgate/ptqgate/ptqcore/backend"
	"github.com/ptqgate/ptqgate/ptqcore/calib"
	"github.com/ptqgate/ptqgate/ptqcore/model"
	"github.com/ptqgate/ptqgate/ptqcore/numerics"
	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
)

// Tolerances of the reference READMEs (as the CPU model tests use them).
var refTol = map[string]struct{ logits, hidden, routerLogits, routingWeights float64 }{
	"qwen3-moe-tiny":       {logits: 5e-5, hidden: 2e-5, routerLogits: 5e-5, routingWeights: 1e-5},
	"qwen3-moe-dense-tiny": {logits: 5e-5, hidden: 5e-5, routerLogits: 5e-5, routingWeights: 1e-5},
}

// gpuCPUF32Tol bounds |GPU − CPU| for float32 models: the kernels follow
// the CPU's operation order, so only float64 sums reduced in another
// order can differ (observed: 0 or a few float32 ulps).
const gpuCPUF32Tol = 1e-6

var referenceCases = []string{"qwen3-moe-tiny", "qwen3-moe-dense-tiny"}

// fusedCopy puts a case's fused-layout weights into a checkpoint folder of
// their own.
func fusedCopy(name string) string {
	dir := GinkgoT().TempDir()
	for from, to := range map[string]string{"model_fused.safetensors": "model.safetensors", "config.json": "config.json"} {
		in, err := os.Open(filepath.Join(caseDir(name), from))
		Expect(err).NotTo(HaveOccurred())
		out, err := os.Create(filepath.Join(dir, to))
		Expect(err).NotTo(HaveOccurred())
		_, err = io.Copy(out, in)
		Expect(err).NotTo(HaveOccurred())
		Expect(out.Close()).To(Succeed())
		in.Close()
	}
	return dir
}

func loadBatches(name string) *calib.Batches {
	b, err := calib.LoadBatches(filepath.Join(caseDir(name), "calib.json"))
	Expect(err).NotTo(HaveOccurred())
	return b
}

// forwardAll runs every batch through the model on be.
func forwardAll(m *model.Model, be backend.Backend, b *calib.Batches, mode model.ExpertsMode) []*model.Output {
	Expect(m.Prepare(be)).To(Succeed())
	var outs []*model.Output
	for i := range b.Batches {
		out, err := m.Forward(be, b.Batch(i), model.PassOptions{Experts: mode, Head: model.HeadLogits, Capture: true})
		Expect(err).NotTo(HaveOccurred())
		outs = append(outs, out)
	}
	m.Release()
	return outs
}

type expected struct{ f *safetensors.File }

func (e expected) floats(name string) []float32 {
	info, ok := e.f.Tensor(name)
	Expect(ok).To(BeTrue(), "expected.safetensors has no %s", name)
	raw, err := e.f.ReadTensor(name)
	Expect(err).NotTo(HaveOccurred())
	v, err := numerics.DecodeFloats(string(info.DType), raw)
	Expect(err).NotTo(HaveOccurred())
	return v
}

func (e expected) int32s(name string) []int32 {
	raw, err := e.f.ReadTensor(name)
	Expect(err).NotTo(HaveOccurred())
	out := make([]int32, len(raw)/4)
	for i := range out {
		out[i] = int32(uint32(raw[4*i]) | uint32(raw[4*i+1])<<8 | uint32(raw[4*i+2])<<16 | uint32(raw[4*i+3])<<24)
	}
	return out
}

func (e expected) has(name string) bool { _, ok := e.f.Tensor(name); return ok }

// within fails when |got − want| > abs + rel·|want| anywhere.
func within(what string, got, want []float32, abs, rel float64) {
	Expect(got).To(HaveLen(len(want)), what)
	for i := range got {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if !(d <= abs+rel*math.Abs(float64(want[i]))) {
			Fail(fmt.Sprintf("%s: element %d is %g, reference %g (tolerance %g abs + %g rel)", what, i, got[i], want[i], abs, rel))
		}
	}
}

var _ = Describe("the forward on the GPU", Label("gpu"), func() {
	for _, name := range referenceCases {
		It(fmt.Sprintf("matches transformers on %s in both layouts and expert modes, bit-identically across them, and the CPU within %g", name, gpuCPUF32Tol), func() {
			tol := refTol[name]
			f, err := safetensors.Open(filepath.Join(caseDir(name), "expected.safetensors"))
			Expect(err).NotTo(HaveOccurred())
			defer f.Close()
			exp := expected{f}
			b := loadBatches(name)
			var first []*model.Output
			for _, dir := range []string{caseDir(name), fusedCopy(name)} {
				for _, mode := range []model.ExpertsMode{model.ExpertsGrouped, model.ExpertsEager} {
					m, err := model.Load(dir)
					Expect(err).NotTo(HaveOccurred())
					outs := forwardAll(m, gpu, b, mode)
					for bi, out := range outs {
						within(fmt.Sprintf("%s logits.b%d", mode, bi), out.Logits, exp.floats(fmt.Sprintf("logits.b%d", bi)), tol.logits, 0)
					}
					out := outs[0]
					for li := range m.Layers {
						within(fmt.Sprintf("hidden.layer%d", li), out.Hidden[li], exp.floats(fmt.Sprintf("hidden.layer%d", li)), tol.hidden, 0)
						key := fmt.Sprintf("router_logits.layer%d", li)
						if !exp.has(key) {
							continue
						}
						within(key, out.RouterLogits[li], exp.floats(key), tol.routerLogits, 1e-6)
						within(fmt.Sprintf("topk_weights.layer%d", li), out.TopKWeights[li], exp.floats(fmt.Sprintf("topk_weights.layer%d", li)), tol.routingWeights, 0)
						Expect(out.TopK[li]).To(Equal(exp.int32s(fmt.Sprintf("topk.layer%d", li))))
					}
					if first == nil {
						first = outs
						cpuOuts := forwardAll(m, cpuBE, b, mode)
						worst := 0.0
						for bi := range outs {
							d, _ := maxAbsDiff(outs[bi].Logits, cpuOuts[bi].Logits)
							worst = max(worst, d)
						}
						AddReportEntry(name+": max |GPU − CPU| logit (float32)", worst)
						Expect(worst).To(BeNumerically("<=", gpuCPUF32Tol))
						continue
					}
					for bi := range outs {
						Expect(bitsEqual(outs[bi].Logits, first[bi].Logits)).To(BeTrue(), "batch %d: %s logits differ from the first run", bi, mode)
					}
				}
			}
		})
	}
})

// fp8All is the calibration tests' recipe: every quantizer FP8 per tensor.
func fp8All() string { return filepath.Join(root, "ptqcore", "calib", "testdata", "fp8_all.yaml") }

func fp8AllLayerwise() string {
	return filepath.Join(root, "ptqcore", "calib", "testdata", "fp8_all_layerwise.yaml")
}

var _ = Describe("calibration on the GPU", Label("gpu"), func() {
	for _, name := range referenceCases {
		It(fmt.Sprintf("matches transformers' amax and eager hook counts on %s in every mode, and the CPU calibration", name), func() {
			var ref refdata.Amax
			readJSON(filepath.Join(caseDir(name), "amax.json"), &ref)
			var counts refdata.Counts
			readJSON(filepath.Join(caseDir(name), "counts.json"), &counts)
			b := loadBatches(name)
			for _, tc := range []struct {
				mode   model.ExpertsMode
				recipe string
			}{{model.ExpertsGrouped, fp8All()}, {model.ExpertsEager, fp8All()}, {model.ExpertsGrouped, fp8AllLayerwise()}} {
				m, err := model.Load(caseDir(name))
				Expect(err).NotTo(HaveOccurred())
				res := calibrate(m, gpu, tc.recipe, b, calib.Options{Experts: tc.mode})
				checkAmax(res, &ref, map[string]float64{"qwen3-moe-tiny": 1e-5, "qwen3-moe-dense-tiny": 2e-5}[name])
				checkCounts(res, &counts)
				Expect(res.Uncalibrated).To(BeEmpty())
				m.Release()
				mc, err := model.Load(caseDir(name))
				Expect(err).NotTo(HaveOccurred())
				cres := calibrate(mc, cpuBE, tc.recipe, b, calib.Options{Experts: tc.mode})
				sameCalibration(res, cres, 1e-6)
			}
		})
	}
})

// sameCalibration compares two calibrations: identical calls, tokens and
// per-expert accounting; amax within a relative tolerance.
func sameCalibration(g, c *calib.Result, rel float64) {
	Expect(g.Quantizers).To(HaveLen(len(c.Quantizers)))
	for i := range g.Quantizers {
		qg, qc := g.Quantizers[i], c.Quantizers[i]
		Expect(qg.Name).To(Equal(qc.Name))
		Expect(qg.Calls).To(Equal(qc.Calls), qg.Name)
		Expect(qg.Amax).To(HaveLen(len(qc.Amax)), qg.Name)
		for j := range qg.Amax {
			Expect(relErr(float64(qg.Amax[j]), float64(qc.Amax[j]))).To(BeNumerically("<=", rel), "%s[%d]: GPU %g CPU %g", qg.Name, j, qg.Amax[j], qc.Amax[j])
		}
	}
	Expect(g.Experts).To(HaveLen(len(c.Experts)))
	for i := range g.Experts {
		eg, ec := g.Experts[i], c.Experts[i]
		Expect([]int64{eg.Tokens, eg.GateUpCalls, eg.DownCalls}).To(Equal([]int64{ec.Tokens, ec.GateUpCalls, ec.DownCalls}), eg.Name)
	}
	Expect(g.Uncalibrated).To(Equal(c.Uncalibrated))
	Expect(len(g.ExpertsWithoutTokens)).To(Equal(len(c.ExpertsWithoutTokens)))
	Expect(slices.Equal(keys(g.PerExpertInputAmax), keys(c.PerExpertInputAmax))).To(BeTrue())
	for k, v := range c.PerExpertInputAmax {
		Expect(relErr(float64(g.PerExpertInputAmax[k]), float64(v))).To(BeNumerically("<=", rel), k)
	}
}

func keys(m map[string]float32) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func relErr(got, want float64) float64 {
	if got == want || (got != got && want != want) {
		return 0
	}
	if want == 0 {
		return math.Abs(got)
	}
	return math.Abs(got-want) / math.Abs(want)
}
