//go:build cuda

package cli

import (
	"github.com/ptqgate/ptqgate/ptqcore/backend"
	"github.com/ptqgate/ptqgate/ptqcore/backend/cuda"
)

// The CUDA build (ptqgate-cuda) links the CUDA backend: --device cuda
// opens it (options from the PTQGATE_CUDA_* environment variables).
func init() {
	deviceBackends["cuda"] = func() (backend.Backend, error) { return cuda.New() }
}

// deviceDispatch is a no-op in the CUDA build: the backend is linked in.
func deviceDispatch(*App, string) (bool, error) { return false, nil }
