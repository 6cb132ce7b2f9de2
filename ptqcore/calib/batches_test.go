package calib_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ptqgate/ptqgate/internal/refdata"
	"github.com/ptqgate/ptqgate/ptqcore/calib"
)

func TestLoadBatchesReference(t *testing.T) {
	ref, err := refdata.LoadCalib("qwen3-moe-tiny")
	if err != nil {
		t.Fatal(err)
	}
	b, err := calib.LoadBatches(filepath.Join(refdata.Dir("qwen3-moe-tiny"), "calib.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Batches) != 3 || b.Tokens() != 144 {
		t.Fatalf("%d batches, %d tokens", len(b.Batches), b.Tokens())
	}
	for i, bt := range ref.Batches {
		for s, seq := range bt {
			for j, id := range seq {
				if int(b.Batches[i][s][j]) != id {
					t.Fatalf("batches[%d][%d][%d] = %d, want %d", i, s, j, b.Batches[i][s][j], id)
				}
			}
		}
	}
	mb := b.Batch(1)
	if !slices.Equal(mb.SeqLens, []int{24, 24}) || len(mb.IDs) != 48 {
		t.Errorf("batch 1: %v, %d ids", mb.SeqLens, len(mb.IDs))
	}
	if err := b.Validate(256); err != nil {
		t.Error(err)
	}
	if err := b.Validate(100); err == nil {
		t.Error("ids ≥ 100 accepted for vocab 100")
	}
}

func TestParseBatchesErrors(t *testing.T) {
	for _, tc := range []struct {
		name, content string
		code          int
		want          string
	}{
		{"plain text", "The quick brown fox.\n", 2, "token ids only for now"},
		{"empty", "  \n", 1, "empty file"},
		{"broken JSON", `{"batches": [[[1, 2]]`, 1, "not a JSON object"},
		{"trailing data", `{"batches": [[[1]]]} {}`, 1, "trailing data"},
		{"unknown key", `{"batches": [[[1]]], "text": "x"}`, 1, "text: unknown key"},
		{"no batches key", `{}`, 1, `missing key "batches"`},
		{"no batches", `{"batches": []}`, 1, "batches: no batches"},
		{"batch not a list", `{"batches": [5]}`, 1, "batches[0]: want a list of sequences"},
		{"empty batch", `{"batches": [[[1]], []]}`, 1, "batches[1]: empty batch"},
		{"empty sequence", `{"batches": [[[1], []]]}`, 1, "batches[0][1]: empty sequence"},
		{"string id", `{"batches": [[[1, "2"]]]}`, 1, `batches[0][0][1]: token id "2"`},
		{"negative id", `{"batches": [[[1, 2], [3, -4]]]}`, 1, "batches[0][1][1]: token id -4"},
		{"fraction", `{"batches": [[[1.5]]]}`, 1, "batches[0][0][0]"},
		{"top-level list", `[[[1]]]`, 1, "not a JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := calib.ParseBatches("c.json", []byte(tc.content))
			if err == nil {
				t.Fatal("parsed")
			}
			if c := exitCode(err); c != tc.code {
				t.Errorf("exit %d, want %d (%v)", c, tc.code, err)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "c.json") {
				t.Errorf("error %q, want it to name c.json and contain %q", err, tc.want)
			}
		})
	}
	b, err := calib.ParseBatches("c.json", []byte("\xef\xbb\xbf {\"batches\": [[[1, 2, 3], [4]], [[5]]]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if b.Tokens() != 5 || !slices.Equal(b.Batch(0).SeqLens, []int{3, 1}) {
		t.Errorf("ragged batch: %+v", b.Batches)
	}
	_, err = calib.LoadBatches(filepath.Join(t.TempDir(), "missing.json"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	p := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(p, []byte{0xff, 0xfe, 0x00}, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := calib.LoadBatches(p); exitCode(err) != 1 {
		t.Errorf("binary file: %v", err)
	}
}
