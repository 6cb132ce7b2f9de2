package contracts_test

import (
	"encoding/xml"
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/ptqgate/ptqgate/fixtures/catalogue"
	"github.com/ptqgate/ptqgate/reports"
	"github.com/ptqgate/ptqgate/suites/internal/framework"
)

// junitSuites is the part of a JUnit file the specs read.
type junitSuites struct {
	Tests    int `xml:"tests,attr"`
	Failures int `xml:"failures,attr"`
	Suites   []struct {
		Name  string `xml:"name,attr"`
		Cases []struct {
			Name    string    `xml:"name,attr"`
			Failure *struct{} `xml:"failure"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

func readJUnit(path string) junitSuites {
	GinkgoHelper()
	raw, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred())
	var j junitSuites
	Expect(xml.Unmarshal(raw, &j)).To(Succeed())
	return j
}

var _ = Describe("ptqgate verify", framework.CLITier, func() {
	var clean, broken string

	BeforeEach(func() {
		var err error
		clean, err = checkpoints.get("cli clean NVFP4 experts + KV", func(dir string) error {
			return catalogue.Clean(catalogue.NVFP4, dir, catalogue.Options{Scope: catalogue.ScopeExperts, KV: true})
		})
		Expect(err).NotTo(HaveOccurred())
		broken, err = checkpoints.crafted("R12")
		Expect(err).NotTo(HaveOccurred())
	})

	It("passes a clean checkpoint with exit 0 against the default targets, vllm and sglang", func() {
		res := ptqgate.MustRun("verify", clean, "--json")
		Expect(res).To(framework.ExitWith(0))
		rep, err := res.Report()
		Expect(err).NotTo(HaveOccurred())
		Expect(rep.Kind).To(Equal(reports.KindVerify))
		Expect(framework.Targets(rep, framework.FindingQuery{})).To(ContainElements("vllm@main", "sglang@main"))
		Expect(rep.Checks).NotTo(BeEmpty())
		Expect(res.Stderr).To(ContainSubstring("PASSED"), "the table goes to stderr with --json")
	})

	It("fails a broken checkpoint with exit 1, naming the rule, the tensor and the target on stdout", func() {
		res := ptqgate.MustRun("verify", broken)
		Expect(res).To(framework.ExitWith(1))
		Expect(res.Stdout).To(ContainSubstring("census.missing-tensor"))
		Expect(res.Stdout).To(ContainSubstring("input_scale"))
		Expect(res.Stdout).To(ContainSubstring("FAILED"))
	})

	It("writes a JUnit report whose verdict matches the exit code, one case per evaluated rule and target", func() {
		dir := framework.TempDir()
		for _, c := range []struct {
			ckpt     string
			exit     int
			failures bool
		}{{clean, 0, false}, {broken, 1, true}} {
			file := filepath.Join(dir, filepath.Base(c.ckpt)+".xml")
			report := filepath.Join(dir, filepath.Base(c.ckpt)+".json")
			res := ptqgate.MustRun("verify", c.ckpt, "--target", "vllm", "--target", "sglang@0.5.10", "--junit", file, "--report", report)
			Expect(res).To(framework.ExitWith(c.exit))
			j := readJUnit(file)
			Expect(j.Tests).To(BeNumerically(">", 10))
			Expect(j.Failures > 0).To(Equal(c.failures))
			var names []string
			for _, s := range j.Suites {
				names = append(names, s.Name)
			}
			Expect(names).To(ContainElements(ContainSubstring("vllm@main"), ContainSubstring("sglang@0.5.10")))
			rep, err := reports.ReadFile(report)
			Expect(err).NotTo(HaveOccurred())
			Expect(rep.Clean()).To(Equal(!c.failures))
		}
	})

	It("accepts targets with a leading v and comma-separated, and names findings with the canonical token", func() {
		res := ptqgate.MustRun("verify", broken, "--json", "--target", "vllm@v0.27,sglang@v0.5.10")
		Expect(res).To(framework.ExitWith(1))
		rep, err := res.Report()
		Expect(err).NotTo(HaveOccurred())
		Expect(framework.Targets(rep, framework.FindingQuery{Rule: "config.read"})).To(Equal([]string{"sglang@0.5.10", "vllm@0.27"}))
	})

	It("checks per-rank divisibility only when asked with --tp", func() {
		dir, err := checkpoints.crafted("R27")
		Expect(err).NotTo(HaveOccurred())
		Expect(ptqgate.MustRun("verify", dir)).To(framework.ExitWith(0))
		res := ptqgate.MustRun("verify", dir, "--tp", "2")
		Expect(res).To(framework.ExitWith(1))
		Expect(res.Stdout).To(ContainSubstring("tp.moe-intermediate"))
	})

	DescribeTable("rejects bad requests with exit 2",
		func(args func() []string, mustSay string) {
			res := ptqgate.MustRun(args()...)
			Expect(res).To(framework.ExitWith(2))
			Expect(res.Stderr).To(ContainSubstring(mustSay))
		},
		Entry("an unknown target, listing the known ones", func() []string { return []string{"verify", clean, "--target", "vllm@9.9"} }, "sglang@0.5.17"),
		Entry("an unknown engine", func() []string { return []string{"verify", clean, "--target", "trtllm"} }, "trtllm"),
		Entry("a missing checkpoint folder", func() []string { return []string{"verify", filepath.Join(clean, "nope")} }, "nope"),
		Entry("a missing --reference folder", func() []string { return []string{"verify", clean, "--reference", filepath.Join(clean, "nope")} }, "nope"),
		Entry("a negative --tp", func() []string { return []string{"verify", clean, "--tp", "-2"} }, "--tp"),
		Entry("no checkpoint", func() []string { return []string{"verify"} }, "arg"),
	)
})
