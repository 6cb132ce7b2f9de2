package safetensors_test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
)

// bigHeaderFile builds an in-memory file shaped like one shard of a large
// MoE checkpoint: n per-expert tensors with long names and empty data, so
// the cost measured is the header.
func bigHeaderFile(b *testing.B, n int) []byte {
	b.Helper()
	srcs := make([]safetensors.Source, n)
	for i := range srcs {
		srcs[i] = safetensors.Source{Name: fmt.Sprintf("model.language_model.layers.%d.mlp.experts.%d.gate_proj.weight_scale", i/512, i%512),
			DType: safetensors.F32, Shape: []int64{0, 2048}, Data: []byte{}}
	}
	path := filepath.Join(b.TempDir(), "h.safetensors")
	if err := safetensors.WriteFile(path, map[string]string{"format": "pt"}, srcs); err != nil {
		b.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

// BenchmarkParseHeader measures header parsing and validation; SetBytes is
// the header size, so MB/s is header throughput.
func BenchmarkParseHeader(b *testing.B) {
	for _, n := range []int{100, 20000} {
		raw := bigHeaderFile(b, n)
		b.Run(fmt.Sprintf("tensors=%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			r := bytes.NewReader(raw)
			for b.Loop() {
				if _, err := safetensors.ParseHeader(r, int64(len(raw)), "bench"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func benchFile(b *testing.B, tensors int, size int) string {
	b.Helper()
	srcs := make([]safetensors.Source, tensors)
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i)
	}
	for i := range srcs {
		srcs[i] = safetensors.Source{Name: fmt.Sprintf("t.%03d", i), DType: safetensors.BF16, Shape: []int64{int64(size / 2)}, Data: data}
	}
	path := filepath.Join(b.TempDir(), "data.safetensors")
	if err := safetensors.WriteFile(path, nil, srcs); err != nil {
		b.Fatal(err)
	}
	return path
}

// BenchmarkStreamRead measures streaming every tensor of a 64 MiB file
// through Section (io.Copy to io.Discard, page cache warm) and reading them
// with ReadTensor.
func BenchmarkStreamRead(b *testing.B) {
	const tensors, size = 16, 4 << 20
	path := benchFile(b, tensors, size)
	f, err := safetensors.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.Run("Section", func(b *testing.B) {
		b.SetBytes(tensors * size)
		buf := make([]byte, 1<<20)
		for b.Loop() {
			for _, n := range f.Names() {
				s, err := f.Section(n)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.CopyBuffer(io.Discard, s, buf); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("ReadTensor", func(b *testing.B) {
		b.SetBytes(tensors * size)
		for b.Loop() {
			for _, n := range f.Names() {
				if _, err := f.ReadTensor(n); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

// BenchmarkWriteFile measures the streaming atomic writer (64 MiB, fsync
// included).
func BenchmarkWriteFile(b *testing.B) {
	const tensors, size = 16, 4 << 20
	data := make([]byte, size)
	srcs := make([]safetensors.Source, tensors)
	for i := range srcs {
		srcs[i] = safetensors.Source{Name: fmt.Sprintf("t.%03d", i), DType: safetensors.BF16, Shape: []int64{size / 2}, Data: data}
	}
	path := filepath.Join(b.TempDir(), "w.safetensors")
	b.SetBytes(tensors * size)
	for b.Loop() {
		if err := safetensors.WriteFile(path, nil, srcs); err != nil {
			b.Fatal(err)
		}
	}
}
