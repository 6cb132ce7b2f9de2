package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ptqgate/ptqgate/fixtures"
	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
)

func runFixtureCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	a := &App{Stdout: &out, Stderr: &errb, Getenv: os.Getenv}
	code = a.Run(args)
	return out.String(), errb.String(), code
}

func TestFixtureList(t *testing.T) {
	out, errOut, code := runFixtureCLI(t, "fixture", "--list")
	if code != ExitOK || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	for _, f := range fixtures.Names() {
		if !strings.Contains(out, f.Name+" ") || !strings.Contains(out, f.Description) {
			t.Errorf("--list lacks %s:\n%s", f.Name, out)
		}
	}
}

func TestFixtureUsageErrors(t *testing.T) {
	existing := t.TempDir()
	os.WriteFile(filepath.Join(existing, "x"), []byte("x"), 0o644)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown name", []string{"fixture", "mixtral-tiny", "--out", filepath.Join(t.TempDir(), "o")}, "known: qwen3-moe-tiny, qwen3-moe-dense-tiny, qwen3_5-moe-tiny"},
		{"no name", []string{"fixture", "--out", t.TempDir()}, "missing NAME"},
		{"no out", []string{"fixture", "qwen3-moe-tiny"}, "--out DIR is required"},
		{"existing out", []string{"fixture", "qwen3-moe-tiny", "--out", existing}, "not empty (use --force"},
		{"list with name", []string{"fixture", "--list", "qwen3-moe-tiny"}, "--list takes no NAME"},
		{"bad unreachable", []string{"fixture", "qwen3-moe-tiny", "--out", filepath.Join(t.TempDir(), "o"), "--unreachable", "7"}, "LAYER:EXPERT"},
		{"unreachable out of range", []string{"fixture", "qwen3-moe-tiny", "--out", filepath.Join(t.TempDir(), "o"), "--unreachable", "0:9"}, "no expert 9"},
		{"bad dtype", []string{"fixture", "qwen3-moe-tiny", "--out", filepath.Join(t.TempDir(), "o"), "--dtype", "f16"}, `dtype "f16"`},
		{"bad layout", []string{"fixture", "qwen3-moe-tiny", "--out", filepath.Join(t.TempDir(), "o"), "--layout", "x"}, `layout "x"`},
		{"top-k", []string{"fixture", "qwen3-moe-tiny", "--out", filepath.Join(t.TempDir(), "o"), "--top-k", "9"}, "top-k 9 exceeds"},
		{"unknown flag", []string{"fixture", "qwen3-moe-tiny", "--bogus"}, "unknown flag"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := runFixtureCLI(t, tc.args...)
			if code != ExitUsage || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit 2 with %q", code, errOut, tc.want)
			}
		})
	}
	// the existing folder was not touched
	if entries, _ := os.ReadDir(existing); len(entries) != 1 {
		t.Errorf("refused write changed the folder: %v", entries)
	}
}

func TestFixtureFlags(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	out, errOut, code := runFixtureCLI(t, "fixture", "qwen3-moe-dense-tiny", "--out", dir, "--layers", "4", "--experts", "6",
		"--top-k", "3", "--dtype", "f32", "--layout", "fused", "--seed", "7", "--unreachable", "0:5", "--unreachable", "3:1", "--max-shard-size", "200000")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "unreachable experts: 0:5 3:1") {
		t.Errorf("output %q", out)
	}
	var cfg map[string]any
	raw, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"num_hidden_layers": 4.0, "num_local_experts": 6.0, "num_experts_per_tok": 3.0, "dtype": "float32"} {
		if cfg[k] != want {
			t.Errorf("config %s = %v, want %v", k, cfg[k], want)
		}
	}
	ck, err := safetensors.OpenCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	if !ck.Sharded() {
		t.Error("--max-shard-size did not shard")
	}
	ti, ok := ck.Tensor("model.layers.3.mlp.experts.gate_up_proj")
	if !ok || ti.DType != safetensors.F32 || ti.Shape[0] != 6 {
		t.Errorf("fused experts: %+v", ti)
	}
	// Same as the library with the same options: flags map one to one.
	opt, _ := fixtures.Defaults("qwen3-moe-dense-tiny")
	opt.Layers, opt.Experts, opt.TopK, opt.DType, opt.Layout, opt.Seed = 4, 6, 3, "f32", fixtures.LayoutFused, 7
	opt.Unreachable = []fixtures.ExpertRef{{Layer: 0, Expert: 5}, {Layer: 3, Expert: 1}}
	opt.MaxShardSize = 200000
	lib := filepath.Join(t.TempDir(), "lib")
	if err := fixtures.Write(lib, opt); err != nil {
		t.Fatal(err)
	}
	for _, f := range ck.Files() {
		a, _ := os.ReadFile(f)
		b, err := os.ReadFile(filepath.Join(lib, filepath.Base(f)))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs from the library's", filepath.Base(f))
		}
	}
	// --force overwrites; --unreachable none clears the default list;
	// defaults that no longer fit (1:7 with 4 experts) are dropped.
	out, errOut, code = runFixtureCLI(t, "fixture", "qwen3-moe-tiny", "--out", dir, "--force", "--unreachable", "none")
	if code != ExitOK || !strings.Contains(out, "unreachable experts: none") {
		t.Fatalf("exit %d, %q %q", code, out, errOut)
	}
	out, errOut, code = runFixtureCLI(t, "fixture", "qwen3-moe-tiny", "--out", dir, "--force", "--experts", "4")
	if code != ExitOK || !strings.Contains(out, "unreachable experts: none") {
		t.Fatalf("exit %d, %q %q", code, out, errOut)
	}
	out, errOut, code = runFixtureCLI(t, "fixture", "qwen3-moe-dense-tiny", "--out", dir, "--force", "--layers", "1")
	if code != ExitOK || !strings.Contains(out, "1 layers") {
		t.Fatalf("dense fixture with 1 layer: exit %d, %q %q", code, out, errOut)
	}
}
