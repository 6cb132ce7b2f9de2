package reports

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func renderTextString(t *testing.T, r *Report, opt TextOptions) string {
	t.Helper()
	var buf bytes.Buffer
	if err := RenderText(&buf, r, opt); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestTextLargeReportIsSummarised(t *testing.T) {
	r := realisticReport(4, 64)
	out := renderTextString(t, r, TextOptions{MaxRows: 10})
	for _, want := range []string{
		"quantizers: 528 in 6 roles",
		"model.language_model.layers.*.mlp.experts.gate_up_proj_input_quantizer",
		"uncalibrated quantizers (2)",
		"experts per layer (4 layers)",
		"experts that received tokens but whose hooks never fired: 62 experts in 1 layer",
		"0-25, 27-59, 61-63",
		"most routed experts", "least routed experts with tokens",
		"experts without tokens: 10 experts in 4 layers",
		"per-expert input amax (6 shared input quantizers)",
		"... 2 more rows not shown",
		"checks: 12 evaluated on any, sglang@main, vllm@main: 6 passed, 3 with warnings or infos, 3 failed",
		"FAILED: 4 errors, 2 warnings, 3 infos",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q", want)
		}
	}
	if n := strings.Count(out, "\n"); n > 200 {
		t.Errorf("a 4 x 64 report takes %d lines", n)
	}
	if strings.Contains(out, "gate_up_proj_weight_quantizers.17 ") {
		t.Errorf("per-expert quantizers must be grouped, not listed")
	}
}

func TestTextVerdict(t *testing.T) {
	clean := renderTextString(t, New(KindInspect, "1"), TextOptions{})
	if !strings.HasSuffix(clean, "PASSED: 0 errors, 0 warnings, 0 infos\n") {
		t.Errorf("clean report:\n%s", clean)
	}
	if err := RenderText(&bytes.Buffer{}, nil, TextOptions{}); err == nil {
		t.Errorf("nil report must be an error")
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestRenderersReportWriteErrors(t *testing.T) {
	r := sampleCalibration()
	for name, f := range map[string]func() error{
		"text":     func() error { return RenderText(failingWriter{}, r, TextOptions{}) },
		"markdown": func() error { return RenderMarkdown(failingWriter{}, r) },
		"junit":    func() error { return WriteJUnit(failingWriter{}, r) },
		"html":     func() error { return RenderHTML(failingWriter{}, r) },
	} {
		if err := f(); err == nil || !strings.Contains(err.Error(), "disk full") {
			t.Errorf("%s: err = %v, want the write error", name, err)
		}
	}
}

func TestLargeInspectIsGroupedByRole(t *testing.T) {
	r := New(KindInspect, "1")
	for l := range 10 {
		for e := range 8 {
			r.Tensors = append(r.Tensors, Tensor{Name: fmt.Sprintf("model.layers.%d.mlp.experts.%d.down_proj.weight", l, e), DType: "BF16",
				Shape: []int64{64, 32}, Bytes: 4096, Min: fp(-1), Max: fp(float64(l)), NaN: i64(0), Inf: i64(0)})
		}
		r.Tensors = append(r.Tensors, Tensor{Name: fmt.Sprintf("model.layers.%d.self_attn.k_scale", l), DType: "F32", Shape: []int64{}, Bytes: 4,
			Min: fp(1), Max: fp(1), NaN: i64(int64(l % 2)), Inf: i64(0)})
	}
	text := renderTextString(t, r, TextOptions{})
	for _, want := range []string{"tensors: 90 in 2 roles", "model.layers.*.mlp.experts.*.down_proj.weight │    80 │ BF16  │ [64, 32] │ 320.0 KiB │", "│   5 │"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
	md := renderMD(t, r)
	if !strings.Contains(md, "| `model.layers.*.self_attn.k_scale` | 10 | F32 | \\[\\] | 40 B | 1 | 1 | 5 | 0 |") {
		t.Errorf("markdown lacks the grouped k_scale row:\n%s", md)
	}
	page := renderHTMLString(t, r)
	checkHTML(t, page)
	if !strings.Contains(page, "<h3>By role</h3>") || !strings.Contains(page, "<summary>All tensors (90)</summary>") {
		t.Errorf("html lacks the grouped and the collapsed full tensor tables")
	}
}
