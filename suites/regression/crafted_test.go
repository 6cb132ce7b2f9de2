package regression_test

import (
	"path/filepath"
	"slices"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/ptqgate/ptqgate/fixtures/catalogue"
	"github.com/ptqgate/ptqgate/reports"
	"github.com/ptqgate/ptqgate/suites/internal/framework"
	"github.com/ptqgate/ptqgate/verifier/contracts"
)

// caught is what a replay must show: the rule fires with the severity on
// every target of Fires and on none of Spares. The catalogue's rule column
// (CATALOGUE.md) is the source of these expectations; they are pinned here
// so that a change of the verifier's verdict shows up as a failing replay.
type caught struct {
	Rule     string
	Severity reports.Severity
	Fires    []string
	Spares   []string
	TP       int
}

// span returns the known target tokens from first to last inclusive, in
// the order of contracts.KnownTokens (one engine, oldest version first).
func span(first, last string) []string {
	GinkgoHelper()
	known := contracts.KnownTokens()
	i, j := slices.Index(known, first), slices.Index(known, last)
	Expect(i).To(BeNumerically(">=", 0), "unknown target %s", first)
	Expect(j).To(BeNumerically(">=", i), "unknown target %s or before %s", last, first)
	return known[i : j+1]
}

// verified builds the crafted checkpoint of catalogue entry id and
// verifies it against every target the expectation names.
func verified(id string, want caught) *reports.Report {
	GinkgoHelper()
	e, ok := catalogue.Lookup(id)
	Expect(ok).To(BeTrue(), "fixtures/catalogue has no entry %s", id)
	Expect(e.Crafted).To(BeTrue(), "%s has no crafted checkpoint", id)
	dir := filepath.Join(framework.TempDir(), id)
	Expect(catalogue.Build(id, dir)).To(Succeed())
	var targets []string
	for _, t := range append(slices.Clone(want.Fires), want.Spares...) {
		if t != reports.TargetAny && !slices.Contains(targets, t) {
			targets = append(targets, t)
		}
	}
	if len(targets) == 0 {
		targets = nil // the default targets
	}
	rep, err := framework.Verify(dir, targets, want.TP)
	Expect(err).NotTo(HaveOccurred())
	return rep
}

// replayCrafted is the body of a crafted entry's spec.
func replayCrafted(id string, want caught) {
	GinkgoHelper()
	rep := verified(id, want)
	for _, t := range want.Fires {
		Expect(rep).To(framework.HaveFinding(want.Rule, t, want.Severity), "%s must be caught for %s", id, t)
	}
	for _, t := range want.Spares {
		Expect(rep).NotTo(framework.HaveFinding(want.Rule, t, ""), "%s's failure does not happen on %s", id, t)
	}
	if want.Severity == reports.SeverityError {
		Expect(rep).NotTo(framework.BeClean())
	}
	for _, f := range (framework.FindingQuery{Rule: want.Rule}).Select(rep) {
		Expect(f.Message).NotTo(BeEmpty())
		Expect(f.Tensor+f.Module).NotTo(BeEmpty(), "a finding names the tensor or module it is about")
		Expect(f.Source).NotTo(BeEmpty(), "a finding names the spec section it comes from")
	}
}

var (
	mainTargets = []string{"vllm@main", "sglang@main"}
	anyTarget   = []string{reports.TargetAny}
)

