package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/ptqgate/ptqgate/reports"
	"github.com/ptqgate/ptqgate/suites/internal/framework"
)

// commands are the top-level ptqgate commands (INTERFACES.md "CLI grammar").
var commands = []string{"version", "recipes", "fixture", "inspect", "quantize", "verify", "report"}

var _ = Describe("The command line", func() {
	It("lists every command in --help", func() {
		res := ptqgate.MustRun("--help")
		Expect(res).To(framework.ExitWith(0))
		for _, c := range commands {
			Expect(res.Stdout).To(ContainSubstring(c))
		}
		Expect(res.Stdout).To(ContainSubstring("Exit codes"))
	})

	DescribeTable("gives every command a --help with exit 0",
		func(args ...string) {
			res := ptqgate.MustRun(append(args, "--help")...)
			Expect(res).To(framework.ExitWith(0))
			Expect(res.Stdout).To(ContainSubstring("Usage:"))
		},
		Entry("version", "version"),
		Entry("recipes", "recipes"),
		Entry("fixture", "fixture"),
		Entry("inspect", "inspect"),
		Entry("quantize", "quantize"),
		Entry("verify", "verify"),
		Entry("report", "report"),
		Entry("report diff", "report", "diff"),
	)

	It("prints its version", func() {
		res := ptqgate.MustRun("version")
		Expect(res).To(framework.ExitWith(0))
		Expect(res.Stdout).To(MatchRegexp(`^ptqgate \S+`))
	})

	DescribeTable("answers usage errors with exit 2 and a pointer to --help",
		func(args ...string) {
			res := ptqgate.MustRun(args...)
			Expect(res).To(framework.ExitWith(2))
			Expect(res.Stderr).To(ContainSubstring("ptqgate: "))
		},
		Entry("an unknown command", "frobnicate"),
		Entry("an unknown flag", "inspect", ".", "--frobnicate"),
		Entry("a missing path", "inspect", "/nonexistent/ptqgate"),
		Entry("an unknown fixture", "fixture", "llama-tiny", "--out", "x"),
	)

	It("lists the recipe presets with their aliases, also as JSON", func() {
		res := ptqgate.MustRun("recipes")
		Expect(res).To(framework.ExitWith(0))
		for _, p := range []string{"fp8_default-fp8_kv", "nvfp4_experts_only-fp8_kv", "w4a16_nvfp4", "nvfp4_experts_only-kv_fp8", "nvfp4_experts_only-fp8_kv_layerwise"} {
			Expect(res.Stdout).To(ContainSubstring(p))
		}
		js := ptqgate.MustRun("recipes", "--json")
		Expect(js).To(framework.ExitWith(0))
		var presets []struct {
			Name    string   `json:"name"`
			Aliases []string `json:"aliases"`
		}
		Expect(json.Unmarshal([]byte(js.Stdout), &presets)).To(Succeed())
		Expect(presets).To(ContainElement(And(HaveField("Name", "fp8_default-fp8_kv"), HaveField("Aliases", ContainElement("fp8_default-kv_fp8")))))
	})
})

var _ = Describe("ptqgate fixture", func() {
	It("lists the built-in fixtures", func() {
		res := ptqgate.MustRun("fixture", "--list")
		Expect(res).To(framework.ExitWith(0))
		for _, f := range []string{framework.Qwen3MoETiny, framework.Qwen3MoEDenseTiny, framework.Qwen35MoETiny} {
			Expect(res.Stdout).To(ContainSubstring(f))
		}
	})

	It("writes byte-identical checkpoints for the same options", func() {
		a, b := filepath.Join(framework.TempDir(), "a"), filepath.Join(framework.TempDir(), "b")
		Expect(ptqgate.MustRun("fixture", framework.Qwen35MoETiny, "--out", a)).To(framework.ExitWith(0))
		Expect(ptqgate.MustRun("fixture", framework.Qwen35MoETiny, "--out", b)).To(framework.ExitWith(0))
		for _, f := range []string{"config.json", "generation_config.json", "model.safetensors"} {
			x, err := os.ReadFile(filepath.Join(a, f))
			Expect(err).NotTo(HaveOccurred())
			y, err := os.ReadFile(filepath.Join(b, f))
			Expect(err).NotTo(HaveOccurred())
			Expect(x == nil || string(x) == string(y)).To(BeTrue(), "%s differs between two runs", f)
		}
	})

	It("refuses a non-empty --out without --force (exit 2) and replaces only the checkpoint files with it", func() {
		dir := framework.TempDir()
		Expect(os.WriteFile(filepath.Join(dir, "README.md"), []byte("mine"), 0o644)).To(Succeed())
		Expect(ptqgate.MustRun("fixture", framework.Qwen3MoETiny, "--out", dir)).To(framework.ExitWith(2))
		Expect(filepath.Join(dir, "model.safetensors")).NotTo(BeAnExistingFile())
		Expect(ptqgate.MustRun("fixture", framework.Qwen3MoETiny, "--out", dir, "--force")).To(framework.ExitWith(0))
		Expect(filepath.Join(dir, "model.safetensors")).To(BeAnExistingFile())
		Expect(filepath.Join(dir, "README.md")).To(BeAnExistingFile())
	})

	It("shards the weights with an index when asked", func() {
		dir := filepath.Join(framework.TempDir(), "sharded")
		Expect(ptqgate.MustRun("fixture", framework.Qwen3MoETiny, "--out", dir, "--max-shard-size", "100000")).To(framework.ExitWith(0))
		Expect(filepath.Join(dir, "model.safetensors.index.json")).To(BeAnExistingFile())
		res := ptqgate.MustRun("inspect", dir, "--json")
		Expect(res).To(framework.ExitWith(0))
		rep, err := res.Report()
		Expect(err).NotTo(HaveOccurred())
		Expect(rep.Tensors).To(HaveLen(69))
	})
})

var _ = Describe("ptqgate inspect", func() {
	var dir string
	BeforeEach(func() {
		dir = filepath.Join(framework.TempDir(), "model")
		Expect(ptqgate.MustRun("fixture", framework.Qwen3MoETiny, "--out", dir)).To(framework.ExitWith(0))
	})

	It("reads a checkpoint folder or a single file, with the same report wherever --json goes", func() {
		for _, args := range [][]string{{"inspect", dir, "--json"}, {"inspect", "--json", dir}, {"inspect", filepath.Join(dir, "model.safetensors"), "--json"}} {
			res := ptqgate.MustRun(args...)
			Expect(res).To(framework.ExitWith(0))
			rep, err := res.Report()
			Expect(err).NotTo(HaveOccurred())
			Expect(rep.Kind).To(Equal(reports.KindInspect))
			Expect(rep.Tensors).To(HaveLen(69))
		}
	})

	It("fails a corrupt safetensors file with exit 1, naming the file", func() {
		bad := filepath.Join(framework.TempDir(), "bad.safetensors")
		Expect(os.WriteFile(bad, []byte("this is not a safetensors file"), 0o644)).To(Succeed())
		res := ptqgate.MustRun("inspect", bad)
		Expect(res).To(framework.ExitWith(1))
		Expect(res.Stderr).To(ContainSubstring("bad.safetensors"))
	})

	It("fails a checkpoint folder without config.json with exit 1", func() {
		Expect(os.Remove(filepath.Join(dir, "config.json"))).To(Succeed())
		res := ptqgate.MustRun("inspect", dir)
		Expect(res).To(framework.ExitWith(1))
		Expect(res.Stderr).To(ContainSubstring("config.json"))
	})
})
