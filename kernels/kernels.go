// Package kernels embeds the PTX of ptqgate's CUDA kernels. The CUDA C
// sources (*.cu, *.cuh) live beside it; scripts/cuda/kernels.sh (`make
// kernels`) compiles each *.cu to *.ptx with nvcc and writes a header
// recording the sha256 of the source and of every local header it
// includes, the nvcc version and the flags. The package is pure Go and
// always built, so the check that every PTX matches its sources runs in
// CI without CUDA; only the CUDA backend (build tag cuda) loads the PTX.
package kernels

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
)

//go:embed *.ptx
var ptxFS embed.FS

// Module is one compiled kernel source.
type Module struct {
	// Name is the source's base name without extension ("gemm").
	Name string
	// PTX is the generated PTX text, header included (PTX comments).
	PTX string
	// Header is the parsed provenance header.
	Header Header
}

// Header is the provenance a PTX file records about its generation.
type Header struct {
	// Source is the .cu file and Hashes the sha256 (hex) of it and of each
	// local header it includes, by file name.
	Source string
	Hashes map[string]string
	// NVCC is nvcc's "release" line; Flags the command-line flags.
	NVCC  string
	Flags []string
}

// ComputeCapability returns the compute capability the PTX targets (80 for
// -arch=compute_80), or 0 when the flags do not say.
func (h Header) ComputeCapability() int {
	for _, f := range h.Flags {
		if v, ok := strings.CutPrefix(f, "-arch=compute_"); ok {
			n, err := strconv.Atoi(strings.TrimRight(v, "af"))
			if err == nil {
				return n
			}
		}
	}
	return 0
}

// ParseHeader reads the provenance header at the top of a generated PTX
// file.
func ParseHeader(ptx string) (Header, error) {
	h := Header{Hashes: map[string]string{}}
	for _, line := range strings.Split(ptx, "\n") {
		if !strings.HasPrefix(line, "//") {
			break
		}
		body := strings.TrimSpace(strings.TrimPrefix(line, "//"))
		key, val, ok := strings.Cut(body, ": ")
		if !ok {
			continue
		}
		switch key {
		case "source", "include":
			file, sum, ok := strings.Cut(val, " sha256 ")
			if !ok || len(sum) != 64 {
				return h, fmt.Errorf("malformed %s line %q", key, line)
			}
			h.Hashes[file] = sum
			if key == "source" {
				h.Source = file
			}
		case "nvcc":
			h.NVCC = val
		case "flags":
			h.Flags = strings.Fields(val)
		}
	}
	if h.Source == "" || h.NVCC == "" || len(h.Flags) == 0 {
		return h, fmt.Errorf("PTX header lacks the source, nvcc or flags line")
	}
	return h, nil
}

// Modules returns every embedded module, sorted by name.
func Modules() ([]Module, error) {
	names, err := fs.Glob(ptxFS, "*.ptx")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	out := make([]Module, 0, len(names))
	for _, n := range names {
		m, err := Load(strings.TrimSuffix(n, ".ptx"))
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// Load returns the embedded module of the given name ("gemm").
func Load(name string) (Module, error) {
	b, err := ptxFS.ReadFile(name + ".ptx")
	if err != nil {
		return Module{}, fmt.Errorf("kernels: no embedded PTX %q: %w", name, err)
	}
	h, err := ParseHeader(string(b))
	if err != nil {
		return Module{}, fmt.Errorf("kernels: %s.ptx: %w", name, err)
	}
	return Module{Name: name, PTX: string(b), Header: h}, nil
}
