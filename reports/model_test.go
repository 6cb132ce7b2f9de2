package reports

import (
	"bytes"
	"encoding/json"
	"math"
	"path/filepath"
	"strings"
	"testing"
)

func TestEmptyReportHasEveryKey(t *testing.T) {
	r := New(KindInspect, "0.0.0")
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"schema_version", "kind", "tool", "model", "recipe", "tensors", "quantizers", "experts",
		"per_expert_input_amax", "uncalibrated", "experts_without_tokens", "findings", "dequant_error", "diff", "summary"} {
		if _, ok := m[k]; !ok {
			t.Errorf("key %q missing from %s", k, buf.String())
		}
	}
	if _, ok := m["run"]; ok {
		t.Errorf("run present without a Run section")
	}
	if !strings.Contains(buf.String(), `"tensors": []`) {
		t.Errorf("empty tensors not encoded as []: %s", buf.String())
	}
}

func TestFloatNonFinite(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{
		{math.NaN(), `"NaN"`}, {math.Inf(1), `"+Inf"`}, {math.Inf(-1), `"-Inf"`}, {0.5, `0.5`}, {448, `448`},
	}
	for _, tc := range tests {
		b, err := json.Marshal(Float(tc.in))
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != tc.want {
			t.Errorf("Float(%v) = %s, want %s", tc.in, b, tc.want)
		}
		var back Float
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if !(math.IsNaN(tc.in) && math.IsNaN(float64(back))) && float64(back) != tc.in {
			t.Errorf("round trip of %v gave %v", tc.in, back)
		}
	}
}

func TestAmaxEncodings(t *testing.T) {
	q := []Quantizer{
		{Name: "a", Amax: ScalarAmax(2.5)},
		{Name: "b", Amax: VectorAmax([]float64{1, math.Inf(1)})},
		{Name: "c"},
	}
	b, err := json.Marshal(q)
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"name":"a","enabled":false,"format":"","amax":2.5,"calls":0,"axis":null,"block_size":null},` +
		`{"name":"b","enabled":false,"format":"","amax":[1,"+Inf"],"calls":0,"axis":null,"block_size":null},` +
		`{"name":"c","enabled":false,"format":"","amax":null,"calls":0,"axis":null,"block_size":null}]`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	var back []Quantizer
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !back[0].Amax.PerTensor || back[0].Amax.Max() != 2.5 || back[1].Amax.PerTensor || back[2].Amax != nil {
		t.Errorf("decoded %+v", back)
	}
	if back[1].Amax.Valid() || !back[0].Amax.Valid() {
		t.Errorf("Valid: +Inf amax must be invalid, 2.5 valid")
	}
}

func TestSummaryAndRoundTrip(t *testing.T) {
	r := New(KindVerify, "1.2.3")
	r.AddFinding(Finding{Rule: "R1", Severity: SeverityWarning, Target: TargetAny})
	r.AddFinding(Finding{Rule: "R0", Severity: SeverityError, Target: "vllm@main"})
	r.AddFinding(Finding{Rule: "R2", Severity: SeverityInfo, Target: TargetAny})
	if r.Summary != (Summary{Errors: 1, Warnings: 1, Infos: 1}) || r.Clean() {
		t.Fatalf("summary %+v clean=%v", r.Summary, r.Clean())
	}
	r.SortFindings()
	if r.Findings[0].Severity != SeverityError {
		t.Errorf("errors must sort first: %+v", r.Findings)
	}
	r.Run = &Run{Host: "h"}
	p := filepath.Join(t.TempDir(), "r.json")
	if err := r.ForExport().WriteFile(p); err != nil {
		t.Fatal(err)
	}
	back, err := ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if back.Run != nil || back.Summary != r.Summary || len(back.Findings) != 3 {
		t.Errorf("round trip: %+v", back)
	}
}

func TestReadFileRejectsNonReports(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"garbage.json": "{not json",
		"other.json":   `{"schema_version": 7, "tool": {"name": "ptqgate"}}`,
		"foreign.json": `{"schema_version": 1, "tool": {"name": "other"}}`,
	} {
		p := filepath.Join(dir, name)
		if err := writeString(p, body); err != nil {
			t.Fatal(err)
		}
		_, err := ReadFile(p)
		var inv *InvalidReportError
		if err == nil || !asInvalid(err, &inv) || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: err = %v, want InvalidReportError naming the file", name, err)
		}
	}
}
