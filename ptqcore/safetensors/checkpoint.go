package safetensors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// Checkpoint file names (INTERFACES.md "Checkpoint directories").
const (
	ConfigFile      = "config.json"
	SingleFile      = "model.safetensors"
	IndexFile       = "model.safetensors.index.json"
	QuantConfigFile = "hf_quant_config.json"
)

// Checkpoint is a checkpoint directory read the way transformers reads one:
// model.safetensors.index.json when present (sharded), else
// model.safetensors. Other .safetensors files in the folder are not part of
// it. A Checkpoint is safe for concurrent reads until Close.
type Checkpoint struct {
	dir       string
	files     []*File // sorted by path
	byName    map[string]*File
	names     []string
	sharded   bool
	indexMeta map[string]any
}

// OpenCheckpoint opens a checkpoint directory and validates it: config.json
// must exist; with an index, every shard it names must exist and hold
// exactly the tensors the index maps to it, and every shard tensor must be
// in the index; without one, model.safetensors must exist. Problems are
// *FormatErrors naming the folder, shard and tensor (exit 1); a missing
// dir is an error wrapping fs.ErrNotExist (exit 2).
func OpenCheckpoint(dir string) (*Checkpoint, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("open checkpoint: %w", err)
	}
	if !st.IsDir() {
		return nil, formatErr(dir, "", "not a checkpoint directory")
	}
	if _, err := os.Stat(filepath.Join(dir, ConfigFile)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, formatErr(dir, "", "not a checkpoint: %s is missing", ConfigFile)
		}
		return nil, &FormatError{File: dir, Msg: "cannot read " + ConfigFile, Err: err}
	}
	c := &Checkpoint{dir: dir, byName: make(map[string]*File)}
	indexPath := filepath.Join(dir, IndexFile)
	if _, err := os.Stat(indexPath); err == nil {
		err = c.openSharded(indexPath)
		if err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, &FormatError{File: indexPath, Msg: "cannot read the shard index", Err: err}
	}
	path := filepath.Join(dir, SingleFile)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, formatErr(dir, "", "checkpoint has neither %s nor %s", SingleFile, IndexFile)
	}
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	c.files = []*File{f}
	for _, t := range f.header.Tensors {
		c.byName[t.Name] = f
	}
	c.names = f.Names()
	return c, nil
}

func (c *Checkpoint) openSharded(indexPath string) error {
	c.sharded = true
	raw, err := os.ReadFile(indexPath)
	if err != nil {
		return &FormatError{File: indexPath, Msg: "cannot read the shard index", Err: err}
	}
	weightMap, meta, err := parseIndex(raw, indexPath)
	if err != nil {
		return err
	}
	c.indexMeta = meta
	byShard := make(map[string][]string)
	for name, shard := range weightMap {
		byShard[shard] = append(byShard[shard], name)
	}
	shards := make([]string, 0, len(byShard))
	for s := range byShard {
		if !filepath.IsLocal(s) {
			return formatErr(indexPath, byShard[s][0], "shard %q is not a file inside the checkpoint folder", s)
		}
		shards = append(shards, s)
	}
	sort.Strings(shards)
	for _, s := range shards {
		path := filepath.Join(c.dir, s)
		want := byShard[s]
		sort.Strings(want)
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return formatErr(indexPath, want[0], "shard %s named by the index does not exist (it should hold %d tensors)", s, len(want))
		}
		f, err := Open(path)
		if err != nil {
			return err
		}
		c.files = append(c.files, f)
		for _, name := range want {
			if _, ok := f.Tensor(name); !ok {
				return formatErr(path, name, "the index maps this tensor to shard %s, but the shard does not hold it", s)
			}
			c.byName[name] = f
		}
		for _, t := range f.header.Tensors {
			mapped, ok := weightMap[t.Name]
			if !ok {
				return formatErr(path, t.Name, "shard holds a tensor that %s does not list", IndexFile)
			}
			if mapped != s {
				return formatErr(path, t.Name, "shard holds a tensor that %s maps to %s", IndexFile, mapped)
			}
		}
	}
	c.names = make([]string, 0, len(c.byName))
	for n := range c.byName {
		c.names = append(c.names, n)
	}
	sort.Strings(c.names)
	return nil
}

