// Package cli_test is the black-box tier for the commands that no topical
// suite owns — version, recipes, fixture, inspect, report, report diff —
// and for the command-line grammar and exit codes of INTERFACES.md, plus
// ci/ptqgate-gate.sh, the script users drop into their CI. Like Ginkgo's
// own integration tier, it builds the real binary once
// (SynchronizedBeforeSuite) and runs it on fixtures in temporary folders.
package cli_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/ptqgate/ptqgate/suites/internal/framework"
)

func TestCLI(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "ptqgate command line", Label(framework.LabelCLI))
}

// ptqgate is the binary built once for the suite.
var ptqgate = framework.SuiteCLI()
