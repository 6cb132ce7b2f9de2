//go:build cuda

// Command ptqgate-cuda is ptqgate built with the CUDA backend (build tag
// cuda, `make cuda`): the same commands, with --device cuda available.
// The plain ptqgate binary starts it for --device cuda after checking for
// the NVIDIA driver, so users run `ptqgate quantize … --device cuda`.
package main

import (
	"os"

	"github.com/ptqgate/ptqgate/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:]))
}