// parseIndex decodes model.safetensors.index.json strictly: one object
// with a "weight_map" object of string values (duplicate names are
// errors) and an optional "metadata" object.
func parseIndex(raw []byte, path string) (map[string]string, map[string]any, error) {
	p := &jsonParser{dec: json.NewDecoder(bytes.NewReader(raw)), path: path}
	p.dec.UseNumber()
	if err := p.expectDelim('{', ""); err != nil {
		return nil, nil, err
	}
	var weightMap map[string]string
	var meta map[string]any
	seen := map[string]bool{}
	for p.dec.More() {
		k, err := p.key("")
		if err != nil {
			return nil, nil, err
		}
		if seen[k] {
			return nil, nil, formatErr(path, "", "duplicate key %q", k)
		}
		seen[k] = true
		switch k {
		case "weight_map":
			t, err := p.token("")
			if err != nil {
				return nil, nil, err
			}
			if d, ok := t.(json.Delim); !ok || d != '{' {
				return nil, nil, formatErr(path, "", "weight_map must be an object of tensor name → shard file, found %s", describeToken(t))
			}
			weightMap = map[string]string{}
			for p.dec.More() {
				name, err := p.key("")
				if err != nil {
					return nil, nil, err
				}
				if _, dup := weightMap[name]; dup {
					return nil, nil, formatErr(path, name, "tensor listed twice in weight_map")
				}
				v, err := p.token(name)
				if err != nil {
					return nil, nil, err
				}
				s, ok := v.(string)
				if !ok || s == "" {
					return nil, nil, formatErr(path, name, "weight_map value must be a shard file name, found %s", describeToken(v))
				}
				weightMap[name] = s
			}
			if err := p.expectDelim('}', ""); err != nil {
				return nil, nil, err
			}
		case "metadata":
			var v any
			if err := p.dec.Decode(&v); err != nil {
				return nil, nil, &FormatError{File: path, Msg: "metadata is not valid JSON", Err: err}
			}
			m, ok := v.(map[string]any)
			if !ok && v != nil {
				return nil, nil, formatErr(path, "", "metadata must be an object")
			}
			meta = m
		default:
			var skip json.RawMessage
			if err := p.dec.Decode(&skip); err != nil {
				return nil, nil, &FormatError{File: path, Msg: "index is not valid JSON", Err: err}
			}
		}
	}
	if err := p.expectDelim('}', ""); err != nil {
		return nil, nil, err
	}
	if _, err := p.dec.Token(); !errors.Is(err, io.EOF) {
		return nil, nil, formatErr(path, "", "index has data after the JSON object")
	}
	if weightMap == nil {
		return nil, nil, formatErr(path, "", "index has no weight_map")
	}
	return weightMap, meta, nil
}

// Dir returns the checkpoint directory.
func (c *Checkpoint) Dir() string { return c.dir }

// Names returns every tensor name of the checkpoint, sorted.
func (c *Checkpoint) Names() []string { return append([]string(nil), c.names...) }

// Tensor returns the named tensor's description; File names its shard.
func (c *Checkpoint) Tensor(name string) (TensorInfo, bool) {
	f, ok := c.byName[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.Tensor(name)
}

// Tensors returns every tensor, sorted by name.
func (c *Checkpoint) Tensors() []TensorInfo {
	out := make([]TensorInfo, 0, len(c.names))
	for _, n := range c.names {
		t, _ := c.Tensor(n)
		out = append(out, t)
	}
	return out
}

// ReadTensor reads the named tensor's bytes.
func (c *Checkpoint) ReadTensor(name string) ([]byte, error) {
	f, ok := c.byName[name]
	if !ok {
		return nil, &NotFoundError{File: c.dir, Tensor: name}
	}
	return f.ReadTensor(name)
}

// Section returns a reader over the named tensor's bytes.
func (c *Checkpoint) Section(name string) (*io.SectionReader, error) {
	f, ok := c.byName[name]
	if !ok {
		return nil, &NotFoundError{File: c.dir, Tensor: name}
	}
	return f.Section(name)
}

// Files returns the paths of the safetensors files of the checkpoint
// (model.safetensors, or the shards the index names), sorted.
func (c *Checkpoint) Files() []string {
	out := make([]string, len(c.files))
	for i, f := range c.files {
		out[i] = f.path
	}
	return out
}

// SafetensorsFiles returns the opened files of the checkpoint, sorted by
// path. They are owned by the Checkpoint: do not close them.
func (c *Checkpoint) SafetensorsFiles() []*File { return append([]*File(nil), c.files...) }

// Sharded reports whether the checkpoint has a shard index.
func (c *Checkpoint) Sharded() bool { return c.sharded }

// IndexMetadata returns the "metadata" object of the shard index (numbers
// as json.Number), or nil for a single-file checkpoint.
func (c *Checkpoint) IndexMetadata() map[string]any { return c.indexMeta }

// Metadata returns the safetensors __metadata__ of the first file (by
// path); shards written by transformers or ptqgate all carry the same map.
func (c *Checkpoint) Metadata() map[string]string {
	if len(c.files) == 0 {
		return nil
	}
	return c.files[0].Metadata()
}

// ConfigPath returns the path of config.json.
func (c *Checkpoint) ConfigPath() string { return filepath.Join(c.dir, ConfigFile) }

// Close closes every file of the checkpoint.
func (c *Checkpoint) Close() error {
	var first error
	for _, f := range c.files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	c.files = nil
	return first
}
