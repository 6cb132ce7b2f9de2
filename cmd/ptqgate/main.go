// Command ptqgate quantizes Mixture-of-Experts checkpoints with full
// calibration accounting, verifies quantized checkpoints against the vLLM
// and SGLang loader contracts, and writes regression reports.
//
// Run "ptqgate --help" for the commands; INTERFACES.md in the repository
// fixes the command grammar, exit codes and report model.
package main

import (
	"os"

	"github.com/ptqgate/ptqgate/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:]))
}
