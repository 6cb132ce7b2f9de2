package calibration_test

import (
	"errors"
	"fmt"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/ptqgate/ptqgate/fixtures"
	"github.com/ptqgate/ptqgate/internal/cli"
	"github.com/ptqgate/ptqgate/ptqcore/calib"
	"github.com/ptqgate/ptqgate/ptqcore/model"
	"github.com/ptqgate/ptqgate/reports"
	"github.com/ptqgate/ptqgate/suites/internal/framework"
)

// expertModules returns the routed-experts module names of a fixture,
// from its geometry.
func expertModules(opt fixtures.Options) []string {
	var out []string
	for l := range opt.Layers {
		if opt.IsMoELayer(l) {
			out = append(out, fmt.Sprintf("%slayers.%d.mlp.experts", opt.Prefix(), l))
		}
	}
	return out
}

// failedChecks runs a calibration that must complete and fail its checks
// (exit 1), returning the result and the error.
func failedChecks(dir, recipe, calibFile string, opt calib.Options) (*calib.Result, *calib.CheckError) {
	GinkgoHelper()
	res, err := framework.Calibrate(dir, recipe, calibFile, opt)
	var ce *calib.CheckError
	Expect(errors.As(err, &ce)).To(BeTrue(), "want a *calib.CheckError, got %v", err)
	Expect(cli.ExitCodeOf(err)).To(Equal(cli.ExitFailed))
	Expect(res).NotTo(BeNil(), "a failed check still returns the complete result")
	Expect(res.Report.Summary.Errors).To(Equal(ce.Errors))
	return res, ce
}

