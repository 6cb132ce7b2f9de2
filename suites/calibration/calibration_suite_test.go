// Package calibration_test specifies ptqgate's calibration accounting
// (INTERFACES.md "Counting"): per-expert hook counts equal the routed-token
// accounting in every expert execution mode, every enabled quantizer ends
// with a finite positive amax that matches Hugging Face transformers, and
// each injected toolkit fault is caught with a message that names what it
// broke.
//
// Two tiers: white-box specs drive ptqcore/calib directly (reference_test.go,
// fixtures_test.go, faults_test.go); black-box specs run the built ptqgate
// binary (cli_test.go, label "cli").
package calibration_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/ptqgate/ptqgate/suites/internal/framework"
)

func TestCalibration(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Calibration suite", Label(framework.LabelCalibration))
}

// ptqgate is the binary built once for the black-box specs.
var ptqgate = framework.SuiteCLI()

// everyQuantizer is a recipe enabling every quantizer FP8 per-tensor.
const everyQuantizer = "testdata/every-quantizer-fp8.yaml"
