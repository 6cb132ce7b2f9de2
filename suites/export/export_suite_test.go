// Package export_test specifies ptqgate's ModelOpt unified Hugging Face
// export (specs/modelopt.md §4) with expectations computed independently of
// the exporter: the tensor census comes from the model geometry and the
// calibrated quantizer set, and every scale and quantized code is
// recomputed here from the calibrated amax and the source weights with the
// formulas of specs/modelopt.md §4.3 — only the container reader and the
// numeric codecs (tested exhaustively against tables) are shared. Black-box
// specs (cli_test.go) run `ptqgate quantize --out` and `ptqgate verify`.
package export_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/ptqgate/ptqgate/suites/internal/framework"
)

func TestExport(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Export suite", Label(framework.LabelExport))
}

// ptqgate is the binary built once for the black-box specs.
var ptqgate = framework.SuiteCLI()
