// Package testckpt holds the checkpoint rewrites that the unit tests of
// several packages share (the Ginkgo suites have theirs in
// suites/internal/framework). Failures stop the calling test.
package testckpt

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
)

// Tensors reads every tensor of the checkpoint folder src (sorted by name,
// as safetensors.Checkpoint lists them) with its name passed through rename
// (nil keeps it).
func Tensors(t testing.TB, src string, rename func(string) string) []safetensors.Source {
	t.Helper()
	ck, err := safetensors.OpenCheckpoint(src)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	var out []safetensors.Source
	for _, info := range ck.Tensors() {
		raw, err := ck.ReadTensor(info.Name)
		if err != nil {
			t.Fatal(err)
		}
		name := info.Name
		if rename != nil {
			name = rename(name)
		}
		out = append(out, safetensors.Source{Name: name, DType: info.DType, Shape: info.Shape, Data: raw})
	}
	return out
}

// VLMName moves a text-model tensor name under model.language_model, where
// a vision-language checkpoint keeps its text model:
// "model.layers.0.…" → "model.language_model.layers.0.…"; names outside
// "model." (lm_head) are kept.
func VLMName(name string) string {
	if rest, ok := strings.CutPrefix(name, "model."); ok {
		return "model.language_model." + rest
	}
	return name
}

// Rewrite writes the checkpoint src into a new temporary folder, as one
// model.safetensors beside a copy of its config.json, and returns the
// folder. Each tensor first goes through edit (nil keeps all), which may
// rename it or change its Data in place and returns false to drop it.
func Rewrite(t testing.TB, src string, edit func(s *safetensors.Source) bool) string {
	t.Helper()
	var out []safetensors.Source
	for _, s := range Tensors(t, src, nil) {
		if edit == nil || edit(&s) {
			out = append(out, s)
		}
	}
	dir := t.TempDir()
	if err := safetensors.WriteFile(filepath.Join(dir, "model.safetensors"), nil, out); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(filepath.Join(src, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// VLM rewrites the text-model checkpoint src (Rewrite) with its tensors
// renamed by VLMName: the layout of a vision-language checkpoint.
func VLM(t testing.TB, src string) string {
	t.Helper()
	return Rewrite(t, src, func(s *safetensors.Source) bool {
		s.Name = VLMName(s.Name)
		return true
	})
}
