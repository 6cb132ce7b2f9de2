package calibration_test

import (
	"fmt"
	"strconv"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/ptqgate/ptqgate/internal/refdata"
	"github.com/ptqgate/ptqgate/ptqcore/calib"
	"github.com/ptqgate/ptqgate/reports"
	"github.com/ptqgate/ptqgate/suites/internal/framework"
)

// calibrated runs calibration and requires it to pass its checks.
func calibrated(dir, recipe, calibFile string, opt calib.Options) *calib.Result {
	GinkgoHelper()
	res, err := framework.Calibrate(dir, recipe, calibFile, opt)
	Expect(err).NotTo(HaveOccurred(), "calibrating %s with %s", dir, recipe)
	return res
}

// expertKey identifies an expert of a report.
type expertKey struct{ layer, expert int }

// expertsOf indexes a report's experts.
func expertsOf(r *reports.Report) map[expertKey]reports.Expert {
	out := make(map[expertKey]reports.Expert, len(r.Experts))
	for _, e := range r.Experts {
		out[expertKey{e.Layer, e.Expert}] = e
	}
	return out
}

// quantizersOf indexes a report's quantizers by name.
func quantizersOf(r *reports.Report) map[string]reports.Quantizer {
	out := make(map[string]reports.Quantizer, len(r.Quantizers))
	for _, q := range r.Quantizers {
		out[q.Name] = q
	}
	return out
}

// layerOf returns the decoder layer index of an experts module name in
// counts.json ("model.layers.1.mlp.experts").
func layerOf(module string) int {
	l := reports.LayerOf(module)
	Expect(l).To(BeNumerically(">=", 0), "no layer index in %q", module)
	return l
}

// batchesWithTokens counts, per expert, the batches in which it received
// at least one token: the number of calls an eager per-expert hook sees.
func batchesWithTokens(l refdata.CountsLayer) []int64 {
	out := make([]int64, l.NumExperts)
	for _, perBatch := range l.TokensRoutedPerBatch {
		for e, n := range perBatch {
			if n > 0 {
				out[e]++
			}
		}
	}
	return out
}

// sharedInputQuantizer names a layer's shared expert input quantizer.
func sharedInputQuantizer(module, proj string) string {
	return fmt.Sprintf("%s.%s_input_quantizer", module, proj)
}

// isRouter reports whether an amax.json key belongs to a MoE router (a
// transformers v5 TopKRouter, not a Linear), which ModelOpt does not
// quantize; amax.json records it for information. Qwen3.5's
// shared_expert_gate is a Linear and has quantizers.
func isRouter(name string) bool {
	return strings.Contains(name, ".mlp.gate.")
}

func itoa(i int) string { return strconv.Itoa(i) }

// lastIndex returns the trailing integer component of a dotted name.
func lastIndex(name string) int {
	i := strings.LastIndexByte(name, '.')
	n, err := strconv.Atoi(name[i+1:])
	Expect(err).NotTo(HaveOccurred(), "no trailing index in %q", name)
	return n
}

// isExpertWeight reports whether a quantizer role (reports.NamePattern) is
// a per-expert weight quantizer.
func isExpertWeight(role string) bool {
	return strings.HasSuffix(role, "_weight_quantizers.*")
}

// isSharedExpertInput reports whether a role is a routed experts module's
// shared input quantizer.
func isSharedExpertInput(role string) bool {
	return strings.HasSuffix(role, ".mlp.experts.gate_up_proj_input_quantizer") || strings.HasSuffix(role, ".mlp.experts.down_proj_input_quantizer")
}

// projectionCalls returns an expert's calls for the projection a role
// names.
func projectionCalls(e reports.Expert, role string) int64 {
	if strings.Contains(role, "experts.gate_up_proj") {
		return e.GateUpCalls
	}
	return e.DownCalls
}
