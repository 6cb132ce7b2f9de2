package cli

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ptqgate/ptqgate/reports"
)

func runReportCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	a := &App{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
	code = a.Run(args)
	return out.String(), errb.String(), code
}

// calibReport is a small calibration report; broken removes the amax of
// one quantizer and the hook calls of one expert.
func calibReport(broken bool) *reports.Report {
	r := reports.New(reports.KindCalibration, "test")
	r.Model = &reports.Model{Path: "ckpt", Architecture: "Qwen3MoeForCausalLM", Layers: 1, Experts: 2, TopK: 1}
	q := reports.Quantizer{Name: "model.layers.0.mlp.experts.gate_up_proj_input_quantizer", Enabled: true, Format: "fp8", Amax: reports.ScalarAmax(4), Calls: 3}
	e := reports.Expert{Layer: 0, Expert: 1, Tokens: 5, GateUpCalls: 2, DownCalls: 2}
	if broken {
		q.Amax, q.Calls = nil, 0
		e.GateUpCalls, e.DownCalls = 0, 0
		r.Uncalibrated = []string{q.Name}
		r.AddFinding(reports.Finding{Rule: "uncalibrated", Severity: reports.SeverityError, Target: reports.TargetAny, Tensor: q.Name, Message: "no amax"})
	}
	r.Quantizers = []reports.Quantizer{q}
	r.Experts = []reports.Expert{{Layer: 0, Expert: 0, Tokens: 9, GateUpCalls: 3, DownCalls: 3}, e}
	r.AddFinding(reports.Finding{Rule: "kv-scale", Severity: reports.SeverityWarning, Target: "vllm@main", Message: "k_scale is 1.0"})
	return r
}

func writeReport(t *testing.T, dir, name string, r *reports.Report) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := r.WriteFile(p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReportFormats(t *testing.T) {
	dir := t.TempDir()
	p := writeReport(t, dir, "calib.json", calibReport(true))
	tests := []struct {
		args  []string
		check func(string) bool
	}{
		{[]string{"report", p}, func(s string) bool {
			return strings.Contains(s, "uncalibrated quantizers (1)") && strings.HasSuffix(s, "FAILED: 1 error, 1 warning, 0 infos\n") && !strings.Contains(s, "\x1b[")
		}},
		{[]string{"report", "--format", "md", p}, func(s string) bool { return strings.HasPrefix(s, "### ❌ ptqgate calibration report") }},
		{[]string{"report", p, "--format=markdown"}, func(s string) bool { return strings.HasPrefix(s, "### ❌") }},
		{[]string{"report", p, "--format", "junit"}, func(s string) bool {
			var v struct {
				Failures int `xml:"failures,attr"`
			}
			return xml.Unmarshal([]byte(s), &v) == nil && v.Failures == 1
		}},
		{[]string{"report", p, "--format", "HTML"}, func(s string) bool {
			return strings.HasPrefix(s, "<!DOCTYPE html>") && strings.Contains(s, "FAILED")
		}},
		{[]string{"report", p, "--format", "json"}, func(s string) bool {
			var r reports.Report
			return json.Unmarshal([]byte(s), &r) == nil && r.Kind == reports.KindCalibration && r.Summary.Errors == 1
		}},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args[2:], " "), func(t *testing.T) {
			out, errOut, code := runReportCLI(t, tc.args...)
			// Rendering is not a check: a report with errors renders with exit 0.
			if code != ExitOK || errOut != "" {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			if !tc.check(out) {
				t.Errorf("unexpected output:\n%.600s", out)
			}
		})
	}
}

