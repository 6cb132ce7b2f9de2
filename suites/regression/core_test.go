package regression_test

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/ptqgate/ptqgate/fixtures"
	"github.com/ptqgate/ptqgate/internal/cli"
	"github.com/ptqgate/ptqgate/ptqcore/calib"
	"github.com/ptqgate/ptqgate/ptqcore/export"
	"github.com/ptqgate/ptqgate/ptqcore/model"
	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
	"github.com/ptqgate/ptqgate/reports"
	"github.com/ptqgate/ptqgate/suites/internal/framework"
)

// expertsOnly is the recipe of the bug report.
const expertsOnly = "nvfp4_experts_only-fp8_kv"

// moeModules returns a fixture's routed-experts module names.
func moeModules(opt fixtures.Options) []string {
	var out []string
	for l := range opt.Layers {
		if opt.IsMoELayer(l) {
			out = append(out, fmt.Sprintf("%slayers.%d.mlp.experts", opt.Prefix(), l))
		}
	}
	return out
}

// mustFailChecks asserts that a calibration completed and failed its
// checks with exit 1.
func mustFailChecks(res *calib.Result, err error) *calib.CheckError {
	GinkgoHelper()
	var ce *calib.CheckError
	Expect(errors.As(err, &ce)).To(BeTrue(), "want failed calibration checks (exit 1), got %v", err)
	Expect(cli.ExitCodeOf(err)).To(Equal(cli.ExitFailed))
	Expect(res).NotTo(BeNil())
	return ce
}

// tensorNames lists the tensors of a checkpoint folder.
func tensorNames(dir string) []string {
	GinkgoHelper()
	ck, err := safetensors.OpenCheckpoint(dir)
	Expect(err).NotTo(HaveOccurred())
	defer ck.Close()
	var out []string
	for _, t := range ck.Tensors() {
		out = append(out, t.Name)
	}
	return out
}

// countSuffix counts the names under one of the modules that end in suffix.
func countSuffix(names, modules []string, suffix string) int {
	n := 0
	for _, name := range names {
		for _, m := range modules {
			if strings.HasPrefix(name, m+".") && strings.HasSuffix(name, suffix) {
				n++
			}
		}
	}
	return n
}

// expertBytes is the size of a checkpoint's routed-expert tensors.
func expertBytes(dir string) int64 {
	GinkgoHelper()
	ck, err := safetensors.OpenCheckpoint(dir)
	Expect(err).NotTo(HaveOccurred())
	defer ck.Close()
	var n int64
	for _, t := range ck.Tensors() {
		if strings.Contains(t.Name, ".mlp.experts.") {
			n += t.Size
		}
	}
	return n
}

// expertsLeftBF16 replays "experts left BF16 by the core" with the
// format-gate fault on a fixture: the export self-check fails naming the
// experts, the exported experts are BF16, and verify fails.
func expertsLeftBF16(fixture string) (clean, broken string) {
	GinkgoHelper()
	opt := framework.FixtureOptions(fixture)
	modules := moeModules(opt)
	dir := framework.Fixture(fixture)
	res, err := framework.Calibrate(dir, expertsOnly, framework.CalibFor(fixture), calib.Options{})
	Expect(err).NotTo(HaveOccurred())
	clean = filepath.Join(framework.TempDir(), "clean")
	_, err = framework.Export(res, clean, export.Options{})
	Expect(err).NotTo(HaveOccurred())

	res, err = framework.Calibrate(dir, expertsOnly, framework.CalibFor(fixture), calib.Options{})
	Expect(err).NotTo(HaveOccurred())
	broken = filepath.Join(framework.TempDir(), "format-gate")
	By("exporting with the format-gate fault: the fused experts are skipped")
	_, err = framework.Export(res, broken, export.Options{FormatGate: true})
	var ce *export.CheckError
	Expect(errors.As(err, &ce)).To(BeTrue(), "the export self-check must fail, got %v", err)
	Expect(cli.ExitCodeOf(err)).To(Equal(cli.ExitFailed))
	exported, err := reports.ReadFile(filepath.Join(broken, export.ReportFile))
	Expect(err).NotTo(HaveOccurred(), "the export report is still written")
	for _, m := range modules {
		Expect(exported).To(framework.HaveFindingMatching(framework.FindingQuery{Severity: reports.SeverityError, Module: m}),
			"the self-check names %s", m)
	}
	names := tensorNames(broken)
	Expect(countSuffix(names, modules, ".weight_scale")).To(BeZero())
	Expect(countSuffix(names, modules, ".weight")).To(Equal(3*opt.Experts*len(modules)), "the experts are still there, unquantized")

	By("verifying the export for vLLM and SGLang")
	rep, err := framework.Verify(broken, nil, 0)
	Expect(err).NotTo(HaveOccurred())
	Expect(rep).NotTo(framework.BeClean())
	Expect(rep).To(framework.HaveFinding("report.missing-tensor", reports.TargetAny, reports.SeverityError))
	Expect(rep).To(framework.HaveFinding("census.experts-unquantized", reports.TargetAny, ""))
	return clean, broken
}

