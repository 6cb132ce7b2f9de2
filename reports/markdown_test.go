package reports

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

func renderMD(t *testing.T, r *Report) string {
	t.Helper()
	var buf bytes.Buffer
	if err := RenderMarkdown(&buf, r); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// checkDetails fails unless every <details> is closed, in order.
func checkDetails(t *testing.T, md string) {
	t.Helper()
	depth := 0
	for _, line := range strings.Split(md, "\n") {
		depth += strings.Count(line, "<details")
		depth -= strings.Count(line, "</details>")
		if depth < 0 || depth > 1 {
			t.Fatalf("unbalanced <details> at %q", line)
		}
	}
	if depth != 0 {
		t.Fatalf("%d <details> left open", depth)
	}
}

func TestMarkdownFitsAGitHubComment(t *testing.T) {
	r := realisticReport(40, 256)
	// A verifier gone wild: thousands of long findings.
	for i := range 5000 {
		r.AddFinding(Finding{Rule: fmt.Sprintf("rule-%d", i%7), Severity: []Severity{SeverityError, SeverityWarning, SeverityInfo}[i%3],
			Target: "vllm@main", Tensor: fmt.Sprintf("model.language_model.layers.%d.mlp.experts.%d.gate_up_proj.weight_scale", i%40, i%256),
			Message: strings.Repeat("a long message | with pipes ", 8), EngineBehavior: "silently runs with scale 1.0"})
	}
	for i := range 3000 {
		r.Diff = append(r.Diff, DiffEntry{What: WhatExpertTokens, Name: fmt.Sprintf("e%d", i), Baseline: i, New: i + 1, Change: ChangeChanged})
	}
	md := renderMD(t, r)
	if n := utf8.RuneCountInString(md); n > MarkdownLimit {
		t.Fatalf("markdown is %d characters, limit %d", n, MarkdownLimit)
	}
	if !strings.Contains(md, "more rows not shown") {
		t.Errorf("truncated tables must say so")
	}
	if !strings.HasPrefix(md, "### ❌ ptqgate export report") || !strings.Contains(md, "#### Errors (") {
		t.Errorf("verdict or errors missing from a truncated report:\n%.400s", md)
	}
	checkDetails(t, md)
}

func TestMarkdownCutIsLastResort(t *testing.T) {
	doc := strings.Repeat("x\n", 40) + "<details><summary>s</summary>\n\n" + strings.Repeat("row\n", 100)
	out := cutMarkdown(doc, 200)
	if utf8.RuneCountInString(out) > 200 || !strings.HasSuffix(out, "see the full report._\n") {
		t.Errorf("cut to %d characters:\n%s", utf8.RuneCountInString(out), out)
	}
	checkDetails(t, out)
}

func TestMarkdownEscaping(t *testing.T) {
	r := New(KindVerify, "1")
	r.AddFinding(Finding{Rule: "r|1", Severity: SeverityError, Target: "sglang@0.5.9", Tensor: "a`b",
		Message: "x | y <img src=x> *bold* [link](u)\nnext & line", EngineBehavior: "@someone"})
	md := renderMD(t, r)
	row := ""
	for _, l := range strings.Split(md, "\n") {
		if strings.HasPrefix(l, "| `r") {
			row = l
		}
	}
	want := "| `r\\|1` | `sglang@0.5.9` | a\\`b | x \\| y &lt;img src=x&gt; \\*bold\\* \\[link\\](u)<br>next &amp; line | @someone |"
	if row != want {
		t.Errorf("row\n got %s\nwant %s", row, want)
	}
	checkDetails(t, md)
}

func TestMarkdownSections(t *testing.T) {
	tests := []struct {
		name string
		r    *Report
		want []string
	}{
		{"clean", New(KindVerify, "1"), []string{"### ✅ ptqgate verify report: 0 errors, 0 warnings, 0 infos"}},
		{"calibration", sampleCalibration(), []string{"#### Errors (3)", "<details><summary><b>Warnings (1)</b></summary>",
			"#### Uncalibrated quantizers (1)", "#### Experts: 8 experts, 1 without tokens, 1 whose hooks never fired"}},
		{"diff", sampleDiff(), []string{"### ❌ ptqgate diff report: 7 regressions", "#### Regressions (7)",
			"| `quantizer.amax` | `model.layers.0.mlp.experts.down_proj_input_quantizer` | 3.5 | null |"}},
		{"large", realisticReport(4, 64), []string{"Quantizers: 528 in 6 roles", "| 3 | 62 | 0-25, 27-59, 61-63 |"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			md := renderMD(t, tc.r)
			for _, w := range tc.want {
				if !strings.Contains(md, w) {
					t.Errorf("markdown lacks %q:\n%s", w, md)
				}
			}
			checkDetails(t, md)
		})
	}
}
