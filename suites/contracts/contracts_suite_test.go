// Package contracts_test is the loader-contract conformance suite: one
// conformance function (LoaderContract, conformance_test.go), written once
// in the manner of gonum's testlapack, is run for every engine target
// ptqgate knows (vllm@0.20 … sglang@main) and for two implementations of
// "verify this checkpoint for that target": the verifier library in
// process, and the built ptqgate binary (`ptqgate verify --json --target`).
//
// For each target the suite asserts that
//   - clean checkpoints — the catalogue's independent ModelOpt-format
//     builder in every format, scope and KV setting, and ptqgate's own
//     exports of calibrated fixtures — verify clean wherever the target can
//     load the format, except for the engine limitations the engine specs
//     document, which must be reported with their rule;
//   - a format the target cannot load is exactly one config.quant-algo
//     error for that target;
//   - every crafted broken checkpoint of the regression catalogue that
//     concerns the target is caught with the catalogue's rule and severity,
//     and spared on the engine versions the catalogue says load it right.
package contracts_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/ptqgate/ptqgate/suites/internal/framework"
)

func TestContracts(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Loader contracts", Label(framework.LabelContracts))
}

// ptqgate is the binary built once for the black-box implementation.
var ptqgate = framework.SuiteCLI(func() {
	checkpoints = newCheckpointCache(framework.TempDir())
})
