package calibration_test

import (
	"encoding/json"
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/ptqgate/ptqgate/fixtures"
	"github.com/ptqgate/ptqgate/internal/refdata"
	"github.com/ptqgate/ptqgate/ptqcore/calib"
	"github.com/ptqgate/ptqgate/ptqcore/model"
	"github.com/ptqgate/ptqgate/reports"
	"github.com/ptqgate/ptqgate/suites/internal/framework"
)

// splitBatches writes one calibration file per batch of calibFile and
// returns their paths.
func splitBatches(calibFile string) []string {
	GinkgoHelper()
	raw, err := os.ReadFile(calibFile)
	Expect(err).NotTo(HaveOccurred())
	var c refdata.Calib
	Expect(json.Unmarshal(raw, &c)).To(Succeed())
	dir := framework.TempDir()
	var out []string
	for i, b := range c.Batches {
		one, err := json.Marshal(refdata.Calib{Batches: [][][]int{b}})
		Expect(err).NotTo(HaveOccurred())
		path := filepath.Join(dir, "batch"+itoa(i)+".json")
		Expect(os.WriteFile(path, one, 0o644)).To(Succeed())
		out = append(out, path)
	}
	return out
}

// withoutPaths drops what legitimately differs between two checkpoints of
// the same model: the model path.
func withoutPaths(r *reports.Report) *reports.Report {
	c := *r
	m := *r.Model
	m.Path = ""
	c.Model = &m
	c.Run = nil
	return &c
}

