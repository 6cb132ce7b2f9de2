package verifier

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
	"github.com/ptqgate/ptqgate/reports"
)

// tensor is one tensor of the checkpoint with the file that holds it.
type tensor struct {
	safetensors.TensorInfo
	file *safetensors.File
	// p is the parsed name (set by indexModules).
	p *parsedName
	// vals are the decoded values of a scale tensor (set by readScales).
	vals []float32
}

// numel returns the element count (1 for a scalar).
func (t *tensor) numel() int64 { return t.NumElements() }

// checkpoint is the set of tensors an engine would load from a folder,
// opened leniently: index ↔ shard problems and bad shards become findings
// and the rest is still examined (what the engines iterate over is every
// tensor of every shard file the index names).
type checkpoint struct {
	dir     string
	files   []*safetensors.File
	tensors map[string]*tensor
	names   []string  // sorted
	list    []*tensor // in name order
	sharded bool
}

func (c *checkpoint) close() {
	for _, f := range c.files {
		f.Close()
	}
	c.files = nil
}

// maxListed bounds the names quoted in one finding message.
const maxListed = 5

// listNames formats up to maxListed names and a count of the rest.
func listNames(names []string) string {
	if len(names) <= maxListed {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:maxListed], ", "), len(names)-maxListed)
}

// openCheckpoint opens dir. A missing folder is an error wrapping
// fs.ErrNotExist (exit 2); everything else wrong with the files is a
// finding, and the returned checkpoint holds whatever could be read.
func (v *run) openCheckpoint(dir string) (*checkpoint, error) {
	st, err := os.Stat(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("verify: checkpoint %s: %w", dir, err)
		}
		return nil, fmt.Errorf("verify: checkpoint %s: %w", dir, err)
	}
	c := &checkpoint{dir: dir, tensors: map[string]*tensor{}}
	if !st.IsDir() {
		v.addAny("census.file", reports.SeverityError, "", "", fmt.Sprintf("%s is not a checkpoint directory (verify takes the folder holding config.json and the safetensors files)", dir), "")
		return c, nil
	}
	indexPath := filepath.Join(dir, safetensors.IndexFile)
	if _, err := os.Stat(indexPath); err == nil {
		c.sharded = true
		v.openSharded(c, indexPath)
	} else {
		path := filepath.Join(dir, safetensors.SingleFile)
		if _, err := os.Stat(path); err != nil {
			v.addAny("census.file", reports.SeverityError, "", "",
				fmt.Sprintf("%s has neither %s nor %s", dir, safetensors.SingleFile, safetensors.IndexFile),
				"both engines fail to start: no weights found")
		} else if f, err := safetensors.Open(path); err != nil {
			v.addAny("census.file", reports.SeverityError, "", "", fmt.Sprintf("%s: %v", safetensors.SingleFile, err), "the engines fail to read the file")
		} else {
			c.files = append(c.files, f)
			for _, ti := range f.Tensors() {
				c.tensors[ti.Name] = &tensor{TensorInfo: ti, file: f}
			}
		}
	}
	if len(c.files) == 1 && !c.sharded {
		c.names = c.files[0].Names() // already sorted
	} else {
		c.names = make([]string, 0, len(c.tensors))
		for n := range c.tensors {
			c.names = append(c.names, n)
		}
		sort.Strings(c.names)
	}
	c.list = make([]*tensor, len(c.names))
	for i, n := range c.names {
		c.list[i] = c.tensors[n]
	}
	return c, nil
}

