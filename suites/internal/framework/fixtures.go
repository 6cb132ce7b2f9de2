package framework

import (
	"path/filepath"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"

	"github.com/ptqgate/ptqgate/fixtures"
	"github.com/ptqgate/ptqgate/internal/refdata"
)

// Reference cases of testdata/hf (external truth made by Hugging Face
// transformers; see testdata/hf/README.md).
const (
	Qwen3MoETiny      = "qwen3-moe-tiny"
	Qwen3MoEDenseTiny = "qwen3-moe-dense-tiny"
	Qwen35MoETiny     = "qwen3_5-moe-tiny"
)

// Reference returns the checkpoint folder of a reference case and its
// calibration batches (calib.json).
func Reference(name string) (dir, calibFile string) {
	dir = refdata.Dir(name)
	return dir, filepath.Join(dir, "calib.json")
}

// CalibFor returns the calibration batches to use with a built-in fixture:
// the reference case of the same name has the same vocabulary.
func CalibFor(fixture string) string {
	_, c := Reference(fixture)
	return c
}

// FixtureOptions returns a built-in fixture's options after applying the
// mutations, failing the spec on an unknown name.
func FixtureOptions(name string, mutate ...func(*fixtures.Options)) fixtures.Options {
	ginkgo.GinkgoHelper()
	opt, err := fixtures.Defaults(name)
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	for _, m := range mutate {
		m(&opt)
	}
	return opt
}

// Fixture writes the built-in fixture name (with the mutations applied to
// its options) into a fresh temporary folder, removed after the spec or
// container, and returns the folder.
func Fixture(name string, mutate ...func(*fixtures.Options)) string {
	ginkgo.GinkgoHelper()
	opt := FixtureOptions(name, mutate...)
	dir := filepath.Join(ginkgo.GinkgoT().TempDir(), name)
	gomega.Expect(fixtures.Write(dir, opt)).To(gomega.Succeed(), "writing fixture %s", name)
	return dir
}

// TempDir returns a fresh temporary folder removed after the spec or
// container.
func TempDir() string { return ginkgo.GinkgoT().TempDir() }