func TestReportOutFile(t *testing.T) {
	dir := t.TempDir()
	p := writeReport(t, dir, "calib.json", calibReport(false))
	out := filepath.Join(dir, "calib.html")
	stdout, errOut, code := runReportCLI(t, "report", p, "--format", "html", "--out", out)
	if code != ExitOK || stdout != "" || errOut != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, errOut)
	}
	first, err := os.ReadFile(out)
	if err != nil || !bytes.HasPrefix(first, []byte("<!DOCTYPE html>")) {
		t.Fatalf("--out file: %v %.80q", err, first)
	}
	// An existing --out needs --force (exit 2), and the file is untouched.
	if _, errOut, code := runReportCLI(t, "report", p, "--format", "md", "--out", out); code != ExitUsage || !strings.Contains(errOut, "--force") {
		t.Errorf("existing --out: exit %d, stderr %q", code, errOut)
	}
	if _, _, code := runReportCLI(t, "report", p, "--format", "md", "--out", out, "--force"); code != ExitOK {
		t.Fatalf("--force: exit %d", code)
	}
	second, _ := os.ReadFile(out)
	if !bytes.HasPrefix(second, []byte("### ")) {
		t.Errorf("--force did not replace the file: %.80q", second)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

func TestReportErrors(t *testing.T) {
	dir := t.TempDir()
	good := writeReport(t, dir, "good.json", calibReport(false))
	garbage := filepath.Join(dir, "garbage.json")
	if err := os.WriteFile(garbage, []byte(`{"schema_version": 1, "tool": {"name": "other"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"unknown format", []string{"report", good, "--format", "pdf"}, ExitUsage, `unknown format "pdf"`},
		{"unknown format before reading", []string{"report", garbage, "--format", "pdf"}, ExitUsage, "unknown format"},
		{"missing file", []string{"report", filepath.Join(dir, "nope.json")}, ExitUsage, "nope.json"},
		{"not a report", []string{"report", garbage}, ExitFailed, "garbage.json: not a ptqgate report"},
		{"directory", []string{"report", dir}, ExitFailed, dir},
		{"no file", []string{"report"}, ExitUsage, "accepts 1 arg"},
		{"negative max rows", []string{"report", good, "--max-rows", "-1"}, ExitUsage, "--max-rows"},
		{"diff needs two files", []string{"report", "diff", good}, ExitUsage, "accepts 2 arg"},
		{"diff unknown format", []string{"report", "diff", good, good, "--format", "pdf"}, ExitUsage, "unknown format"},
		{"diff bad threshold", []string{"report", "diff", good, good, "--dequant-threshold", "0.5"}, ExitUsage, "--dequant-threshold"},
		{"diff invalid baseline", []string{"report", "diff", garbage, good}, ExitFailed, "garbage.json"},
		{"diff missing new", []string{"report", "diff", good, filepath.Join(dir, "nope.json")}, ExitUsage, "nope.json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := runReportCLI(t, tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.msg) {
				t.Errorf("exit %d, stderr %q; want exit %d naming %q", code, errOut, tc.code, tc.msg)
			}
		})
	}
}

func TestReportDiff(t *testing.T) {
	dir := t.TempDir()
	base := writeReport(t, dir, "base.json", calibReport(false))
	bad := writeReport(t, dir, "bad.json", calibReport(true))

	out, errOut, code := runReportCLI(t, "report", "diff", base, base)
	if code != ExitOK || errOut != "" || !strings.Contains(out, "PASSED: 0 regressions") {
		t.Errorf("same reports: exit %d, stderr %q\n%s", code, errOut, out)
	}

	// A regression: exit 1, the table names it, --json and --report carry it.
	saved := filepath.Join(dir, "diff.json")
	out, errOut, code = runReportCLI(t, "report", "diff", base, bad, "--json", "--report", saved)
	if code != ExitFailed || !strings.Contains(errOut, "regressions (4)") || !strings.Contains(errOut, "ptqgate: report diff: 4 regressions in "+bad) {
		t.Fatalf("regression: exit %d, stderr:\n%s", code, errOut)
	}
	var d reports.Report
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if d.Kind != reports.KindDiff || d.Summary.Errors != 4 || d.Run == nil || d.Run.Paths["baseline"] == "" {
		t.Errorf("diff report %+v", d)
	}
	if r, err := reports.ReadFile(saved); err != nil || len(r.Diff) != len(d.Diff) {
		t.Errorf("--report: %v", err)
	}
	whats := map[string]bool{}
	for _, e := range d.Diff {
		if e.Regression {
			whats[e.What] = true
		}
	}
	for _, w := range []string{reports.WhatQuantizerAmax, reports.WhatExpertGateUpCalls, reports.WhatFinding} {
		if !whats[w] {
			t.Errorf("no %s regression in %+v", w, d.Diff)
		}
	}

	// The fix is an improvement, not a regression.
	if _, errOut, code := runReportCLI(t, "report", "diff", bad, base, "--format", "md"); code != ExitOK {
		t.Errorf("improvement: exit %d, stderr %q", code, errOut)
	}

	// --out with a format; the exit code still reports the regression.
	junit := filepath.Join(dir, "diff.xml")
	if _, _, code := runReportCLI(t, "report", "diff", base, bad, "--format", "junit", "--out", junit); code != ExitFailed {
		t.Errorf("--out junit: exit %d", code)
	}
	var v struct {
		Failures int `xml:"failures,attr"`
	}
	b, _ := os.ReadFile(junit)
	if err := xml.Unmarshal(b, &v); err != nil || v.Failures != 3 {
		t.Errorf("diff junit: %v, %d failures\n%s", err, v.Failures, b)
	}
}
