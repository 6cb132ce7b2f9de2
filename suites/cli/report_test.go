package cli_test

import (
	"encoding/xml"
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/ptqgate/ptqgate/suites/internal/framework"
)

var _ = Describe("ptqgate report", Ordered, func() {
	var work, good, bad string

	BeforeAll(func() {
		work = framework.TempDir()
		model := filepath.Join(work, "model")
		Expect(ptqgate.MustRun("fixture", framework.Qwen3MoETiny, "--out", model)).To(framework.ExitWith(0))
		calibFile := framework.CalibFor(framework.Qwen3MoETiny)
		good, bad = filepath.Join(work, "good.json"), filepath.Join(work, "bad.json")
		Expect(ptqgate.MustRun("quantize", "--model", model, "--recipe", "nvfp4_experts_only-fp8_kv", "--calib", calibFile, "--report", good)).To(framework.ExitWith(0))
		Expect(ptqgate.MustRun("quantize", "--model", model, "--recipe", "nvfp4_experts_only-fp8_kv", "--calib", calibFile,
			"--inject-fault", "hook-bypass", "--allow-uncalibrated", "--report", bad)).To(framework.ExitWith(0))
	})

	DescribeTable("renders a report in every format",
		func(format, mustContain string) {
			res := ptqgate.MustRun("report", good, "--format", format)
			Expect(res).To(framework.ExitWith(0))
			Expect(res.Stdout).To(ContainSubstring(mustContain))
		},
		Entry("as a table", "table", "nvfp4_experts_only-fp8_kv"),
		Entry("as Markdown", "md", "### "),
		Entry("as JUnit", "junit", "<testsuites"),
		Entry("as HTML", "html", "<!DOCTYPE html>"),
		Entry("as JSON", "json", `"schema_version": 1`),
	)

	It("writes valid JUnit XML and self-contained HTML files with --out, refusing to overwrite without --force", func() {
		junit := filepath.Join(work, "r.xml")
		Expect(ptqgate.MustRun("report", good, "--format", "junit", "--out", junit)).To(framework.ExitWith(0))
		raw, err := os.ReadFile(junit)
		Expect(err).NotTo(HaveOccurred())
		var v struct {
			XMLName xml.Name
		}
		Expect(xml.Unmarshal(raw, &v)).To(Succeed())
		Expect(v.XMLName.Local).To(Equal("testsuites"))

		html := filepath.Join(work, "r.html")
		Expect(ptqgate.MustRun("report", good, "--format", "html", "--out", html)).To(framework.ExitWith(0))
		page, err := os.ReadFile(html)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(page)).NotTo(ContainSubstring("<script"), "no scripts")
		Expect(string(page)).NotTo(MatchRegexp(`(src|href)="https?://`), "nothing loaded from the network")
		Expect(ptqgate.MustRun("report", good, "--format", "html", "--out", html)).To(framework.ExitWith(2))
		Expect(ptqgate.MustRun("report", good, "--format", "html", "--out", html, "--force")).To(framework.ExitWith(0))
	})

	It("refuses an unknown format with exit 2 and a file that is not a report with exit 1", func() {
		Expect(ptqgate.MustRun("report", good, "--format", "pdf")).To(framework.ExitWith(2))
		notReport := filepath.Join(work, "x.json")
		Expect(os.WriteFile(notReport, []byte(`{"hello": "world"}`), 0o644)).To(Succeed())
		Expect(ptqgate.MustRun("report", notReport)).To(framework.ExitWith(1))
	})

	It("diff passes a report against itself and fails a regression with exit 1, naming the lost hook calls", func() {
		Expect(ptqgate.MustRun("report", "diff", good, good)).To(framework.ExitWith(0))
		res := ptqgate.MustRun("report", "diff", good, bad, "--json")
		Expect(res).To(framework.ExitWith(1))
		rep, err := res.Report()
		Expect(err).NotTo(HaveOccurred())
		Expect(rep).To(framework.HaveFinding("diff/expert-calls-lost", "", "error"))
		Expect(rep).To(framework.HaveFinding("diff/amax-lost", "", "error"))
		By("not counting an improvement as a regression")
		Expect(ptqgate.MustRun("report", "diff", bad, good)).To(framework.ExitWith(0))
	})
})
