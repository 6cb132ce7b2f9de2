package framework

import (
	"fmt"
	"path/filepath"

	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
)

// RewriteTensors rewrites the single-file checkpoint dir/model.safetensors
// in place: edit receives every tensor's name, header entry and bytes and
// returns the bytes to write (same length). It returns the names of the
// tensors whose bytes changed. Metadata and order are kept.
func RewriteTensors(dir string, edit func(info safetensors.TensorInfo, data []byte) []byte) ([]string, error) {
	path := filepath.Join(dir, "model.safetensors")
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	meta := f.Metadata()
	var (
		srcs    []safetensors.Source
		changed []string
	)
	for _, info := range f.Tensors() {
		data, err := f.ReadTensor(info.Name)
		if err != nil {
			f.Close()
			return nil, err
		}
		orig := string(data)
		data = edit(info, data)
		if int64(len(data)) != info.Size {
			f.Close()
			return nil, fmt.Errorf("rewriting %s: %d bytes, want %d", info.Name, len(data), info.Size)
		}
		if string(data) != orig {
			changed = append(changed, info.Name)
		}
		srcs = append(srcs, safetensors.Source{Name: info.Name, DType: info.DType, Shape: info.Shape, Data: data})
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return changed, safetensors.WriteFile(path, meta, srcs)
}

// ZeroTensors sets every tensor that match selects to all zeros (see
// RewriteTensors) and returns their names.
func ZeroTensors(dir string, match func(name string) bool) ([]string, error) {
	return RewriteTensors(dir, func(info safetensors.TensorInfo, data []byte) []byte {
		if !match(info.Name) {
			return data
		}
		return make([]byte, len(data))
	})
}