var _ = Describe("Faults injected in the PTQ core", func() {
	It("R1 grouped experts that bypass the calibration hook (MO #1340) are caught: no amax, zero calls, missing input_scale", framework.Catalogue("R1"), func() {
		opt := framework.FixtureOptions(framework.Qwen3MoETiny)
		modules := moeModules(opt)
		dir := framework.Fixture(framework.Qwen3MoETiny)
		calibFile := framework.CalibFor(framework.Qwen3MoETiny)

		By("calibrating in grouped mode with the hook-bypass fault")
		res, err := framework.Calibrate(dir, expertsOnly, calibFile, calib.Options{Experts: model.ExpertsGrouped, Faults: calib.Faults{HookBypass: true}})
		ce := mustFailChecks(res, err)
		var want []string
		for _, m := range modules {
			want = append(want, m+".gate_up_proj_input_quantizer", m+".down_proj_input_quantizer")
		}
		Expect(res.Report.Uncalibrated).To(ConsistOf(want))
		Expect(ce.Rules).To(ContainElements(calib.RuleUncalibrated, calib.RuleExpertHookMissed))
		for _, e := range res.Report.Experts {
			Expect(e.GateUpCalls+e.DownCalls).To(BeZero(), "hook calls of layer %d expert %d", e.Layer, e.Expert)
		}

		By("exporting anyway with --allow-uncalibrated, as the toolkit did: no expert input_scale at all")
		res, err = framework.Calibrate(dir, expertsOnly, calibFile, calib.Options{Faults: calib.Faults{HookBypass: true}, AllowUncalibrated: true})
		Expect(err).NotTo(HaveOccurred())
		out := filepath.Join(framework.TempDir(), "export")
		_, err = framework.Export(res, out, export.Options{AllowUncalibrated: true})
		Expect(err).NotTo(HaveOccurred())
		Expect(countSuffix(tensorNames(out), modules, ".input_scale")).To(BeZero())

		By("verifying the export: every expert's input_scale is missing")
		rep, err := framework.Verify(out, nil, 0)
		Expect(err).NotTo(HaveOccurred())
		Expect(rep).NotTo(framework.BeClean())
		for _, m := range modules {
			Expect(rep).To(framework.HaveFindingMatching(framework.FindingQuery{Rule: "census.missing-tensor", Target: reports.TargetAny,
				Severity: reports.SeverityError, Tensor: m + "."}), "names the experts of %s", m)
		}
		Expect(rep).To(framework.HaveFinding("report.missing-tensor", reports.TargetAny, reports.SeverityError))

		By("contrasting with a clean run, which exports one input_scale per layer, expert and projection (L·E·3)")
		res, err = framework.Calibrate(dir, expertsOnly, calibFile, calib.Options{})
		Expect(err).NotTo(HaveOccurred())
		good := filepath.Join(framework.TempDir(), "clean")
		_, err = framework.Export(res, good, export.Options{})
		Expect(err).NotTo(HaveOccurred())
		Expect(countSuffix(tensorNames(good), modules, ".input_scale")).To(Equal(len(modules) * opt.Experts * 3))
	})

	It("R3 recipe wildcards that miss the plural per-expert quantizer names (MO #1340) are caught: an enabling pattern matched nothing", framework.Catalogue("R3"), func() {
		dir := framework.Fixture(framework.Qwen3MoETiny)
		res, err := framework.Calibrate(dir, expertsOnly, framework.CalibFor(framework.Qwen3MoETiny), calib.Options{Faults: calib.Faults{PluralMatch: true}})
		ce := mustFailChecks(res, err)
		Expect(ce.Rules).To(ContainElement(calib.RuleUnmatchedPattern))
		Expect(res.Report.Recipe.UnmatchedPatterns).To(ContainElement(ContainSubstring("weight_quantizer")))
		for _, q := range res.Report.Quantizers {
			if strings.Contains(q.Name, "_weight_quantizers.") {
				Expect(q.Enabled).To(BeFalse(), "%s stays disabled: the expert weights stay unquantized", q.Name)
			}
		}

		By("verifying an export of that run: the experts are unquantized")
		out := filepath.Join(framework.TempDir(), "export")
		_, err = framework.Export(res, out, export.Options{})
		Expect(err).NotTo(HaveOccurred())
		rep, err := framework.Verify(out, nil, 0)
		Expect(err).NotTo(HaveOccurred())
		Expect(rep).To(framework.HaveFinding("census.experts-unquantized", reports.TargetAny, ""))
	})

	It("R6 fused experts the core leaves BF16 (MO #1711) are caught by the export self-check and by verify", framework.Catalogue("R6"), func() {
		expertsLeftBF16(framework.Qwen3MoETiny)
	})

	It("R7 Qwen3.5-MoE experts silently left BF16 (MO #2011) are caught, and the export is visibly too large", framework.Catalogue("R7"), Label("qwen3_5"), func() {
		clean, broken := expertsLeftBF16(framework.Qwen35MoETiny)
		By("comparing the experts' bytes with the clean export: BF16 takes 2 bytes a weight, NVFP4 about 0.56")
		Expect(float64(expertBytes(broken))).To(BeNumerically(">", 3*float64(expertBytes(clean))))
	})

	It("R10 an expert layer that only saw zeros (MO #2438) is caught before export instead of exporting a zero scale", framework.Catalogue("R10"), func() {
		opt := framework.FixtureOptions(framework.Qwen3MoETiny)
		dead := moeModules(opt)[len(moeModules(opt))-1]
		dir := framework.Fixture(framework.Qwen3MoETiny)
		_, err := framework.ZeroTensors(dir, func(n string) bool {
			return strings.HasPrefix(n, dead+".") && !strings.Contains(n, "down_proj")
		})
		Expect(err).NotTo(HaveOccurred())

		By("calibrating: the down_proj input of every expert of " + dead + " is all zeros, so its amax is 0")
		res, err := framework.Calibrate(dir, expertsOnly, framework.CalibFor(framework.Qwen3MoETiny), calib.Options{})
		ce := mustFailChecks(res, err)
		Expect(ce.Rules).To(ContainElement(calib.RuleInvalidAmax))
		Expect(res.Report.Uncalibrated).To(ContainElement(dead + ".down_proj_input_quantizer"))
		Expect(res.Report).To(framework.HaveFindingMatching(framework.FindingQuery{
			Rule: calib.RuleInvalidAmax, Severity: reports.SeverityError, Module: dead + ".down_proj_input_quantizer"}))

		By("refusing to export it: the toolkit aborted here with 'activation scaling factor 0.0 not positive'")
		_, err = framework.Export(res, filepath.Join(framework.TempDir(), "export"), export.Options{})
		var ue *export.UncalibratedError
		Expect(errors.As(err, &ue)).To(BeTrue(), "want *export.UncalibratedError, got %v", err)
		Expect(ue.Names).To(ContainElement(dead + ".down_proj_input_quantizer"))

		By("catching the crafted checkpoint whose expert input_scale is 0.0")
		replayCrafted("R10", caught{Rule: "values.nonpositive", Severity: reports.SeverityError, Fires: anyTarget})
	})

	It("R25 calibrate-all-experts that was accepted but never wired (LLMC #2826) is caught: every expert must see every token", framework.Catalogue("R25"), func() {
		dir := framework.Fixture(framework.Qwen3MoETiny)
		res, err := framework.Calibrate(dir, expertsOnly, framework.CalibFor(framework.Qwen3MoETiny), calib.Options{AllExperts: true})
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Report.ExpertsWithoutTokens).To(ContainElement(HaveField("Name", "model.layers.1.mlp.experts.7")),
			"routing itself is unchanged: expert 7 of layer 1 is unreachable")
		for _, e := range res.Report.Experts {
			Expect(e.AllExpertsRows).NotTo(BeNil(), "layer %d expert %d: the all-experts pass did not run", e.Layer, e.Expert)
			Expect(*e.AllExpertsRows).To(BeEquivalentTo(res.Tokens), "layer %d expert %d", e.Layer, e.Expert)
		}
		for _, key := range []string{"model.layers.1.mlp.experts.gate_up_proj_input_quantizer.7", "model.layers.1.mlp.experts.down_proj_input_quantizer.7"} {
			Expect(res.Report.PerExpertInputAmax).To(HaveKey(key), "the never-routed expert gets its own input statistics")
			v := float64(res.Report.PerExpertInputAmax[key])
			Expect(v > 0 && !math.IsInf(v, 0) && !math.IsNaN(v)).To(BeTrue(), "%s = %v", key, v)
		}
	})
})
