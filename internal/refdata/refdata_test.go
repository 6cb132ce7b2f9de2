package refdata

import (
	"crypto/sha256"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestCopyMatchesShared checks that testdata/hf is a byte-identical copy of
// ../shared/testdata/hf when that folder exists beside the repository.
func TestCopyMatchesShared(t *testing.T) {
	shared := SharedDir()
	if shared == "" {
		t.Skip("../shared/testdata/hf not present (fresh clone): nothing to compare against")
	}
	local := filepath.Join(RepoRoot(), "testdata", "hf")
	want := hashTree(t, shared)
	got := hashTree(t, local)
	for name, h := range want {
		g, ok := got[name]
		switch {
		case !ok:
			t.Errorf("testdata/hf/%s is missing (present in %s)", name, shared)
		case g != h:
			t.Errorf("testdata/hf/%s differs from the shared reference copy", name)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("testdata/hf/%s is not in the shared reference data", name)
		}
	}
}

func hashTree(t *testing.T, root string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out[rel] = sha256.Sum256(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestLoadersDecodeEveryCase(t *testing.T) {
	for _, c := range Cases {
		calib, err := LoadCalib(c)
		if err != nil {
			t.Fatal(err)
		}
		if len(calib.Batches) == 0 {
			t.Errorf("%s: calib.json has no batches", c)
		}
		amax, err := LoadAmax(c)
		if err != nil {
			t.Fatal(err)
		}
		if len(amax.Amax) == 0 {
			t.Errorf("%s: amax.json has no amax entries", c)
		}
		counts, err := LoadCounts(c)
		if err != nil {
			t.Fatal(err)
		}
		if counts.Eager.TotalPerExpertFLinearCalls == 0 || counts.GroupedMM.TotalPerExpertFLinearCalls != 0 {
			t.Errorf("%s: counts.json eager=%d grouped_mm=%d, want eager>0 and grouped_mm=0", c,
				counts.Eager.TotalPerExpertFLinearCalls, counts.GroupedMM.TotalPerExpertFLinearCalls)
		}
	}
}
