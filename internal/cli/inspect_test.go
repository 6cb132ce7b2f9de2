package cli

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ptqgate/ptqgate/fixtures"
	"github.com/ptqgate/ptqgate/internal/refdata"
	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
	"github.com/ptqgate/ptqgate/reports"
)

func runInspectCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	a := &App{Stdout: &out, Stderr: &errb, Getenv: os.Getenv}
	code = a.Run(append([]string{"inspect"}, args...))
	return out.String(), errb.String(), code
}

func inspectJSON(t *testing.T, path string) *reports.Report {
	t.Helper()
	out, errOut, code := runInspectCLI(t, path, "--json")
	if code != ExitOK {
		t.Fatalf("inspect %s: exit %d: %s", path, code, errOut)
	}
	var r reports.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("inspect %s --json: %v\n%s", path, err, out)
	}
	return &r
}

func TestInspectReferenceCheckpoints(t *testing.T) {
	want := map[string]reports.Model{
		"qwen3-moe-tiny":       {Architecture: "Qwen3MoeForCausalLM", DType: "float32", Layers: 2, Experts: 8, TopK: 2},
		"qwen3-moe-dense-tiny": {Architecture: "Qwen3MoeForCausalLM", DType: "float32", Layers: 3, Experts: 8, TopK: 2},
		"qwen3_5-moe-tiny":     {Architecture: "Qwen3_5MoeForConditionalGeneration", DType: "float32", Layers: 4, Experts: 8, TopK: 2},
	}
	for _, c := range refdata.Cases {
		t.Run(c, func(t *testing.T) {
			dir := refdata.Dir(c)
			r := inspectJSON(t, dir)
			if r.Kind != reports.KindInspect || r.SchemaVersion != 1 || r.Model == nil {
				t.Fatalf("report kind %q schema %d model %v", r.Kind, r.SchemaVersion, r.Model)
			}
			m := *r.Model
			m.Path = ""
			if m != want[c] {
				t.Errorf("model %+v, want %+v", m, want[c])
			}
			f, err := safetensors.Open(filepath.Join(dir, "model.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if len(r.Tensors) != len(f.Names()) {
				t.Fatalf("%d tensors, want %d", len(r.Tensors), len(f.Names()))
			}
			for _, x := range r.Tensors {
				if x.File != "model.safetensors" || x.DType != "F32" || x.Min == nil || x.Max == nil || *x.NaN != 0 || *x.Inf != 0 {
					t.Fatalf("tensor row %+v", x)
				}
				if *x.Min > *x.Max {
					t.Errorf("%s: min %v > max %v", x.Name, *x.Min, *x.Max)
				}
			}
			if r.Summary.Errors != 0 || len(r.Findings) != 0 {
				t.Errorf("findings on a clean checkpoint: %+v", r.Findings)
			}
			// the text form lists the model and summarises the tensors
			out, _, code := runInspectCLI(t, dir)
			if code != ExitOK || !strings.Contains(out, want[c].Architecture) || !strings.Contains(out, "PASSED") {
				t.Errorf("text output (exit %d):\n%s", code, out)
			}
		})
	}
	// a single file: model section absent; integer tensors get no statistics
	r := inspectJSON(t, filepath.Join(refdata.Dir("qwen3-moe-tiny"), "expected.safetensors"))
	if r.Model != nil {
		t.Errorf("model section for a single file: %+v", r.Model)
	}
	var sawInt bool
	for _, x := range r.Tensors {
		if x.DType == "I64" || x.DType == "I32" {
			sawInt = true
			if x.Min != nil || x.NaN != nil {
				t.Errorf("%s: statistics for an integer tensor", x.Name)
			}
		}
	}
	if !sawInt {
		t.Error("no integer tensors seen in expected.safetensors")
	}
}

func TestInspectShardedFixture(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	opt, _ := fixtures.Defaults("qwen3_5-moe-tiny")
	opt.MaxShardSize = 300_000
	if err := fixtures.Write(dir, opt); err != nil {
		t.Fatal(err)
	}
	r := inspectJSON(t, dir)
	files := map[string]bool{}
	for _, x := range r.Tensors {
		files[x.File] = true
		if x.DType != "BF16" || x.Min == nil {
			t.Errorf("row %+v", x)
		}
	}
	if len(files) < 2 || files["model.safetensors"] {
		t.Errorf("shard files %v", files)
	}
	if r.Model.Layers != 4 || r.Model.Experts != 8 || r.Model.DType != "bfloat16" {
		t.Errorf("model %+v (text_config lookup)", r.Model)
	}
	// --all lists every tensor in the text output; --report writes the JSON too
	rep := filepath.Join(t.TempDir(), "r.json")
	out, errOut, code := runInspectCLI(t, dir, "--all", "--report", rep)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "all tensors (") || !strings.Contains(out, "model.language_model.layers.3.mlp.experts.7.down_proj.weight") {
		t.Errorf("--all output lacks the per-tensor table:\n%s", out)
	}
	back, err := reports.ReadFile(rep)
	if err != nil || len(back.Tensors) != len(r.Tensors) {
		t.Errorf("--report: %v", err)
	}
}