var _ = Describe("Injected toolkit faults", func() {
	DescribeTableSubtree("on fixture",
		func(name string) {
			var (
				opt       fixtures.Options
				dir       string
				calibFile string
				modules   []string
			)
			BeforeEach(func() {
				opt = framework.FixtureOptions(name)
				dir = framework.Fixture(name)
				calibFile = framework.CalibFor(name)
				modules = expertModules(opt)
			})

			Context("hook-bypass: grouped expert execution skips the expert quantizer hooks", func() {
				var want []string
				BeforeEach(func() {
					want = nil
					for _, m := range modules {
						want = append(want, m+".gate_up_proj_input_quantizer", m+".down_proj_input_quantizer")
					}
				})

				It("fails calibration naming every uncalibrated expert input quantizer and the experts whose hooks never fired", func() {
					res, ce := failedChecks(dir, "nvfp4_experts_only-fp8_kv", calibFile,
						calib.Options{Experts: model.ExpertsGrouped, Faults: calib.Faults{HookBypass: true}})
					Expect(res.Report.Uncalibrated).To(ConsistOf(want))
					for _, q := range want {
						Expect(res.Report).To(framework.HaveFindingMatching(framework.FindingQuery{
							Rule: calib.RuleUncalibrated, Severity: reports.SeverityError, Module: q}))
					}
					for _, m := range modules {
						Expect(res.Report).To(framework.HaveFindingMatching(framework.FindingQuery{
							Rule: calib.RuleExpertHookMissed, Severity: reports.SeverityError, Module: m}))
					}
					Expect(ce.Error()).To(ContainSubstring(calib.RuleUncalibrated))
					Expect(ce.Error()).To(ContainSubstring(want[0]))

					By("counting zero calls for every expert while the router's tokens are still counted")
					var tokens int64
					for _, e := range res.Report.Experts {
						Expect([]int64{e.GateUpCalls, e.DownCalls}).To(Equal([]int64{0, 0}))
						tokens += e.Tokens
					}
					Expect(tokens).To(BeNumerically(">", 0))
				})

				It("does not affect eager execution, whose per-expert hooks always fire", func() {
					_, err := framework.Calibrate(dir, "nvfp4_experts_only-fp8_kv", calibFile,
						calib.Options{Experts: model.ExpertsEager, Faults: calib.Faults{HookBypass: true}})
					Expect(err).NotTo(HaveOccurred())
				})

				It("turns into warnings with --allow-uncalibrated, still listing the uncalibrated quantizers", func() {
					res, err := framework.Calibrate(dir, "nvfp4_experts_only-fp8_kv", calibFile,
						calib.Options{Faults: calib.Faults{HookBypass: true}, AllowUncalibrated: true})
					Expect(err).NotTo(HaveOccurred())
					Expect(res.Report).To(framework.BeClean())
					Expect(res.Report.Uncalibrated).To(ConsistOf(want))
					Expect(res.Report).To(framework.HaveFinding(calib.RuleUncalibrated, reports.TargetAny, reports.SeverityWarning))
					for _, q := range want {
						Expect(quantizersOf(res.Report)[q].Amax).To(BeNil(), "%s has no amax to export", q)
					}
				})
			})

			Context("plural-match: recipe patterns matched without the singular-name normalization", func() {
				It("fails calibration naming the enabling patterns that matched nothing, and leaves the expert weights unquantized", func() {
					res, ce := failedChecks(dir, "nvfp4_experts_only-fp8_kv", calibFile, calib.Options{Faults: calib.Faults{PluralMatch: true}})
					unmatched := framework.FindingQuery{Rule: calib.RuleUnmatchedPattern, Severity: reports.SeverityError}.Select(res.Report)
					Expect(unmatched).NotTo(BeEmpty())
					for _, f := range unmatched {
						Expect(f.Message).To(ContainSubstring("weight_quantizer"))
						Expect(res.Report.Recipe.UnmatchedPatterns).To(ContainElement(f.Module))
					}
					Expect(ce.Error()).To(ContainSubstring(calib.RuleUnmatchedPattern))
					Expect(res.Report).To(framework.HaveFinding(calib.RulePluralUnmatched, reports.TargetAny, reports.SeverityError))
					for _, q := range res.Report.Quantizers {
						if isExpertWeight(reports.NamePattern(q.Name)) {
							Expect(q.Enabled).To(BeFalse(), q.Name)
							Expect(q.Format).To(Equal("none"), q.Name)
							Expect(q.Amax).To(BeNil(), q.Name)
						}
					}
				})

				It("also catches the generic '*weight_quantizer' pattern missing the plural per-expert quantizers", func() {
					res, _ := failedChecks(dir, everyQuantizer, calibFile, calib.Options{Faults: calib.Faults{PluralMatch: true}})
					Expect(res.Report).To(framework.HaveFinding(calib.RulePluralUnmatched, reports.TargetAny, reports.SeverityError))
					By("passing without the fault")
					_, err := framework.Calibrate(dir, everyQuantizer, calibFile, calib.Options{})
					_, err = framework.Calibrate(dir, everyQuantizer, calibFile, calib.Options{})
					Expect(err).NotTo(HaveOccurred())
				})
			})

			Context("a MoE layer whose experts only ever see zeros", func() {
				It("fails calibration naming every quantizer whose amax is zero", func() {
					dead := modules[len(modules)-1]
					zeroed, err := framework.ZeroTensors(dir, func(n string) bool {
						return strings.HasPrefix(n, dead+".") && (strings.Contains(n, "gate_proj") || strings.Contains(n, "up_proj"))
					})
					Expect(err).NotTo(HaveOccurred())
					Expect(zeroed).To(HaveLen(2 * opt.Experts))
					res, ce := failedChecks(dir, "nvfp4_experts_only-fp8_kv", calibFile, calib.Options{})
					want := []string{dead + ".down_proj_input_quantizer"}
					for e := range opt.Experts {
						want = append(want, fmt.Sprintf("%s.gate_up_proj_weight_quantizers.%d", dead, e))
					}
					Expect(res.Report.Uncalibrated).To(ConsistOf(want))
					for _, q := range want {
						Expect(res.Report).To(framework.HaveFindingMatching(framework.FindingQuery{
							Rule: calib.RuleInvalidAmax, Severity: reports.SeverityError, Module: q}))
					}
					Expect(ce.Error()).To(ContainSubstring(calib.RuleInvalidAmax))
				})
			})
		},
		Entry(nil, framework.Qwen3MoETiny),
		Entry(nil, Label("qwen3_5"), framework.Qwen35MoETiny),
	)

	Context("vlm-layers: layerwise discovery looks for model.layers only", func() {
		It("fails layerwise calibration of a VLM checkpoint naming the paths it searched", func() {
			dir := framework.Fixture(framework.Qwen35MoETiny)
			calibFile := framework.CalibFor(framework.Qwen35MoETiny)
			res, ce := failedChecks(dir, "nvfp4_experts_only-fp8_kv_layerwise", calibFile, calib.Options{Faults: calib.Faults{VLMLayers: true}})
			fs := framework.FindingQuery{Rule: calib.RuleNoDecoderLayers, Severity: reports.SeverityError}.Select(res.Report)
			Expect(fs).To(HaveLen(1))
			Expect(fs[0].Message).To(ContainSubstring("model.layers"))
			Expect(fs[0].Message).To(ContainSubstring("model.language_model.layers"), "names where the layers are")
			Expect(ce.Error()).To(ContainSubstring(calib.RuleNoDecoderLayers))

			By("finding model.language_model.layers without the fault")
			_, err := framework.Calibrate(dir, "nvfp4_experts_only-fp8_kv_layerwise", calibFile, calib.Options{})
			Expect(err).NotTo(HaveOccurred())
		}, Label("qwen3_5"))

		It("does not affect a text model, whose layers are under model.layers", func() {
			dir := framework.Fixture(framework.Qwen3MoETiny)
			_, err := framework.Calibrate(dir, "nvfp4_experts_only-fp8_kv_layerwise", framework.CalibFor(framework.Qwen3MoETiny), calib.Options{Faults: calib.Faults{VLMLayers: true}})
			Expect(err).NotTo(HaveOccurred())
		})
	})
})
