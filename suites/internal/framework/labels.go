package framework

import "github.com/onsi/ginkgo/v2"

// Labels of the suites. Every spec carries its suite's label (given to
// RunSpecs); specs add the narrower ones. Filter with
// `go test ./suites/... -ginkgo.label-filter=EXPR` or
// `go tool ginkgo -r --label-filter=EXPR ./suites`.
const (
	// LabelCalibration marks calibration accounting specs.
	LabelCalibration = "calibration"
	// LabelExport marks export census and formula specs.
	LabelExport = "export"
	// LabelContracts marks loader-contract conformance specs.
	LabelContracts = "contracts"
	// LabelRegression marks the regression catalogue's replays (with the
	// entry's ID, e.g. "R12", as a second label).
	LabelRegression = "regression"
	// LabelGate marks the gate suite run on a user checkpoint.
	LabelGate = "gate"
	// LabelGPU marks specs that need an NVIDIA GPU (never run by make test).
	LabelGPU = "gpu"
	// LabelSlow marks specs that take more than a few seconds.
	LabelSlow = "slow"
	// LabelCLI marks black-box specs that run the built ptqgate binary.
	LabelCLI = "cli"
)

// CLITier labels a container of black-box specs.
var CLITier = ginkgo.Label(LabelCLI)

// Slow labels a slow spec and gives it priority, so that with -p it starts
// first (Ginkgo's own MarkSlow habit).
var Slow = []any{ginkgo.Label(LabelSlow), ginkgo.SpecPriority(10)}

// Catalogue labels the replay of regression catalogue entry id ("R12"):
// Label("regression", "R12").
func Catalogue(id string) ginkgo.Labels {
	return ginkgo.Label(LabelRegression, id)
}