func TestInspectNonFiniteWarning(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nan.safetensors")
	data := make([]byte, 16)
	for i, v := range []float32{1, float32(math.NaN()), float32(math.Inf(-1)), -2} {
		binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(v))
	}
	if err := safetensors.WriteFile(path, nil, []safetensors.Source{{Name: "w", DType: safetensors.F32, Shape: []int64{4}, Data: data},
		{Name: "e", DType: safetensors.F8E4M3, Shape: []int64{2}, Data: []byte{0x7F, 0x38}}}); err != nil {
		t.Fatal(err)
	}
	r := inspectJSON(t, path)
	if r.Summary.Warnings != 2 || r.Summary.Errors != 0 {
		t.Fatalf("summary %+v findings %+v", r.Summary, r.Findings)
	}
	for _, x := range r.Tensors {
		if x.Name == "w" && (*x.NaN != 1 || *x.Inf != 1 || *x.Min != -2 || *x.Max != 1) {
			t.Errorf("w stats %+v", x)
		}
		if x.Name == "e" && (*x.NaN != 1 || *x.Min != 1) {
			t.Errorf("e stats %+v", x)
		}
	}
}

func rawSafetensors(header string, data []byte) []byte {
	b := make([]byte, 8, 8+len(header)+len(data))
	binary.LittleEndian.PutUint64(b, uint64(len(header)))
	return append(append(b, header...), data...)
}

