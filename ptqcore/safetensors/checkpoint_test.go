package safetensors_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ptqgate/ptqgate/internal/refdata"
	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
)

func tensorsForCheckpoint() []safetensors.Source {
	return []safetensors.Source{
		{Name: "model.embed_tokens.weight", DType: safetensors.F32, Shape: []int64{4, 4}, Data: seq(64)},
		{Name: "model.layers.0.a", DType: safetensors.F32, Shape: []int64{4, 2}, Data: seq(32)},
		{Name: "model.layers.0.b", DType: safetensors.BF16, Shape: []int64{4}, Data: seq(8)},
		{Name: "model.layers.0.big", DType: safetensors.F32, Shape: []int64{30}, Data: seq(120)},
		{Name: "model.layers.1.a", DType: safetensors.F8E4M3, Shape: []int64{16}, Data: seq(16)},
		{Name: "model.layers.1.s", DType: safetensors.F32, Shape: []int64{}, Data: le32(2)},
		{Name: "lm_head.weight", DType: safetensors.F32, Shape: []int64{4, 4}, Data: seq(64)},
	}
}

func writeConfig(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestWriteCheckpointSharded(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir)
	srcs := tensorsForCheckpoint()
	files, err := safetensors.WriteCheckpoint(dir, map[string]string{"format": "pt"}, srcs, safetensors.WriteOptions{MaxShardSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	// embed 64 + a 32 | big 120 > 100: a shard of its own | b 8 + 16 + 4 + lm_head 64
	wantFiles := []string{"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors", "model.safetensors.index.json"}
	var got []string
	for _, f := range files {
		got = append(got, filepath.Base(f))
	}
	if !reflect.DeepEqual(got, wantFiles) {
		t.Fatalf("files %v, want %v", got, wantFiles)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "model.safetensors.index.json"))
	var idx struct {
		Metadata  map[string]int64  `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	if idx.Metadata["total_size"] != 308 || idx.Metadata["total_parameters"] != 16+8+4+30+16+1+16 {
		t.Errorf("index metadata %v", idx.Metadata)
	}
	if idx.WeightMap["model.layers.0.big"] != "model-00002-of-00003.safetensors" || idx.WeightMap["model.layers.0.b"] != "model-00003-of-00003.safetensors" || idx.WeightMap["model.layers.0.a"] != "model-00001-of-00003.safetensors" {
		t.Errorf("weight_map %v", idx.WeightMap)
	}
	if !strings.HasPrefix(string(raw), "{\n  \"metadata\": {\n    \"total_parameters\": 91,\n    \"total_size\": 308\n  },\n  \"weight_map\": {\n") || !strings.HasSuffix(string(raw), "}\n") {
		t.Errorf("index layout differs from transformers' json.dumps(indent=2, sort_keys=True):\n%s", raw)
	}
	// Also a stray .safetensors file that is not part of the checkpoint.
	if err := os.WriteFile(filepath.Join(dir, "junk.safetensors"), []byte("not a safetensors file"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := safetensors.OpenCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !c.Sharded() || len(c.Files()) != 3 || len(c.Names()) != len(srcs) || c.Dir() != dir {
		t.Fatalf("sharded %v files %v names %v", c.Sharded(), c.Files(), c.Names())
	}
	if c.Metadata()["format"] != "pt" || c.IndexMetadata()["total_size"] == nil {
		t.Errorf("metadata %v index %v", c.Metadata(), c.IndexMetadata())
	}
	for _, s := range srcs {
		ti, ok := c.Tensor(s.Name)
		if !ok || filepath.Base(ti.File) != idx.WeightMap[s.Name] {
			t.Errorf("%s: %+v", s.Name, ti)
		}
		b, err := c.ReadTensor(s.Name)
		if err != nil || !bytes.Equal(b, s.Data) {
			t.Errorf("%s: %v", s.Name, err)
		}
		sec, err := c.Section(s.Name)
		if err != nil || sec.Size() != int64(len(s.Data)) {
			t.Errorf("%s: section %v", s.Name, err)
		}
	}
	// Same tensors again, in one file: shards and index are removed.
	files, err = safetensors.WriteCheckpoint(dir, map[string]string{"format": "pt"}, srcs, safetensors.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if want := []string{"config.json", "junk.safetensors", "model.safetensors"}; !reflect.DeepEqual(left, want) || len(files) != 1 {
		t.Errorf("folder holds %v, want %v (returned %v)", left, want, files)
	}
	c2, err := safetensors.OpenCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if c2.Sharded() || len(c2.Names()) != len(srcs) {
		t.Errorf("single file: sharded %v, %d names", c2.Sharded(), len(c2.Names()))
	}
}

func TestWriteCheckpointDeterministic(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	for _, d := range []string{a, b} {
		if _, err := safetensors.WriteCheckpoint(d, nil, tensorsForCheckpoint(), safetensors.WriteOptions{MaxShardSize: 150}); err != nil {
			t.Fatal(err)
		}
	}
	ea, _ := os.ReadDir(a)
	for _, e := range ea {
		x, _ := os.ReadFile(filepath.Join(a, e.Name()))
		y, err := os.ReadFile(filepath.Join(b, e.Name()))
		if err != nil || !bytes.Equal(x, y) {
			t.Errorf("%s differs between two writes", e.Name())
		}
	}
	// A limit above the total gives one model.safetensors and no index.
	c := t.TempDir()
	files, err := safetensors.WriteCheckpoint(c, nil, tensorsForCheckpoint(), safetensors.WriteOptions{MaxShardSize: 1 << 30})
	if err != nil || len(files) != 1 || filepath.Base(files[0]) != "model.safetensors" {
		t.Errorf("files %v, err %v", files, err)
	}
}

// corrupt writes a sharded checkpoint, then lets mutate break it.
func corrupt(t *testing.T, mutate func(dir string)) string {
	t.Helper()
	dir := t.TempDir()
	writeConfig(t, dir)
	if _, err := safetensors.WriteCheckpoint(dir, nil, tensorsForCheckpoint(), safetensors.WriteOptions{MaxShardSize: 100}); err != nil {
		t.Fatal(err)
	}
	mutate(dir)
	return dir
}

func editIndex(t *testing.T, dir string, edit func(m map[string]string)) {
	t.Helper()
	p := filepath.Join(dir, "model.safetensors.index.json")
	raw, _ := os.ReadFile(p)
	var idx struct {
		Metadata  map[string]any    `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	edit(idx.WeightMap)
	out, _ := json.Marshal(idx)
	if err := os.WriteFile(p, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestOpenCheckpointErrors(t *testing.T) {
	cases := []struct {
		name   string
		dir    func(t *testing.T) string
		file   string // base name the FormatError's File must have
		tensor string
		want   string
	}{
		{"no config", func(t *testing.T) string {
			d := t.TempDir()
			if _, err := safetensors.WriteCheckpoint(d, nil, tensorsForCheckpoint(), safetensors.WriteOptions{}); err != nil {
				t.Fatal(err)
			}
			return d
		}, "", "", "config.json is missing"},
		{"no model file", func(t *testing.T) string { d := t.TempDir(); writeConfig(t, d); return d }, "", "", "neither model.safetensors nor model.safetensors.index.json"},
		{"only other safetensors", func(t *testing.T) string {
			d := t.TempDir()
			writeConfig(t, d)
			if err := safetensors.WriteFile(filepath.Join(d, "model_fused.safetensors"), nil, tensorsForCheckpoint()); err != nil {
				t.Fatal(err)
			}
			return d
		}, "", "", "neither model.safetensors"},
		{"corrupt model file", func(t *testing.T) string {
			d := t.TempDir()
			writeConfig(t, d)
			if err := os.WriteFile(filepath.Join(d, "model.safetensors"), withLength(9999, "{}"), 0o644); err != nil {
				t.Fatal(err)
			}
			return d
		}, "model.safetensors", "", "larger than the file"},
		{"missing shard", func(t *testing.T) string {
			return corrupt(t, func(d string) { os.Remove(filepath.Join(d, "model-00003-of-00003.safetensors")) })
		}, "model.safetensors.index.json", "lm_head.weight", "shard model-00003-of-00003.safetensors named by the index does not exist"},
		{"index names a tensor the shard lacks", func(t *testing.T) string {
			return corrupt(t, func(d string) {
				editIndex(t, d, func(m map[string]string) { m["model.layers.0.b"] = "model-00001-of-00003.safetensors" })
			})
		}, "model-00001-of-00003.safetensors", "model.layers.0.b", "does not hold it"},
		{"shard tensor missing from index", func(t *testing.T) string {
			return corrupt(t, func(d string) {
				editIndex(t, d, func(m map[string]string) { delete(m, "model.layers.1.s") })
			})
		}, "model-00003-of-00003.safetensors", "model.layers.1.s", "does not list"},
		{"index names a tensor no shard has", func(t *testing.T) string {
			return corrupt(t, func(d string) {
				editIndex(t, d, func(m map[string]string) { m["ghost"] = "model-00001-of-00003.safetensors" })
			})
		}, "model-00001-of-00003.safetensors", "ghost", "does not hold it"},
		{"shard outside folder", func(t *testing.T) string {
			return corrupt(t, func(d string) {
				editIndex(t, d, func(m map[string]string) { m["ghost"] = "../x.safetensors" })
			})
		}, "model.safetensors.index.json", "ghost", "not a file inside the checkpoint folder"},
		{"duplicate weight_map entry", func(t *testing.T) string {
			return corrupt(t, func(d string) {
				os.WriteFile(filepath.Join(d, "model.safetensors.index.json"), []byte(`{"weight_map":{"a":"model-00001-of-00003.safetensors","a":"model-00002-of-00003.safetensors"}}`), 0o644)
			})
		}, "model.safetensors.index.json", "a", "listed twice"},
		{"no weight_map", func(t *testing.T) string {
			return corrupt(t, func(d string) {
				os.WriteFile(filepath.Join(d, "model.safetensors.index.json"), []byte(`{"metadata":{}}`), 0o644)
			})
		}, "model.safetensors.index.json", "", "no weight_map"},
		{"index not json", func(t *testing.T) string {
			return corrupt(t, func(d string) {
				os.WriteFile(filepath.Join(d, "model.safetensors.index.json"), []byte(`{"weight_map":`), 0o644)
			})
		}, "model.safetensors.index.json", "", "not valid JSON"},
		{"weight_map value not string", func(t *testing.T) string {
			return corrupt(t, func(d string) {
				os.WriteFile(filepath.Join(d, "model.safetensors.index.json"), []byte(`{"weight_map":{"a":3}}`), 0o644)
			})
		}, "model.safetensors.index.json", "a", "must be a shard file name"},
		{"corrupt shard", func(t *testing.T) string {
			return corrupt(t, func(d string) {
				os.WriteFile(filepath.Join(d, "model-00002-of-00003.safetensors"), []byte{1, 2}, 0o644)
			})
		}, "model-00002-of-00003.safetensors", "", "too short"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.dir(t)
			c, err := safetensors.OpenCheckpoint(dir)
			if err == nil {
				c.Close()
				t.Fatal("OpenCheckpoint accepted a broken checkpoint")
			}
			var fe *safetensors.FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T %v is not a FormatError", err, err)
			}
			wantFile := dir
			if tc.file != "" {
				wantFile = filepath.Join(dir, tc.file)
			}
			if fe.File != wantFile {
				t.Errorf("File %q, want %q (%v)", fe.File, wantFile, err)
			}
			if fe.Tensor != tc.tensor {
				t.Errorf("Tensor %q, want %q (%v)", fe.Tensor, tc.tensor, err)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), wantFile) {
				t.Errorf("message %q lacks %q or the path", err, tc.want)
			}
		})
	}
	_, err := safetensors.OpenCheckpoint(filepath.Join(t.TempDir(), "nope"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing dir: %v, want fs.ErrNotExist", err)
	}
}

func TestOpenReferenceCheckpoints(t *testing.T) {
	for _, c := range refdata.Cases {
		ck, err := safetensors.OpenCheckpoint(refdata.Dir(c))
		if err != nil {
			t.Fatal(err)
		}
		// model_fused.safetensors and expected.safetensors are not part of it.
		if ck.Sharded() || len(ck.Files()) != 1 || filepath.Base(ck.Files()[0]) != "model.safetensors" {
			t.Errorf("%s: files %v", c, ck.Files())
		}
		if _, ok := ck.Tensor("logits.b0"); ok {
			t.Errorf("%s: expected.safetensors leaked into the checkpoint", c)
		}
		ck.Close()
	}
}
