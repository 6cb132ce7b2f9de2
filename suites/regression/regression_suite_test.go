// Package regression_test replays the regression catalogue
// (specs/anchors.md §3, suites/regression/CATALOGUE.md): one spec per entry
// whose status is "spec", labelled with its ID, each reproducing the
// reported failure — a fault injected in the PTQ core or a crafted
// checkpoint from fixtures/catalogue — and asserting that ptqgate catches it
// with the rule and for the engine versions the catalogue names.
//
// Replay one entry:
//
//	go test ./suites/regression -ginkgo.label-filter=R12 -ginkgo.v
//
// The spec tree itself is validated (tree_test.go), as the Kubernetes e2e
// framework validates its own: every catalogue ID with status "spec" has
// exactly one spec and every other ID gives its reason in the table.
package regression_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/ptqgate/ptqgate/suites/internal/framework"
)

// tree is the dry-run report of this suite's spec tree, taken before the
// specs run so that the tree can be validated by a spec.
var tree Report

func TestRegression(t *testing.T) {
	RegisterFailHandler(Fail)
	tree = PreviewSpecs("Regression catalogue", Label(framework.LabelRegression))
	RunSpecs(t, "Regression catalogue", Label(framework.LabelRegression))
}