// TestInspectMalformed: every malformed input is exit 1 with a message
// naming the file (and the tensor or key), and a missing path is exit 2.
func TestInspectMalformed(t *testing.T) {
	z := make([]byte, 8)
	files := []struct {
		name   string
		body   []byte
		tensor string
		want   string
	}{
		{"short", []byte{1, 2}, "", "too short"},
		{"length beyond file", rawSafetensors(`{}`, nil)[:9], "", "larger than the file"},
		{"not json", rawSafetensors(`{"a":`, nil), "a", "not valid JSON"},
		{"not object", rawSafetensors(`[1]`, nil), "", "does not start with '{'"},
		{"duplicate", rawSafetensors(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, z[:2]), "a", "duplicate tensor name"},
		{"overlap", rawSafetensors(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}`, z[:3]), "b", "overlap"},
		{"gap", rawSafetensors(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}}`, z[:3]), "b", "not contiguous"},
		{"out of range", rawSafetensors(`{"a":{"dtype":"U8","shape":[9],"data_offsets":[0,9]}}`, z[:3]), "a", "out of range"},
		{"uncovered", rawSafetensors(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, z[:3]), "", "not covered"},
		{"size mismatch", rawSafetensors(`{"w":{"dtype":"BF16","shape":[3],"data_offsets":[0,4]}}`, z[:4]), "w", "needs 6"},
		{"negative shape", rawSafetensors(`{"w":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}}`, z[:1]), "w", "non-negative integer"},
		{"overflowing shape", rawSafetensors(`{"w":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,1]}}`, z[:1]), "w", "overflows"},
		{"metadata", rawSafetensors(`{"__metadata__":{"k":[]}}`, nil), "", "must be a string"},
		{"bad offsets", rawSafetensors(`{"w":{"dtype":"U8","shape":[1],"data_offsets":[0]}}`, z[:1]), "w", "exactly 2 integers"},
	}
	dir := t.TempDir()
	for _, tc := range files {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".safetensors")
			if err := os.WriteFile(path, tc.body, 0o644); err != nil {
				t.Fatal(err)
			}
			out, errOut, code := runInspectCLI(t, path, "--json")
			if code != ExitFailed {
				t.Fatalf("exit %d, want 1; stderr %q", code, errOut)
			}
			if !strings.Contains(errOut, path) || !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q does not name %s and %q", errOut, path, tc.want)
			}
			if tc.tensor != "" && !strings.Contains(errOut, `tensor "`+tc.tensor+`"`) {
				t.Errorf("stderr %q does not name tensor %q", errOut, tc.tensor)
			}
			var r reports.Report
			if err := json.Unmarshal([]byte(out), &r); err != nil || r.Summary.Errors != 1 || r.Findings[0].Tensor != tc.tensor {
				t.Errorf("JSON report of the failure: %v %+v", err, r.Findings)
			}
		})
	}

	good := func(t *testing.T) string {
		d := filepath.Join(t.TempDir(), "ck")
		opt, _ := fixtures.Defaults("qwen3-moe-dense-tiny")
		opt.MaxShardSize = 100_000
		if err := fixtures.Write(d, opt); err != nil {
			t.Fatal(err)
		}
		return d
	}
	dirs := []struct {
		name  string
		setup func(t *testing.T) string
		want  []string
	}{
		{"no config", func(t *testing.T) string {
			d := good(t)
			os.Remove(filepath.Join(d, "config.json"))
			return d
		}, []string{"config.json is missing"}},
		{"no weights", func(t *testing.T) string {
			d := t.TempDir()
			os.WriteFile(filepath.Join(d, "config.json"), []byte("{}"), 0o644)
			os.WriteFile(filepath.Join(d, "model_fused.safetensors"), rawSafetensors(`{}`, nil), 0o644)
			return d
		}, []string{"neither model.safetensors nor model.safetensors.index.json"}},
		{"missing shard", func(t *testing.T) string {
			d := good(t)
			os.Remove(filepath.Join(d, "model-00002-of-00004.safetensors"))
			return d
		}, []string{"model.safetensors.index.json", "model-00002-of-00004.safetensors named by the index does not exist"}},
		{"tensor not in index", func(t *testing.T) string {
			d := good(t)
			p := filepath.Join(d, "model.safetensors.index.json")
			raw, _ := os.ReadFile(p)
			var idx map[string]map[string]any
			if err := json.Unmarshal(raw, &idx); err != nil {
				t.Fatal(err)
			}
			delete(idx["weight_map"], "model.norm.weight")
			raw, _ = json.Marshal(idx)
			os.WriteFile(p, raw, 0o644)
			return d
		}, []string{`tensor "model.norm.weight"`, "does not list"}},
		{"corrupt shard", func(t *testing.T) string {
			d := good(t)
			os.WriteFile(filepath.Join(d, "model-00003-of-00004.safetensors"), rawSafetensors(`{"x":1}`, nil), 0o644)
			return d
		}, []string{"model-00003-of-00004.safetensors", `tensor "x"`, "must be an object"}},
		{"config not json", func(t *testing.T) string {
			d := good(t)
			os.WriteFile(filepath.Join(d, "config.json"), []byte("{\"num_hidden_layers\": "), 0o644)
			return d
		}, []string{"config.json", "not a JSON object"}},
		{"config wrong type", func(t *testing.T) string {
			d := good(t)
			os.WriteFile(filepath.Join(d, "config.json"), []byte(`{"num_hidden_layers": "three"}`), 0o644)
			return d
		}, []string{"config.json", `key "num_hidden_layers"`}},
	}
	for _, tc := range dirs {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.setup(t)
			_, errOut, code := runInspectCLI(t, d)
			if code != ExitFailed {
				t.Fatalf("exit %d, want 1; stderr %q", code, errOut)
			}
			for _, w := range append(tc.want, d) {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q lacks %q", errOut, w)
				}
			}
		})
	}
	_, errOut, code := runInspectCLI(t, filepath.Join(dir, "does-not-exist"))
	if code != ExitUsage || !strings.Contains(errOut, "does-not-exist") {
		t.Errorf("missing path: exit %d, %q", code, errOut)
	}
	_, _, code = runInspectCLI(t)
	if code != ExitUsage {
		t.Errorf("no PATH: exit %d", code)
	}
}