var _ = Describe("Crafted checkpoints from the catalogue", func() {
	It("R2 experts-only NVFP4 export whose fused experts stayed BF16 (MO #1340) is caught by census.unexcluded-unquantized", framework.Catalogue("R2"), func() {
		replayCrafted("R2", caught{Rule: "census.unexcluded-unquantized", Severity: reports.SeverityError, Fires: mainTargets})
		By("cross-checking ptqgate_report.json: the enabled expert quantizers have no tensors")
		replayCrafted("R2", caught{Rule: "report.missing-tensor", Severity: reports.SeverityError, Fires: anyTarget})
	})

	It("R4 Qwen3.5 FP8 with fused 3-D expert tensors beside per-expert scales (MO #1340, vLLM) is caught by layout.fused-sticky on vLLM only", framework.Catalogue("R4"), func() {
		replayCrafted("R4", caught{Rule: "layout.fused-sticky", Severity: reports.SeverityError,
			Fires: []string{"vllm@0.20", "vllm@0.27", "vllm@main"}, Spares: []string{"sglang@main"}})
	})

	It("R5 Qwen3.5 full FP8 with 0-d in_proj_qkv scales (MO #1340, SGLang) is caught by layout.gdn-packed-scale on sglang@0.5.10 only", framework.Catalogue("R5"), func() {
		replayCrafted("R5", caught{Rule: "layout.gdn-packed-scale", Severity: reports.SeverityError,
			Fires: []string{"sglang@0.5.10"}, Spares: []string{"sglang@0.5.9", "sglang@0.5.11", "vllm@main"}})
	})

	It("R11 FP8 KV scales exactly 1.0 in every layer (MO #20) are flagged by kv.unit", framework.Catalogue("R11"), func() {
		replayCrafted("R11", caught{Rule: "kv.unit", Severity: reports.SeverityWarning, Fires: anyTarget})
	})

	It("R12 NVFP4 experts without input_scale (vLLM #45212) are caught by census.missing-tensor", framework.Catalogue("R12"), func() {
		replayCrafted("R12", caught{Rule: "census.missing-tensor", Severity: reports.SeverityError, Fires: anyTarget})
		rep := verified("R12", caught{})
		Expect(rep).To(framework.HaveFindingMatching(framework.FindingQuery{Rule: "census.missing-tensor", Tensor: "input_scale"}))
	})

	It("R13 an index naming a weight_scale no shard holds (vLLM #57108) is caught by census.index-shard", framework.Catalogue("R13"), func() {
		replayCrafted("R13", caught{Rule: "census.index-shard", Severity: reports.SeverityError, Fires: anyTarget})
	})

	It("R14 an infinite expert input_scale (compressed-tensors #595) is caught by values.nonfinite", framework.Catalogue("R14"), func() {
		replayCrafted("R14", caught{Rule: "values.nonfinite", Severity: reports.SeverityError, Fires: anyTarget})
	})

	It("R15 a zero expert input_scale that loaders invert to +Inf (TRT-LLM #16447) is caught by values.nonpositive", framework.Catalogue("R15"), func() {
		replayCrafted("R15", caught{Rule: "values.nonpositive", Severity: reports.SeverityError, Fires: anyTarget})
	})

	It("R16 Qwen3.5 NVFP4 fused experts with fused scale names (vLLM #49638) are caught by layout.fused-experts", framework.Catalogue("R16"), func() {
		replayCrafted("R16", caught{Rule: "layout.fused-experts", Severity: reports.SeverityError, Fires: mainTargets})
	})

	It("R17 expert keys named experts.<proj>.<e> (vLLM #40885) are caught by layout.expert-order", framework.Catalogue("R17"), func() {
		replayCrafted("R17", caught{Rule: "layout.expert-order", Severity: reports.SeverityError, Fires: mainTargets})
	})

	It("R18 q/k/v stored pre-fused with one 0-d scale (SGLang #29151) is caught by layout.fused-on-disk where loaders fill slot 0 only", framework.Catalogue("R18"), func() {
		replayCrafted("R18", caught{Rule: "layout.fused-on-disk", Severity: reports.SeverityError,
			Fires: append(span("sglang@0.5.9", "sglang@0.5.15"), "vllm@0.20"), Spares: []string{"sglang@0.5.16", "vllm@main"}})
	})

	It("R19 Qwen3.5 FP8 in_proj_qkv with [3] scale vectors (vLLM #47396) is caught by layout.gdn-packed-scale", framework.Catalogue("R19"), func() {
		replayCrafted("R19", caught{Rule: "layout.gdn-packed-scale", Severity: reports.SeverityError,
			Fires: []string{"vllm@0.20", "vllm@0.27", "vllm@main", "sglang@0.5.9"}, Spares: []string{"sglang@0.5.10", "sglang@0.5.11"}})
	})

	It("R20 an expert whose gate and up weight_scale_2 differ (vLLM #47515) is caught by values.gate-up-scale2", framework.Catalogue("R20"), func() {
		replayCrafted("R20", caught{Rule: "values.gate-up-scale2", Severity: reports.SeverityError, Fires: mainTargets})
	})

	It("R21 Qwen3.5 FP8 KV scales the loader never remaps, with k_scale above 1 (vLLM #54623) are caught by kv.dropped", framework.Catalogue("R21"), func() {
		replayCrafted("R21", caught{Rule: "kv.dropped", Severity: reports.SeverityError,
			Fires: append([]string{"vllm@0.20", "vllm@0.27"}, span("sglang@0.5.9", "sglang@0.5.16")...), Spares: []string{"vllm@main", "sglang@0.5.17"}})
	})

	It("R22 KV scales named self_attn.k_scale that a rename loses (vLLM #52012, SGLang #20870) are caught by kv.dropped", framework.Catalogue("R22"), func() {
		replayCrafted("R22", caught{Rule: "kv.dropped", Severity: reports.SeverityError,
			Fires: append(append(span("sglang@0.5.9", "sglang@0.5.17"), "sglang@main"), "vllm@0.20", "vllm@0.27"), Spares: []string{"vllm@main"}})
	})

	It("R23 fused experts exported as gate_up_proj_packed/_scale/_shape (LLMC #2939) are caught by names.unmapped", framework.Catalogue("R23"), func() {
		replayCrafted("R23", caught{Rule: "names.unmapped", Severity: reports.SeverityError, Fires: mainTargets})
	})

	It("R24 every routed expert listed one by one in the ignore list (LLMC #2060) is caught by exclude.per-expert", framework.Catalogue("R24"), func() {
		replayCrafted("R24", caught{Rule: "exclude.per-expert", Severity: reports.SeverityError, Fires: mainTargets})
	})

	It("R27 an NVFP4 MoE intermediate size that splits into 24 per rank at TP 2 (vLLM #49949) is caught by tp.moe-intermediate", framework.Catalogue("R27"), func() {
		replayCrafted("R27", caught{Rule: "tp.moe-intermediate", Severity: reports.SeverityError, Fires: mainTargets, TP: 2})
		By("passing the same checkpoint without tensor parallelism")
		rep := verified("R27", caught{Fires: mainTargets})
		Expect(rep).NotTo(framework.HaveFinding("tp.moe-intermediate", "", ""))
	})
})
