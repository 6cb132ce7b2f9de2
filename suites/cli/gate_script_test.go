package cli_test

import (
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/ptqgate/ptqgate/fixtures/catalogue"
	"github.com/ptqgate/ptqgate/internal/refdata"
	"github.com/ptqgate/ptqgate/suites/internal/framework"
)

// gateRun is one run of ci/ptqgate-gate.sh.
type gateRun struct {
	exit   int
	output string
}

// runGate runs the gate script with the suite's ptqgate binary.
func runGate(args ...string) gateRun {
	GinkgoHelper()
	cmd := exec.Command(filepath.Join(refdata.RepoRoot(), "ci", "ptqgate-gate.sh"), args...)
	cmd.Env = append(os.Environ(), "PTQGATE_BIN="+ptqgate.Path)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	code := 0
	if err != nil {
		Expect(err).To(BeAssignableToTypeOf(exit), "running the gate script: %v", err)
		code = err.(*exec.ExitError).ExitCode()
	}
	GinkgoWriter.Write(out)
	return gateRun{exit: code, output: string(out)}
}

var _ = Describe("ci/ptqgate-gate.sh", Label(framework.LabelGate), framework.Slow, Ordered, func() {
	var clean, broken string

	BeforeAll(func() {
		clean = filepath.Join(framework.TempDir(), "clean")
		Expect(catalogue.Clean(catalogue.NVFP4, clean, catalogue.Options{Scope: catalogue.ScopeExperts, KV: true, Report: true})).To(Succeed())
		broken = filepath.Join(framework.TempDir(), "R12")
		Expect(catalogue.Build("R12", broken)).To(Succeed())
	})

	It("passes a clean checkpoint with exit 0 and publishes JUnit, HTML, Markdown and JSON reports", func() {
		dir := filepath.Join(framework.TempDir(), "reports")
		run := runGate(clean, "--target", "vllm", "--target", "sglang@0.5.10", "--report-dir", dir)
		Expect(run.exit).To(Equal(0), run.output)
		Expect(run.output).To(ContainSubstring("PASSED"))
		for _, f := range []string{"junit.xml", "report.html", "report.md", "verify.json"} {
			Expect(filepath.Join(dir, f)).To(BeAnExistingFile())
		}
		j := readGateJUnit(filepath.Join(dir, "junit.xml"))
		Expect(j.Failures).To(BeZero())
		Expect(j.Cases).To(ContainElement(ContainSubstring("[sglang@0.5.10]")))
		Expect(j.Cases).To(ContainElement(ContainSubstring("census: ")))
	})

	It("fails a broken checkpoint with exit 1 and a failing JUnit case for the rule family and target", func() {
		dir := filepath.Join(framework.TempDir(), "reports")
		run := runGate(broken, "--report-dir", dir)
		Expect(run.exit).To(Equal(1), run.output)
		Expect(run.output).To(ContainSubstring("census.missing-tensor"))
		j := readGateJUnit(filepath.Join(dir, "junit.xml"))
		Expect(j.Failed).To(ContainElement(HavePrefix("census: ")))
	})

	It("checks per-rank divisibility for --tp", func() {
		dir := filepath.Join(framework.TempDir(), "R27")
		Expect(catalogue.Build("R27", dir)).To(Succeed())
		Expect(runGate(dir, "--report-dir", framework.TempDir()).exit).To(Equal(0))
		run := runGate(dir, "--tp", "2", "--report-dir", framework.TempDir())
		Expect(run.exit).To(Equal(1), run.output)
		Expect(run.output).To(ContainSubstring("tp.moe-intermediate"))
	})

	It("answers a usage error with exit 2", func() {
		Expect(runGate(clean, "--target", "vllm@0.1").exit).To(Equal(2))
		Expect(runGate(filepath.Join(clean, "nope")).exit).To(Equal(2))
		Expect(runGate().exit).To(Equal(2))
	})
})

// gateJUnit is the part of the gate's JUnit file the specs read.
type gateJUnit struct {
	Failures int
	Cases    []string
	Failed   []string
}

func readGateJUnit(path string) gateJUnit {
	GinkgoHelper()
	raw, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred())
	var doc struct {
		Failures int `xml:"failures,attr"`
		Suites   []struct {
			Cases []struct {
				Name    string    `xml:"name,attr"`
				Failure *struct{} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	Expect(xml.Unmarshal(raw, &doc)).To(Succeed())
	j := gateJUnit{Failures: doc.Failures}
	for _, s := range doc.Suites {
		for _, c := range s.Cases {
			j.Cases = append(j.Cases, c.Name)
			if c.Failure != nil {
				j.Failed = append(j.Failed, c.Name)
			}
		}
	}
	return j
}
