package export_test

import (
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/ptqgate/ptqgate/reports"
	"github.com/ptqgate/ptqgate/suites/internal/framework"
)

var _ = Describe("ptqgate quantize --out", framework.CLITier, Ordered, func() {
	var model, calibFile, work string

	BeforeAll(func() {
		work = framework.TempDir()
		model = filepath.Join(work, "model")
		Expect(ptqgate.MustRun("fixture", framework.Qwen3MoETiny, "--out", model)).To(framework.ExitWith(0))
		calibFile = framework.CalibFor(framework.Qwen3MoETiny)
	})

	quantize := func(out string, extra ...string) *framework.Result {
		return ptqgate.MustRun(append([]string{"quantize", "--model", model, "--recipe", "nvfp4_experts_only-fp8_kv", "--calib", calibFile, "--out", out}, extra...)...)
	}

	It("exports a checkpoint that verify passes for vLLM and SGLang, and inspect reads", func() {
		out := filepath.Join(work, "clean")
		res := quantize(out, "--json")
		Expect(res).To(framework.ExitWith(0))
		rep, err := res.Report()
		Expect(err).NotTo(HaveOccurred())
		Expect(rep.Kind).To(Equal(reports.KindExport))
		Expect(rep.DequantError).NotTo(BeEmpty(), "the export measures its round-trip error per module")
		Expect(filepath.Join(out, "ptqgate_report.json")).To(BeAnExistingFile())

		Expect(ptqgate.MustRun("verify", out)).To(framework.ExitWith(0))
		in := ptqgate.MustRun("inspect", out, "--json")
		Expect(in).To(framework.ExitWith(0))
		ir, err := in.Report()
		Expect(err).NotTo(HaveOccurred())
		Expect(ir.Tensors).To(ContainElement(HaveField("Name", "model.layers.1.mlp.experts.7.down_proj.input_scale")),
			"even the expert that received no tokens has its input_scale")
	})

	It("refuses an existing --out without --force with exit 2 before calibrating, and replaces it with --force", func() {
		out := filepath.Join(work, "existing")
		Expect(os.MkdirAll(out, 0o755)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(out, "notes.txt"), []byte("keep"), 0o644)).To(Succeed())
		res := quantize(out)
		Expect(res).To(framework.ExitWith(2))
		Expect(res.Stderr).To(ContainSubstring("--force"))
		Expect(filepath.Join(out, "notes.txt")).To(BeAnExistingFile())
		Expect(quantize(out, "--force")).To(framework.ExitWith(0))
		Expect(filepath.Join(out, "notes.txt")).NotTo(BeAnExistingFile())
	})

	It("refuses an --out inside --model with exit 2", func() {
		res := quantize(filepath.Join(model, "quantized"))
		Expect(res).To(framework.ExitWith(2))
		Expect(filepath.Join(model, "quantized")).NotTo(BeAnExistingFile())
	})

	It("refuses an unknown --dtype with exit 2", func() {
		res := quantize(filepath.Join(work, "dtype"), "--dtype", "fp64")
		Expect(res).To(framework.ExitWith(2))
		Expect(res.Stderr).To(ContainSubstring("fp64"))
	})

	It("catches format-gate: exit 1 from the export self-check, the folder written with its report, and verify failing on it", func() {
		out := filepath.Join(work, "format-gate")
		res := quantize(out, "--inject-fault", "format-gate")
		Expect(res).To(framework.ExitWith(1))
		Expect(res.Stderr).To(ContainSubstring("self-check"))
		Expect(filepath.Join(out, "ptqgate_report.json")).To(BeAnExistingFile())
		v := ptqgate.MustRun("verify", out)
		Expect(v).To(framework.ExitWith(1))
		Expect(v.Stdout).To(ContainSubstring("report.missing-tensor"))
	})

	It("catches hook-bypass: exit 1 and nothing exported; with --allow-uncalibrated the export lacks the expert input_scales and verify fails", func() {
		out := filepath.Join(work, "hook-bypass")
		Expect(quantize(out, "--inject-fault", "hook-bypass")).To(framework.ExitWith(1))
		Expect(out).NotTo(BeAnExistingFile())
		Expect(quantize(out, "--inject-fault", "hook-bypass", "--allow-uncalibrated")).To(framework.ExitWith(0))
		v := ptqgate.MustRun("verify", out)
		Expect(v).To(framework.ExitWith(1))
		Expect(v.Stdout).To(ContainSubstring("input_scale"))
	})
})
