package kernels

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

var includeRE = regexp.MustCompile(`(?m)^#include "([^"]+)"`)

// TestPTXMatchesSources fails when a CUDA source (or a header it includes)
// changed after its PTX was generated, or when a source has no PTX: run
// `make kernels` and commit the result.
func TestPTXMatchesSources(t *testing.T) {
	sources, err := filepath.Glob("*.cu")
	if err != nil {
		t.Fatal(err)
	}
	if len(sources) == 0 {
		t.Fatal("no CUDA sources found beside the package")
	}
	mods, err := Modules()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Module{}
	for _, m := range mods {
		byName[m.Name] = m
	}
	for _, src := range sources {
		name := strings.TrimSuffix(src, ".cu")
		m, ok := byName[name]
		if !ok {
			t.Errorf("%s has no generated %s.ptx: run make kernels", src, name)
			continue
		}
		delete(byName, name)
		if m.Header.Source != src {
			t.Errorf("%s.ptx says it was generated from %q", name, m.Header.Source)
		}
		body, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{src}
		for _, inc := range includeRE.FindAllStringSubmatch(string(body), -1) {
			want = append(want, inc[1])
		}
		sort.Strings(want)
		var got []string
		for f := range m.Header.Hashes {
			got = append(got, f)
		}
		sort.Strings(got)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s.ptx records hashes of %v, the source and its includes are %v: run make kernels", name, got, want)
		}
		for _, f := range want {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(data)
			if h := hex.EncodeToString(sum[:]); m.Header.Hashes[f] != h {
				t.Errorf("%s changed since %s.ptx was generated (recorded %s, now %s): run make kernels", f, name, m.Header.Hashes[f], h)
			}
		}
		if m.Header.ComputeCapability() < 80 {
			t.Errorf("%s.ptx targets compute capability %d; the kernels need at least 80 (flags %v)", name, m.Header.ComputeCapability(), m.Header.Flags)
		}
		if !strings.Contains(m.PTX, ".entry") {
			t.Errorf("%s.ptx holds no kernel entry", name)
		}
	}
	for name := range byName {
		t.Errorf("%s.ptx has no source %s.cu", name, name)
	}
}

func TestParseHeaderRejectsIncompleteHeaders(t *testing.T) {
	for _, text := range []string{
		"",
		"// source: a.cu sha256 " + strings.Repeat("0", 64) + "\n// flags: -ptx\n",
		"// source: a.cu sha256 abc\n// nvcc: x\n// flags: -ptx\n",
	} {
		if _, err := ParseHeader(text); err == nil {
			t.Errorf("ParseHeader(%q) accepted an incomplete header", text)
		}
	}
	h, err := ParseHeader("// source: a.cu sha256 " + strings.Repeat("ab", 32) + "\n// nvcc: release 11.8\n// flags: -ptx -arch=compute_89 -O3\n.version 7.8\n")
	if err != nil {
		t.Fatal(err)
	}
	if h.ComputeCapability() != 89 || h.Source != "a.cu" {
		t.Errorf("parsed %+v", h)
	}
}