// openSharded reads the index and every shard it names, reporting every
// disagreement (census.index-shard) and unreadable shard (census.file).
func (v *run) openSharded(c *checkpoint, indexPath string) {
	raw, err := os.ReadFile(indexPath)
	if err != nil {
		v.addAny("census.index-shard", reports.SeverityError, "", "", fmt.Sprintf("cannot read %s: %v", safetensors.IndexFile, err), "the engines fail to start")
		return
	}
	var idx struct {
		WeightMap map[string]any `json:"weight_map"`
	}
	if err := json.Unmarshal(raw, &idx); err != nil {
		v.addAny("census.index-shard", reports.SeverityError, "", "", fmt.Sprintf("%s is not valid JSON: %v", safetensors.IndexFile, err), "the engines fail to start (JSON decode error)")
		return
	}
	if idx.WeightMap == nil {
		v.addAny("census.index-shard", reports.SeverityError, "", "", fmt.Sprintf("%s has no weight_map object", safetensors.IndexFile), "the engines find no weights")
		return
	}
	byShard := map[string][]string{}
	var badValue []string
	for name, sv := range idx.WeightMap {
		s, ok := sv.(string)
		if !ok || s == "" {
			badValue = append(badValue, name)
			continue
		}
		byShard[s] = append(byShard[s], name)
	}
	if len(badValue) > 0 {
		sort.Strings(badValue)
		v.addAny("census.index-shard", reports.SeverityError, badValue[0], "",
			fmt.Sprintf("%s maps %d tensors to something other than a shard file name: %s", safetensors.IndexFile, len(badValue), listNames(badValue)), "")
	}
	shards := make([]string, 0, len(byShard))
	for s := range byShard {
		shards = append(shards, s)
	}
	sort.Strings(shards)
	owner := map[string]string{}
	for _, s := range shards {
		want := byShard[s]
		sort.Strings(want)
		if !filepath.IsLocal(s) {
			v.addAny("census.index-shard", reports.SeverityError, want[0], "",
				fmt.Sprintf("%s names shard %q, which is not a file inside the checkpoint folder (%d tensors)", safetensors.IndexFile, s, len(want)), "")
			continue
		}
		path := filepath.Join(c.dir, s)
		if _, err := os.Stat(path); err != nil {
			v.addAny("census.index-shard", reports.SeverityError, want[0], "",
				fmt.Sprintf("shard %s named by %s does not exist; its %d tensors are missing: %s", s, safetensors.IndexFile, len(want), listNames(want)),
				"the engines fail to open the shard")
			continue
		}
		f, err := safetensors.Open(path)
		if err != nil {
			v.addAny("census.file", reports.SeverityError, "", "", fmt.Sprintf("shard %s: %v", s, err), "the engines fail to read the shard")
			continue
		}
		c.files = append(c.files, f)
		var absent []string
		for _, n := range want {
			if _, ok := f.Tensor(n); !ok {
				absent = append(absent, n)
			}
		}
		if len(absent) > 0 {
			v.addAny("census.index-shard", reports.SeverityError, absent[0], "",
				fmt.Sprintf("%s maps %d tensors to shard %s, which does not hold them: %s", safetensors.IndexFile, len(absent), s, listNames(absent)),
				"loaders iterate over the shard files, so these tensors are silently absent; quantized models skip the engines' missing-weight check (vLLM #57108)")
		}
		var unlisted, elsewhere []string
		for _, ti := range f.Tensors() {
			mapped, listed := idx.WeightMap[ti.Name]
			ms, _ := mapped.(string)
			switch {
			case !listed:
				unlisted = append(unlisted, ti.Name)
			case ms != s:
				elsewhere = append(elsewhere, ti.Name)
			}
			if prev, dup := owner[ti.Name]; dup {
				v.addAny("census.index-shard", reports.SeverityError, ti.Name, "",
					fmt.Sprintf("tensor is stored in both %s and %s", prev, s), "the shard loaded last wins")
				continue
			}
			owner[ti.Name] = s
			c.tensors[ti.Name] = &tensor{TensorInfo: ti, file: f}
		}
		sort.Strings(unlisted)
		sort.Strings(elsewhere)
		if len(unlisted) > 0 {
			v.addAny("census.index-shard", reports.SeverityError, unlisted[0], "",
				fmt.Sprintf("shard %s holds %d tensors that %s does not list: %s", s, len(unlisted), safetensors.IndexFile, listNames(unlisted)),
				"transformers-style loaders trust the index; the engines load whatever the shard holds")
		}
		if len(elsewhere) > 0 {
			v.addAny("census.index-shard", reports.SeverityError, elsewhere[0], "",
				fmt.Sprintf("shard %s holds %d tensors that %s maps to another shard: %s", s, len(elsewhere), safetensors.IndexFile, listNames(elsewhere)), "")
		}
	}
}

// maxGap is the largest hole read through when coalescing neighbouring
// tensors; maxChunk the largest single read.
const (
	maxGap   = 64 << 10
	maxChunk = 8 << 20
)

// scanTensors reads the given tensors in file order with coalesced reads
// and calls fn with consecutive pieces of each tensor's bytes (a tensor
// larger than maxChunk arrives in several pieces, in order). A read error
// is reported as a census.file finding and ends the scan of that file.
func (v *run) scanTensors(ts []*tensor, fn func(t *tensor, piece []byte, at int64)) {
	byFile := map[*safetensors.File][]*tensor{}
	var order []*safetensors.File
	for _, t := range ts {
		if _, ok := byFile[t.file]; !ok {
			order = append(order, t.file)
		}
		byFile[t.file] = append(byFile[t.file], t)
	}
	buf := make([]byte, maxChunk)
	for _, f := range order {
		if err := scanFile(f, byFile[f], buf, fn); err != nil {
			v.addAny("census.file", reports.SeverityError, err.tensor, "", fmt.Sprintf("%s: cannot read tensor bytes: %v", filepath.Base(f.Path()), err.err), "")
		}
	}
}

// scanError is a read failure while scanning one file.
type scanError struct {
	tensor string
	err    error
}

// scanFile reads one file's tensors in offset order, coalescing
// neighbours into reads of at most maxChunk bytes; it stops at the first
// read error.
func scanFile(f *safetensors.File, list []*tensor, buf []byte, fn func(t *tensor, piece []byte, at int64)) *scanError {
	sort.Slice(list, func(i, j int) bool { return list[i].Offset < list[j].Offset })
	ra := f.ReaderAt()
	for i := 0; i < len(list); {
		start := list[i].Offset
		if list[i].Size > maxChunk {
			t := list[i]
			for at := int64(0); at < t.Size; at += maxChunk {
				n := min(int64(maxChunk), t.Size-at)
				if _, err := ra.ReadAt(buf[:n], t.Offset+at); err != nil {
					return &scanError{t.Name, err}
				}
				fn(t, buf[:n], at)
			}
			i++
			continue
		}
		// A window of tensors [i, j) that fits maxChunk with small gaps.
		end := start + list[i].Size
		j := i + 1
		for j < len(list) {
			t := list[j]
			if t.Offset-end > maxGap || t.Offset+t.Size-start > maxChunk {
				break
			}
			end = max(end, t.Offset+t.Size)
			j++
		}
		if n := end - start; n > 0 {
			if _, err := ra.ReadAt(buf[:n], start); err != nil {
				return &scanError{list[i].Name, err}
			}
		}
		for k := i; k < j; k++ {
			t := list[k]
			fn(t, buf[t.Offset-start:t.Offset-start+t.Size], 0)
		}
		i = j
	}
	return nil
}
