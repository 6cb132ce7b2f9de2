//go:build cuda

// Package gpu_test holds the GPU specs (Label("gpu")): the CUDA backend
// against the CPU backend operation by operation, the forward and the
// calibration against the transformers reference data on the GPU, both
// expert modes, bfloat16 models, weight streaming and logical devices.
//
// Build here (no GPU needed) and run on a GPU host from the repository
// root or from this folder:
//
//	go test -tags cuda -c -o bin/gpu.test ./suites/gpu
//	bin/gpu.test -ginkgo.label-filter=gpu -ginkgo.v -ginkgo.junit-report=gpu-junit.xml
package gpu_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/ptqgate/ptqgate/ptqcore/backend/cpu"
	"github.com/ptqgate/ptqgate/ptqcore/backend/cuda"
)

var (
	// gpu is the CUDA backend shared by the specs; cpuBE the reference.
	gpu   *cuda.Backend
	cpuBE = cpu.New()
	// root is the repository root (found from the working directory, so
	// the test binary runs from a copy of the repository on another host).
	root string
)

func TestGPU(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "GPU suite")
}

var _ = BeforeSuite(func() {
	var err error
	root, err = repoRoot()
	Expect(err).NotTo(HaveOccurred())
	gpu, err = cuda.New()
	Expect(err).NotTo(HaveOccurred())
	AddReportEntry("device", gpu.Name())
})

var _ = AfterSuite(func() {
	if gpu != nil {
		Expect(gpu.Close()).To(Succeed())
	}
})

// repoRoot walks up from the working directory (or $PTQGATE_REPO) to the
// folder holding go.mod and testdata/hf.
func repoRoot() (string, error) {
	dir := os.Getenv("PTQGATE_REPO")
	if dir == "" {
		var err error
		if dir, err = os.Getwd(); err != nil {
			return "", err
		}
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(d, "testdata", "hf")); err == nil {
				return d, nil
			}
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no repository root (go.mod with testdata/hf) above %s; set PTQGATE_REPO", dir)
		}
	}
}

// caseDir is a reference case's folder.
func caseDir(name string) string { return filepath.Join(root, "testdata", "hf", name) }
