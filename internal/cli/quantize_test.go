package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ptqgate/ptqgate/fixtures"
	"github.com/ptqgate/ptqgate/internal/refdata"
	"github.com/ptqgate/ptqgate/internal/testckpt"
	"github.com/ptqgate/ptqgate/reports"
)

func runQuantizeCLI(t *testing.T, tty bool, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	a := &App{Stdout: &out, Stderr: &errb, StderrTTY: tty, Getenv: os.Getenv}
	code = a.Run(append([]string{"quantize"}, args...))
	return out.String(), errb.String(), code
}

// refArgs are the flags for a reference case with its own calib.json.
func refArgs(name, recipe string) []string {
	dir := refdata.Dir(name)
	return []string{"--model", dir, "--recipe", recipe, "--calib", filepath.Join(dir, "calib.json")}
}

func decodeReport(t *testing.T, s string) *reports.Report {
	t.Helper()
	var r reports.Report
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		t.Fatalf("report JSON: %v\n%s", err, s)
	}
	return &r
}

func hasRule(r *reports.Report, rule string, sev reports.Severity) bool {
	for _, f := range r.Findings {
		if f.Rule == rule && f.Severity == sev {
			return true
		}
	}
	return false
}

func TestQuantizeReference(t *testing.T) {
	reportFile := filepath.Join(t.TempDir(), "calib.json")
	out, errOut, code := runQuantizeCLI(t, false, append(refArgs("qwen3-moe-tiny", "fp8_default-fp8_kv"), "--json", "--report", reportFile)...)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	r := decodeReport(t, out)
	if r.Kind != reports.KindCalibration || r.Model.Experts != 8 || r.Recipe.Name != "fp8_default-fp8_kv" {
		t.Errorf("report: kind %q model %+v recipe %+v", r.Kind, r.Model, r.Recipe)
	}
	if len(r.ExpertsWithoutTokens) != 1 || r.ExpertsWithoutTokens[0].Name != "model.layers.1.mlp.experts.7" {
		t.Errorf("experts without tokens %+v", r.ExpertsWithoutTokens)
	}
	for _, want := range []string{"loading ", "batch 1/3: 48 tokens", "batch 3/3: 144 tokens", "tokens/s", "PASSED"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if strings.Contains(errOut, "\r") {
		t.Error("progress bar drawn on a non-terminal")
	}
	file, err := reports.ReadFile(reportFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(file.Quantizers) != len(r.Quantizers) {
		t.Error("--report file differs from --json")
	}

	// eager gives the same report content.
	outE, errE, code := runQuantizeCLI(t, false, append(refArgs("qwen3-moe-tiny", "fp8_default-fp8_kv"), "--json", "--experts-impl", "eager")...)
	if code != ExitOK {
		t.Fatalf("eager: exit %d: %s", code, errE)
	}
	re := decodeReport(t, outE)
	a, _ := json.Marshal(r.Quantizers)
	b, _ := json.Marshal(re.Quantizers)
	ea, _ := json.Marshal(r.Experts)
	eb, _ := json.Marshal(re.Experts)
	if !bytes.Equal(a, b) || !bytes.Equal(ea, eb) {
		t.Error("grouped and eager reports differ in quantizers or experts")
	}
	if re.Run.Extra["experts_impl"] != "eager" {
		t.Errorf("run.extra %v", re.Run.Extra)
	}

	// Without --json the table goes to stdout; a terminal gets a bar.
	out, errOut, code = runQuantizeCLI(t, true, refArgs("qwen3-moe-dense-tiny", "nvfp4_experts_only-fp8_kv")...)
	if code != ExitOK || !strings.Contains(out, "PASSED") || !strings.Contains(errOut, "\r") {
		t.Errorf("table on stdout and bar on the terminal: exit %d\nstdout %s\nstderr %q", code, out, errOut)
	}
}

func TestQuantizeFixtureAndAllExperts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	opt, err := fixtures.Defaults("qwen3-moe-tiny")
	if err != nil {
		t.Fatal(err)
	}
	if err := fixtures.Write(dir, opt); err != nil {
		t.Fatal(err)
	}
	calibFile := filepath.Join(refdata.Dir("qwen3-moe-tiny"), "calib.json")
	out, errOut, code := runQuantizeCLI(t, false, "--model", dir, "--recipe", "nvfp4_default-fp8_kv", "--calib", calibFile,
		"--calib-all-experts", "--json")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	r := decodeReport(t, out)
	if r.Model.DType != "bfloat16" {
		t.Errorf("fixture dtype %q", r.Model.DType)
	}
	for _, e := range r.Experts {
		if e.AllExpertsRows == nil || *e.AllExpertsRows != 144 {
			t.Fatalf("expert %d/%d: all_experts_rows %v", e.Layer, e.Expert, e.AllExpertsRows)
		}
	}
	// The unreachable expert 1:7 still gets no routed tokens.
	if len(r.ExpertsWithoutTokens) != 1 || r.ExpertsWithoutTokens[0] != (reports.ExpertRef{Layer: 1, Expert: 7, Name: "model.layers.1.mlp.experts.7"}) {
		t.Errorf("experts without tokens %+v", r.ExpertsWithoutTokens)
	}
}

func TestQuantizeFaults(t *testing.T) {
	calibFile := filepath.Join(refdata.Dir("qwen3-moe-tiny"), "calib.json")
	vlm := testckpt.VLM(t, refdata.Dir("qwen3-moe-tiny"))
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr []string
		check  func(t *testing.T, r *reports.Report)
	}{
		{"hook-bypass", append(refArgs("qwen3-moe-tiny", "nvfp4_experts_only-fp8_kv"), "--inject-fault", "hook-bypass"), ExitFailed,
			[]string{"calibration failed", "4 calib.uncalibrated (model.layers.0.mlp.experts.down_proj_input_quantizer", "calib.expert-hook-missed"}, func(t *testing.T, r *reports.Report) {
				if len(r.Uncalibrated) != 4 || !hasRule(r, "calib.expert-hook-missed", reports.SeverityError) {
					t.Errorf("uncalibrated %v", r.Uncalibrated)
				}
				for _, e := range r.Experts {
					if e.GateUpCalls != 0 || e.DownCalls != 0 {
						t.Errorf("expert %d/%d has calls under hook-bypass", e.Layer, e.Expert)
					}
				}
			}},
		{"hook-bypass allowed", append(refArgs("qwen3-moe-tiny", "nvfp4_experts_only-fp8_kv"), "--inject-fault", "hook-bypass", "--allow-uncalibrated"), ExitOK,
			nil, func(t *testing.T, r *reports.Report) {
				if len(r.Uncalibrated) != 4 || !hasRule(r, "calib.uncalibrated", reports.SeverityWarning) {
					t.Errorf("uncalibrated %v", r.Uncalibrated)
				}
			}},
		{"hook-bypass eager", append(refArgs("qwen3-moe-tiny", "nvfp4_experts_only-fp8_kv"), "--inject-fault", "hook-bypass", "--experts-impl", "eager"), ExitOK, nil, nil},
		{"plural-match", append(refArgs("qwen3-moe-tiny", "nvfp4_experts_only-fp8_kv"), "--inject-fault", "plural-match"), ExitFailed,
			[]string{"calib.unmatched-pattern (*.experts.*weight_quantizer", "calib.plural-unmatched"}, func(t *testing.T, r *reports.Report) {
				if !hasRule(r, "calib.unmatched-pattern", reports.SeverityError) || !slices.Contains(r.Recipe.UnmatchedPatterns, "*.experts.*weight_quantizer") {
					t.Errorf("unmatched patterns %v", r.Recipe.UnmatchedPatterns)
				}
			}},
		{"vlm-layers", []string{"--model", vlm, "--recipe", "nvfp4_experts_only-fp8_kv_layerwise", "--calib", calibFile, "--inject-fault", "vlm-layers"}, ExitFailed,
			[]string{"searched model.layers;", "model.language_model.layers"}, func(t *testing.T, r *reports.Report) {
				if !hasRule(r, "calib.no-decoder-layers", reports.SeverityError) {
					t.Errorf("findings %+v", r.Findings)
				}
			}},
		{"vlm layerwise without the fault", []string{"--model", vlm, "--recipe", "nvfp4_experts_only-fp8_kv_layerwise", "--calib", calibFile}, ExitOK, nil,
			func(t *testing.T, r *reports.Report) {
				if r.Recipe.Algorithm != "max (layerwise)" || len(r.Uncalibrated) != 0 {
					t.Errorf("algorithm %q uncalibrated %v", r.Recipe.Algorithm, r.Uncalibrated)
				}
			}},
		{"format-gate acts on the export", append(refArgs("qwen3-moe-tiny", "fp8_default"), "--inject-fault", "format-gate"), ExitOK, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reportFile := filepath.Join(t.TempDir(), "r.json")
			_, errOut, code := runQuantizeCLI(t, false, append(tc.args, "--report", reportFile)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s", code, tc.code, errOut)
			}
			for _, s := range tc.stderr {
				if !strings.Contains(errOut, s) {
					t.Errorf("stderr lacks %q:\n%s", s, errOut)
				}
			}
			r, err := reports.ReadFile(reportFile)
			if err != nil {
				t.Fatalf("report not written: %v", err)
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

func TestQuantizeUsageAndInputErrors(t *testing.T) {
	tmp := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	text := write("text.txt", "Calibrate on this sentence.\n")
	bigID := write("big.json", `{"batches": [[[1, 2, 3]], [[4, 256]]]}`)
	broken := write("broken.json", `{"batches": [[[1, 2`)
	ref := refdata.Dir("qwen3-moe-tiny")
	calibFile := filepath.Join(ref, "calib.json")
	mixtral := filepath.Join(tmp, "mixtral")
	if err := os.MkdirAll(mixtral, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(filepath.Join(ref, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	cfg = []byte(strings.Replace(strings.Replace(string(cfg), "Qwen3MoeForCausalLM", "MixtralForCausalLM", 1), `"qwen3_moe"`, `"mixtral"`, 1))
	weights, err := os.ReadFile(filepath.Join(ref, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"config.json": cfg, "model.safetensors": weights} {
		if err := os.WriteFile(filepath.Join(mixtral, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"missing --model", []string{"--recipe", "fp8_default", "--calib", calibFile}, ExitUsage, []string{"--model is required"}},
		{"missing --calib", []string{"--model", ref, "--recipe", "fp8_default"}, ExitUsage, []string{"--calib is required"}},
		{"unknown experts impl", append(refArgs("qwen3-moe-tiny", "fp8_default"), "--experts-impl", "batched"), ExitUsage, []string{`"batched"`, "grouped, eager"}},
		{"unknown fault", append(refArgs("qwen3-moe-tiny", "fp8_default"), "--inject-fault", "gremlins"), ExitUsage,
			[]string{`"gremlins"`, "hook-bypass, plural-match, format-gate, vlm-layers"}},
		{"cuda without the cuda build", append(refArgs("qwen3-moe-tiny", "fp8_default"), "--device", "cuda"), ExitUsage, []string{"built without CUDA", "make cuda"}},
		{"unknown device", append(refArgs("qwen3-moe-tiny", "fp8_default"), "--device", "tpu"), ExitUsage, []string{`"tpu"`}},
		{"unknown preset", refArgs("qwen3-moe-tiny", "int3_magic"), ExitUsage, []string{"int3_magic"}},
		{"missing model dir", []string{"--model", filepath.Join(tmp, "nope"), "--recipe", "fp8_default", "--calib", calibFile}, ExitUsage, []string{"nope"}},
		{"model without config.json", []string{"--model", tmp, "--recipe", "fp8_default", "--calib", calibFile}, ExitFailed, []string{"config.json is missing"}},
		{"plain-text calibration", []string{"--model", ref, "--recipe", "fp8_default", "--calib", text}, ExitUsage, []string{"token ids only for now"}},
		{"token id beyond the vocabulary", []string{"--model", ref, "--recipe", "fp8_default", "--calib", bigID}, ExitFailed, []string{"big.json", "batches[1][0][1]", "vocab_size 256"}},
		{"malformed calibration", []string{"--model", ref, "--recipe", "fp8_default", "--calib", broken}, ExitFailed, []string{"broken.json"}},
		{"unsupported architecture", []string{"--model", mixtral, "--recipe", "fp8_default", "--calib", calibFile}, ExitUsage,
			[]string{"MixtralForCausalLM"}},
		{"positional argument", append(refArgs("qwen3-moe-tiny", "fp8_default"), "extra"), ExitUsage, []string{"unknown command"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := runQuantizeCLI(t, false, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s", code, tc.code, errOut)
			}
			for _, s := range tc.want {
				if !strings.Contains(errOut, s) {
					t.Errorf("stderr lacks %q:\n%s", s, errOut)
				}
			}
		})
	}
}

// TestQuantizeInputFailureReport: a malformed input (exit 1) still yields
// a calibration report holding the error as a finding.
func TestQuantizeInputFailureReport(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"batches": [[[1, 999]]]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runQuantizeCLI(t, false, "--model", refdata.Dir("qwen3-moe-tiny"), "--recipe", "fp8_default", "--calib", bad, "--json")
	if code != ExitFailed {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	r := decodeReport(t, out)
	if r.Kind != reports.KindCalibration || !hasRule(r, "calib.invalid-input", reports.SeverityError) || r.Summary.Errors != 1 {
		t.Errorf("report %+v", r)
	}
	if !strings.Contains(r.Findings[0].Message, "batches[0][0][1]") {
		t.Errorf("finding %q does not name the position", r.Findings[0].Message)
	}
}