var _ = Describe("Calibration on generated fixtures", func() {
	DescribeTableSubtree("fixture",
		func(name, dtype string) {
			var dir, calibFile string

			BeforeEach(func() {
				dir = framework.Fixture(name, func(o *fixtures.Options) { o.DType = dtype })
				calibFile = framework.CalibFor(name)
			})

			It("counts per input batch: tokens add up over batches and calls count the batches that reached each expert", func() {
				full := calibrated(dir, "nvfp4_experts_only-fp8_kv", calibFile, calib.Options{}).Report
				tokens := map[expertKey]int64{}
				calls := map[expertKey]int64{}
				for _, one := range splitBatches(calibFile) {
					for _, e := range calibrated(dir, "nvfp4_experts_only-fp8_kv", one, calib.Options{}).Report.Experts {
						k := expertKey{e.Layer, e.Expert}
						tokens[k] += e.Tokens
						if e.Tokens > 0 {
							calls[k]++
						}
						Expect(e.GateUpCalls).To(Equal(min(e.Tokens, 1)), "one batch: %d tokens", e.Tokens)
					}
				}
				Expect(full.Experts).NotTo(BeEmpty())
				for _, e := range full.Experts {
					k := expertKey{e.Layer, e.Expert}
					Expect(e.Tokens).To(Equal(tokens[k]), "layer %d expert %d tokens", e.Layer, e.Expert)
					Expect(e.GateUpCalls).To(Equal(calls[k]), "layer %d expert %d gate_up calls", e.Layer, e.Expert)
					Expect(e.DownCalls).To(Equal(calls[k]), "layer %d expert %d down calls", e.Layer, e.Expert)
				}
			})

			It("gives bit-identical amax and accounting in grouped and eager execution", func() {
				for _, recipe := range []string{"nvfp4_experts_only-fp8_kv", everyQuantizer} {
					g := calibrated(dir, recipe, calibFile, calib.Options{Experts: model.ExpertsGrouped}).Report
					e := calibrated(dir, recipe, calibFile, calib.Options{Experts: model.ExpertsEager}).Report
					Expect(g.Quantizers).To(Equal(e.Quantizers), recipe)
					Expect(g.Experts).To(Equal(e.Experts), recipe)
					Expect(g.PerExpertInputAmax).To(Equal(e.PerExpertInputAmax), recipe)
					Expect(g.Uncalibrated).To(BeEmpty(), recipe)
				}
			})

			It("reads the fused expert layout into the same calibration as the per-expert layout", func() {
				fused := framework.Fixture(name, func(o *fixtures.Options) { o.DType = dtype; o.Layout = fixtures.LayoutFused })
				a := calibrated(dir, "nvfp4_experts_only-fp8_kv", calibFile, calib.Options{}).Report
				b := calibrated(fused, "nvfp4_experts_only-fp8_kv", calibFile, calib.Options{}).Report
				Expect(withoutPaths(b)).To(Equal(withoutPaths(a)))
			})

			It("gives the same amax and counts with layerwise calibration as with the full pass", func() {
				full := calibrated(dir, "nvfp4_experts_only-fp8_kv", calibFile, calib.Options{}).Report
				lw := calibrated(dir, "nvfp4_experts_only-fp8_kv_layerwise", calibFile, calib.Options{}).Report
				Expect(lw.Recipe.Algorithm).To(Equal("max (layerwise)"))
				Expect(lw.Quantizers).To(Equal(full.Quantizers))
				Expect(lw.Experts).To(Equal(full.Experts))
			})

			It("routes every token to every expert in the --calib-all-experts pass, keeping the model's own routing counts", func() {
				plain := calibrated(dir, "nvfp4_experts_only-fp8_kv", calibFile, calib.Options{})
				all := calibrated(dir, "nvfp4_experts_only-fp8_kv", calibFile, calib.Options{AllExperts: true})
				Expect(all.Report.Experts).To(HaveLen(len(plain.Report.Experts)))
				for i, e := range all.Report.Experts {
					p := plain.Report.Experts[i]
					Expect(e.AllExpertsRows).NotTo(BeNil())
					Expect(*e.AllExpertsRows).To(BeEquivalentTo(all.Tokens), "layer %d expert %d", e.Layer, e.Expert)
					Expect([]int64{e.Tokens, e.GateUpCalls, e.DownCalls}).To(Equal([]int64{p.Tokens, p.GateUpCalls, p.DownCalls}))
					Expect(p.AllExpertsRows).To(BeNil())
				}
				By("feeding every expert's own input amax, also for experts routing never chose")
				for _, e := range all.Experts {
					Expect(all.PerExpertInputAmax).To(HaveKey(sharedInputQuantizer(e.Module, "gate_up_proj") + "." + itoa(e.Expert)))
					Expect(all.PerExpertInputAmax).To(HaveKey(sharedInputQuantizer(e.Module, "down_proj") + "." + itoa(e.Expert)))
				}
			})
		},
		Entry(nil, framework.Qwen3MoETiny, fixtures.DTypeBF16),
		Entry(nil, framework.Qwen3MoETiny, fixtures.DTypeF32),
		Entry(nil, framework.Qwen3MoEDenseTiny, fixtures.DTypeBF16),
		Entry(nil, Label("qwen3_5"), framework.Qwen35MoETiny, fixtures.DTypeBF16),
	)

	Describe("experts the router can never select", func() {
		It("are named, have no calls and still get a weight amax from their weights", func() {
			unreachable := []fixtures.ExpertRef{{Layer: 0, Expert: 3}, {Layer: 2, Expert: 0}, {Layer: 2, Expert: 6}}
			dir := framework.Fixture(framework.Qwen3MoEDenseTiny, func(o *fixtures.Options) { o.Unreachable = unreachable })
			res := calibrated(dir, "nvfp4_experts_only-fp8_kv", framework.CalibFor(framework.Qwen3MoEDenseTiny), calib.Options{})
			Expect(res.Report.ExpertsWithoutTokens).To(Equal([]reports.ExpertRef{
				{Layer: 0, Expert: 3, Name: "model.layers.0.mlp.experts.3"},
				{Layer: 2, Expert: 0, Name: "model.layers.2.mlp.experts.0"},
				{Layer: 2, Expert: 6, Name: "model.layers.2.mlp.experts.6"},
			}))
			qs := quantizersOf(res.Report)
			for _, u := range unreachable {
				e := expertsOf(res.Report)[expertKey{u.Layer, u.Expert}]
				Expect([]int64{e.Tokens, e.GateUpCalls, e.DownCalls}).To(Equal([]int64{0, 0, 0}))
				for _, proj := range []string{"gate_up_proj", "down_proj"} {
					q := qs["model.layers."+itoa(u.Layer)+".mlp.experts."+proj+"_weight_quantizers."+itoa(u.Expert)]
					Expect(q.Amax.Valid()).To(BeTrue(), q.Name)
				}
				Expect(res.Report).To(framework.HaveFindingMatching(framework.FindingQuery{
					Rule: calib.RuleExpertWithoutTokens, Severity: reports.SeverityWarning,
					Module: "model.layers." + itoa(u.Layer) + ".mlp.experts." + itoa(u.Expert),
				}))
			}
			Expect(res.Report).To(framework.BeClean(), "experts without tokens are a warning, not an error")
		})
	})
})
