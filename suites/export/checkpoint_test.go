package export_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/ptqgate/ptqgate/ptqcore/numerics"
	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
)

// tensor is one tensor read back from a checkpoint.
type tensor struct {
	DType string
	Shape []int64
	Data  []byte
}

// Floats decodes a floating-point tensor.
func (t tensor) Floats() []float32 {
	GinkgoHelper()
	v, err := numerics.DecodeFloats(t.DType, t.Data)
	Expect(err).NotTo(HaveOccurred())
	return v
}

// Scalar returns the value of a one-element F32 tensor.
func (t tensor) Scalar() float32 {
	GinkgoHelper()
	Expect(t.DType).To(Equal("F32"))
	v := t.Floats()
	Expect(v).To(HaveLen(1))
	return v[0]
}

// checkpoint is a checkpoint folder read into memory (the fixtures are tiny).
type checkpoint struct {
	Dir      string
	Tensors  map[string]tensor
	Metadata map[string]string
	Files    []string
}

// readCheckpoint reads every tensor of the checkpoint in dir.
func readCheckpoint(dir string) *checkpoint {
	GinkgoHelper()
	ck, err := safetensors.OpenCheckpoint(dir)
	Expect(err).NotTo(HaveOccurred(), "opening %s", dir)
	defer ck.Close()
	c := &checkpoint{Dir: dir, Tensors: map[string]tensor{}, Metadata: ck.Metadata(), Files: ck.Files()}
	for _, info := range ck.Tensors() {
		data, err := ck.ReadTensor(info.Name)
		Expect(err).NotTo(HaveOccurred())
		c.Tensors[info.Name] = tensor{DType: string(info.DType), Shape: info.Shape, Data: data}
	}
	return c
}

// Names returns the tensor names, sorted.
func (c *checkpoint) Names() []string {
	out := make([]string, 0, len(c.Tensors))
	for n := range c.Tensors {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Tensor returns a tensor that must exist.
func (c *checkpoint) Tensor(name string) tensor {
	GinkgoHelper()
	t, ok := c.Tensors[name]
	Expect(ok).To(BeTrue(), "%s has no tensor %s", c.Dir, name)
	return t
}

// readJSON decodes a JSON file of a checkpoint folder.
func readJSON(dir, name string) map[string]any {
	GinkgoHelper()
	raw, err := os.ReadFile(filepath.Join(dir, name))
	Expect(err).NotTo(HaveOccurred())
	var v map[string]any
	Expect(json.Unmarshal(raw, &v)).To(Succeed(), "%s/%s", dir, name)
	return v
}

// folderBytes maps each file of a folder (recursively, by relative path)
// to its content.
func folderBytes(dir string) map[string]string {
	GinkgoHelper()
	out := map[string]string{}
	Expect(filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		out[rel] = string(raw)
		return nil
	})).To(Succeed())
	return out
}
