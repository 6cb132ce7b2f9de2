package calibration_test

import (
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/ptqgate/ptqgate/reports"
	"github.com/ptqgate/ptqgate/suites/internal/framework"
)

var _ = Describe("ptqgate quantize", framework.CLITier, Ordered, func() {
	var model, calibFile string

	BeforeAll(func() {
		model = filepath.Join(framework.TempDir(), "model")
		res := ptqgate.MustRun("fixture", framework.Qwen3MoETiny, "--out", model)
		Expect(res).To(framework.ExitWith(0))
		calibFile = framework.CalibFor(framework.Qwen3MoETiny)
	})

	quantize := func(extra ...string) *framework.Result {
		return ptqgate.MustRun(append([]string{"quantize", "--model", model, "--recipe", "nvfp4_experts_only-fp8_kv", "--calib", calibFile}, extra...)...)
	}

	It("calibrates a fixture, prints the summary on stdout and exits 0", func() {
		res := quantize()
		Expect(res).To(framework.ExitWith(0))
		Expect(res.Stdout).To(ContainSubstring("nvfp4_experts_only-fp8_kv"))
		Expect(res.Stdout).To(ContainSubstring("model.layers.1.mlp.experts.7"), "names the expert that received no tokens")
		Expect(res.Stdout).To(ContainSubstring("PASSED"))
	})

	It("prints the report model on stdout with --json, the tables on stderr, and writes the same report with --report", func() {
		file := filepath.Join(framework.TempDir(), "calib.json")
		res := quantize("--json", "--report", file)
		Expect(res).To(framework.ExitWith(0))
		rep, err := res.Report()
		Expect(err).NotTo(HaveOccurred())
		Expect(rep.Kind).To(Equal(reports.KindCalibration))
		Expect(rep.Experts).To(HaveLen(16))
		Expect(rep.Uncalibrated).To(BeEmpty())
		Expect(res.Stderr).To(ContainSubstring("PASSED"))
		written, err := os.ReadFile(file)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(written)).To(MatchJSON(res.Stdout))
	})

	It("reports the same accounting with --experts-impl eager and grouped", func() {
		g, err := quantize("--json", "--experts-impl", "grouped").Report()
		Expect(err).NotTo(HaveOccurred())
		e, err := quantize("--json", "--experts-impl", "eager").Report()
		Expect(err).NotTo(HaveOccurred())
		Expect(e.Experts).To(Equal(g.Experts))
		Expect(e.Quantizers).To(Equal(g.Quantizers))
	})

	DescribeTable("catches each injected fault with exit 1 and names what it broke",
		func(args []string, mustName []string) {
			res := ptqgate.MustRun(append([]string{"quantize", "--model", model, "--calib", calibFile}, args...)...)
			Expect(res).To(framework.ExitWith(1))
			for _, s := range mustName {
				Expect(res.Stderr + res.Stdout).To(ContainSubstring(s))
			}
		},
		Entry("hook-bypass", []string{"--recipe", "nvfp4_experts_only-fp8_kv", "--inject-fault", "hook-bypass"},
			[]string{"calib.uncalibrated", "model.layers.0.mlp.experts.gate_up_proj_input_quantizer", "calib.expert-hook-missed"}),
		Entry("plural-match", []string{"--recipe", "nvfp4_experts_only-fp8_kv", "--inject-fault", "plural-match"},
			[]string{"calib.unmatched-pattern", "weight_quantizer"}),
	)

	It("turns hook-bypass failures into warnings with --allow-uncalibrated (exit 0), still listing the uncalibrated quantizers", func() {
		res := quantize("--inject-fault", "hook-bypass", "--allow-uncalibrated", "--json")
		Expect(res).To(framework.ExitWith(0))
		rep, err := res.Report()
		Expect(err).NotTo(HaveOccurred())
		Expect(rep.Uncalibrated).To(HaveLen(4))
		Expect(rep).To(framework.BeClean())
	})

	DescribeTable("rejects bad requests with exit 2 and says why",
		func(args []string, mustSay string) {
			res := ptqgate.MustRun(args...)
			Expect(res).To(framework.ExitWith(2))
			Expect(res.Stderr).To(ContainSubstring(mustSay))
		},
		Entry("an unknown fault, listing the valid ones", []string{"quantize", "--model", ".", "--recipe", "fp8_default", "--calib", "x.json", "--inject-fault", "nope"}, "hook-bypass"),
		Entry("a missing --calib", []string{"quantize", "--model", ".", "--recipe", "fp8_default"}, "--calib"),
		Entry("an unknown preset", []string{"quantize", "--model", "testdata", "--recipe", "no_such_preset", "--calib", everyQuantizer}, "no_such_preset"),
		Entry("an unknown expert mode", []string{"quantize", "--model", ".", "--recipe", "fp8_default", "--calib", "x.json", "--experts-impl", "magic"}, "experts-impl"),
		Entry("an unknown flag", []string{"quantize", "--no-such-flag"}, "no-such-flag"),
	)

	It("refuses plain-text calibration data as unsupported (exit 2)", func() {
		text := filepath.Join(framework.TempDir(), "calib.txt")
		Expect(os.WriteFile(text, []byte("The quick brown fox.\n"), 0o644)).To(Succeed())
		res := quantize("--calib", text)
		Expect(res).To(framework.ExitWith(2))
		Expect(res.Stderr).To(ContainSubstring(text))
	})

	It("fails a token id beyond the vocabulary with exit 1, naming the file and the position", func() {
		bad := filepath.Join(framework.TempDir(), "calib.json")
		Expect(os.WriteFile(bad, []byte(`{"batches": [[[1, 2, 3]], [[4, 256]]]}`), 0o644)).To(Succeed())
		res := quantize("--calib", bad)
		Expect(res).To(framework.ExitWith(1))
		Expect(res.Stderr).To(ContainSubstring("batches[1][0][1]"))
		Expect(res.Stderr).To(ContainSubstring("256"))
	})

	It("fails a checkpoint folder without config.json with exit 1, naming the file", func() {
		empty := framework.TempDir()
		Expect(os.WriteFile(filepath.Join(empty, "model.safetensors"), []byte("not safetensors"), 0o644)).To(Succeed())
		res := ptqgate.MustRun("quantize", "--model", empty, "--recipe", "fp8_default", "--calib", calibFile)
		Expect(res).To(framework.ExitWith(1))
		Expect(res.Stderr).To(ContainSubstring("config.json"))
	})
})
