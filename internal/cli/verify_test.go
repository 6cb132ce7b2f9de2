package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ptqgate/ptqgate/fixtures/catalogue"
	"github.com/ptqgate/ptqgate/reports"
)

func runVerifyCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	a := &App{Stdout: &out, Stderr: &errb, Getenv: os.Getenv}
	code = a.Run(append([]string{"verify"}, args...))
	return out.String(), errb.String(), code
}

func TestVerifyCommand(t *testing.T) {
	clean := t.TempDir()
	if err := catalogue.Clean(catalogue.FP8, clean, catalogue.Options{KV: true}); err != nil {
		t.Fatal(err)
	}
	r5 := t.TempDir()
	if err := catalogue.Build("R5", r5); err != nil {
		t.Fatal(err)
	}
	w4a16 := t.TempDir()
	if err := catalogue.Clean(catalogue.W4A16NVFP4, w4a16, catalogue.Options{}); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	cases := []struct {
		name     string
		args     []string
		code     int
		stdout   string // substring
		stderr   string // substring
		junit    string // JUnit file that must exist and contain this
		jsonKind bool   // stdout is the JSON report
	}{
		{name: "clean, defaults, json", args: []string{clean, "--json"}, code: ExitOK, jsonKind: true},
		{name: "clean, flags after, every vllm", args: []string{"--target", "vllm@0.20,vllm@v0.27", clean, "--target", "vllm"}, code: ExitOK, stdout: "vllm@0.27"},
		{name: "R5 on sglang 0.5.10 fails with junit and report", args: []string{r5, "--target", "sglang@0.5.10", "--junit", filepath.Join(out, "r5.xml"), "--report", filepath.Join(out, "r5.json")},
			code: ExitFailed, stdout: "layout.gdn-packed-scale", junit: "Unexpected scalar for tuple shard load"},
		{name: "R5 on sglang 0.5.11 passes", args: []string{r5, "--target", "sglang@0.5.11"}, code: ExitOK},
		{name: "W4A16 default targets", args: []string{w4a16}, code: ExitOK},
		{name: "W4A16 explicit sglang", args: []string{w4a16, "--target", "sglang"}, code: ExitFailed, stdout: "config.quant-algo"},
		{name: "unknown target", args: []string{clean, "--target", "trtllm@1.0"}, code: ExitUsage, stderr: "sglang@0.5.17"},
		{name: "unknown version", args: []string{clean, "--target", "sglang@0.5.8"}, code: ExitUsage, stderr: "vllm@0.20"},
		{name: "missing path", args: []string{filepath.Join(out, "nope")}, code: ExitUsage},
		{name: "missing reference", args: []string{clean, "--reference", filepath.Join(out, "nope")}, code: ExitUsage},
		{name: "negative tp", args: []string{clean, "--tp", "-2"}, code: ExitUsage},
		{name: "no argument", args: nil, code: ExitUsage},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			stdout, stderr, code := runVerifyCLI(t, c.args...)
			if code != c.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, c.code, stdout, stderr)
			}
			if c.stdout != "" && !strings.Contains(stdout, c.stdout) {
				t.Errorf("stdout lacks %q:\n%s", c.stdout, stdout)
			}
			if c.stderr != "" && !strings.Contains(stderr, c.stderr) {
				t.Errorf("stderr lacks %q:\n%s", c.stderr, stderr)
			}
			if c.jsonKind {
				var r reports.Report
				if err := json.Unmarshal([]byte(stdout), &r); err != nil || r.Kind != reports.KindVerify || !r.Clean() || len(r.Checks) == 0 {
					t.Errorf("stdout is not a clean verify report (%v):\n%s", err, stdout)
				}
				if !strings.Contains(stderr, "summary") && !strings.Contains(stderr, "verdict") && stderr == "" {
					t.Errorf("human output missing on stderr with --json")
				}
			}
			if c.junit != "" {
				b, err := os.ReadFile(filepath.Join(out, "r5.xml"))
				if err != nil || !strings.Contains(string(b), "<failure") || !strings.Contains(string(b), c.junit) {
					t.Errorf("junit (%v):\n%s", err, b)
				}
				r, err := reports.ReadFile(filepath.Join(out, "r5.json"))
				if err != nil || r.Clean() {
					t.Errorf("--report file: %v", err)
				}
			}
		})
	}
}
