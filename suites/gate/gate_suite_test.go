// Package gate_test is the suite users put in CI: it verifies one quantized
// checkpoint against the vLLM and SGLang loader contracts and turns the
// verdict into Ginkgo specs, one per (rule family, target), so the JUnit
// report reads "kv: KV-cache scales [sglang@0.5.10]" and a dashboard keeps
// the same test names from one checkpoint to the next.
//
// Configuration is the environment of INTERFACES.md:
//
//	PTQGATE_CHECKPOINT  the checkpoint folder (required; without it every
//	                    spec is skipped with a message)
//	PTQGATE_TARGETS     comma-separated targets, e.g. vllm,sglang@0.5.10
//	                    (default: vllm and sglang, i.e. @main)
//	PTQGATE_TP          tensor-parallel size to check divisibility for
//	PTQGATE_REFERENCE   an unquantized checkpoint to compare the
//	                    dequantized weights against
//	PTQGATE_REPORT_DIR  where junit.xml, report.html, report.md and
//	                    verify.json are written
//
// Run it with ci/ptqgate-gate.sh, or directly:
//
//	PTQGATE_CHECKPOINT=/ckpt go test ./suites/gate -count=1 -v
//
// The test binary exits 0 when the gate passes, 1 when a check fails and 2
// when the configuration is unusable (an unknown target, a missing folder,
// a quantization format ptqgate has no contracts for).
package gate_test

import (
	"fmt"
	"os"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/reporters"
	. "github.com/onsi/gomega"

	"github.com/ptqgate/ptqgate/suites/internal/framework"
)

// gate is the configuration and, with a checkpoint, the verification; it
// is loaded while the package initialises because the spec tree (one spec
// per rule family and target) depends on the targets. loadExit is the exit
// code of an unusable configuration.
var gate, loadExit = Load(os.Getenv)

func TestMain(m *testing.M) {
	if loadExit != 0 {
		os.Exit(loadExit)
	}
	os.Exit(m.Run())
}

func TestGate(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "ptqgate gate", Label(framework.LabelGate))
}

var _ = ReportAfterSuite("publish the gate's JUnit report", func(r Report) {
	if gate.ReportDir == "" {
		return
	}
	path := gate.ReportPath("junit.xml")
	err := reporters.GenerateJUnitReportWithConfig(r, path, reporters.JunitReportConfig{
		OmitSpecLabels:            true,
		OmitLeafNodeType:          true,
		OmitSuiteSetupNodes:       true,
		OmitTimelinesForSpecState: gatePassedOrSkipped,
	})
	Expect(err).NotTo(HaveOccurred())
	fmt.Fprintf(GinkgoWriter, "gate: JUnit report in %s\n", path)
})
