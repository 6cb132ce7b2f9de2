package safetensors

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"unicode/utf8"
)

// Source is one tensor to write. Its bytes come either from Data or, for
// streaming, from WriteTo, which must write exactly Size bytes. The byte
// count must equal numel × element size of DType (two F4 values per byte).
type Source struct {
	Name  string
	DType DType
	Shape []int64
	// Data holds the bytes (little-endian, row-major).
	Data []byte
	// Size is the byte count when WriteTo is used; with Data it may be 0
	// or must equal len(Data).
	Size int64
	// WriteTo streams the bytes; it is called once, while the file is
	// written.
	WriteTo func(io.Writer) error
}

// WriteFile writes one safetensors file atomically (a temporary file in the
// same folder, fsync, rename). The result is exactly what the Python
// safetensors writer produces for the same tensors: compact JSON header with
// __metadata__ first (keys sorted; omitted when metadata is empty), tensors
// sorted by dtype alignment descending (safetensors' Dtype enum order, which
// orders by element size) then by name, header padded with spaces to a
// multiple of 8, data tightly packed. The same tensors always give a
// byte-identical file. Tensor bytes are streamed one tensor at a time.
func WriteFile(path string, metadata map[string]string, tensors []Source) error {
	plan, err := planFile(path, tensors)
	if err != nil {
		return err
	}
	header, err := encodeHeader(metadata, plan)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return writeAtomic(path, func(w io.Writer) error {
		var lenBuf [8]byte
		binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(header)))
		if _, err := w.Write(lenBuf[:]); err != nil {
			return err
		}
		if _, err := w.Write(header); err != nil {
			return err
		}
		for _, p := range plan {
			if err := p.write(w, path); err != nil {
				return err
			}
		}
		return nil
	})
}

type plannedTensor struct {
	src   *Source
	size  int64
	begin int64
}

func (p plannedTensor) write(w io.Writer, path string) error {
	if p.src.WriteTo == nil {
		_, err := w.Write(p.src.Data)
		return err
	}
	cw := &countingWriter{w: w}
	if err := p.src.WriteTo(cw); err != nil {
		return fmt.Errorf("write %s: tensor %q: %w", path, p.src.Name, err)
	}
	if cw.n != p.size {
		return fmt.Errorf("write %s: tensor %q: WriteTo wrote %d bytes, want %d", path, p.src.Name, cw.n, p.size)
	}
	return nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// sourceSize validates one source and returns its byte count.
func sourceSize(s *Source) (int64, error) {
	if s.Name == "" {
		return 0, errors.New("tensor with an empty name")
	}
	if s.Name == MetadataKey {
		return 0, fmt.Errorf("tensor name %q is reserved", s.Name)
	}
	if !utf8.ValidString(s.Name) {
		return 0, fmt.Errorf("tensor name %q is not valid UTF-8", s.Name)
	}
	if !s.DType.Known() {
		return 0, fmt.Errorf("tensor %q: unknown dtype %q", s.Name, string(s.DType))
	}
	numel, err := NumElements(s.Shape)
	if err != nil {
		return 0, fmt.Errorf("tensor %q: %w", s.Name, err)
	}
	size, err := s.DType.ByteSize(numel)
	if err != nil {
		return 0, fmt.Errorf("tensor %q: shape %v: %w", s.Name, s.Shape, err)
	}
	switch {
	case s.Data != nil && s.WriteTo != nil:
		return 0, fmt.Errorf("tensor %q: both Data and WriteTo are set", s.Name)
	case s.WriteTo != nil:
		if s.Size != size {
			return 0, fmt.Errorf("tensor %q: Size %d, but %s %v needs %d bytes", s.Name, s.Size, s.DType, s.Shape, size)
		}
	default:
		if int64(len(s.Data)) != size {
			return 0, fmt.Errorf("tensor %q: %d bytes of Data, but %s %v needs %d", s.Name, len(s.Data), s.DType, s.Shape, size)
		}
		if s.Size != 0 && s.Size != size {
			return 0, fmt.Errorf("tensor %q: Size %d differs from len(Data) %d", s.Name, s.Size, len(s.Data))
		}
	}
	return size, nil
}

// planFile validates the sources and orders them as the file stores them.
func planFile(path string, tensors []Source) ([]plannedTensor, error) {
	plan := make([]plannedTensor, len(tensors))
	seen := make(map[string]bool, len(tensors))
	for i := range tensors {
		s := &tensors[i]
		size, err := sourceSize(s)
		if err != nil {
			return nil, fmt.Errorf("write %s: %w", path, err)
		}
		if seen[s.Name] {
			return nil, fmt.Errorf("write %s: duplicate tensor name %q", path, s.Name)
		}
		seen[s.Name] = true
		plan[i] = plannedTensor{src: s, size: size}
	}
	sort.Slice(plan, func(i, j int) bool {
		ri, rj := dtypeRank[plan[i].src.DType], dtypeRank[plan[j].src.DType]
		if ri != rj {
			return ri > rj
		}
		return plan[i].src.Name < plan[j].src.Name
	})
	var off int64
	for i := range plan {
		plan[i].begin = off
		off += plan[i].size
	}
	return plan, nil
}

// encodeHeader builds the compact JSON header the way serde_json writes
// it, padded with spaces to a multiple of 8 bytes.
func encodeHeader(metadata map[string]string, plan []plannedTensor) ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	if len(metadata) > 0 {
		keys := make([]string, 0, len(metadata))
		for k, v := range metadata {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				return nil, fmt.Errorf("metadata %q is not valid UTF-8", k)
			}
			keys = append(keys, k)
		}
		sort.Strings(keys)
		writeJSONString(&b, MetadataKey)
		b.WriteString(":{")
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONString(&b, k)
			b.WriteByte(':')
			writeJSONString(&b, metadata[k])
		}
		b.WriteByte('}')
		first = false
	}
	for _, p := range plan {
		if !first {
			b.WriteByte(',')
		}
		first = false
		writeJSONString(&b, p.src.Name)
		b.WriteString(`:{"dtype":`)
		writeJSONString(&b, string(p.src.DType))
		b.WriteString(`,"shape":[`)
		for i, d := range p.src.Shape {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.FormatInt(d, 10))
		}
		b.WriteString(`],"data_offsets":[`)
		b.WriteString(strconv.FormatInt(p.begin, 10))
		b.WriteByte(',')
		b.WriteString(strconv.FormatInt(p.begin+p.size, 10))
		b.WriteString("]}")
	}
	b.WriteByte('}')
	for b.Len()%8 != 0 {
		b.WriteByte(' ')
	}
	if b.Len() > MaxHeaderSize {
		return nil, fmt.Errorf("header of %d bytes exceeds the %d-byte limit", b.Len(), MaxHeaderSize)
	}
	return b.Bytes(), nil
}

// writeJSONString escapes like serde_json: ", \ and control characters
// only (short forms \b \f \n \r \t, else \u00xx in lowercase hex); UTF-8 is
// written as is.
func writeJSONString(b *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if c < 0x20 {
				b.WriteString(`\u00`)
				b.WriteByte(hex[c>>4])
				b.WriteByte(hex[c&0xF])
			} else {
				b.WriteByte(c)
			}
		}
	}
	b.WriteByte('"')
}

// writeAtomic writes path through a temporary file in the same folder that
// is synced and renamed into place; on error nothing is left behind.
func writeAtomic(path string, fill func(io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmpName := tmp.Name()
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmpName)
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if err = fill(bw); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = bw.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Rename(tmpName, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	syncDir(dir)
	return nil
}

// syncDir makes a rename durable; failures (e.g. on file systems that do
// not support syncing folders) are ignored.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// WriteOptions controls WriteCheckpoint.
type WriteOptions struct {
	// MaxShardSize is the largest shard in tensor bytes (as transformers'
	// max_shard_size); 0 writes one model.safetensors.
	MaxShardSize int64
}

var shardFileRE = regexp.MustCompile(`^model-\d{5}-of-\d{5}\.safetensors$`)

// WriteCheckpoint writes the safetensors part of a checkpoint into dir
// (created if needed): one model.safetensors, or, when the tensors exceed
// opt.MaxShardSize, shards model-0000K-of-0000N.safetensors plus
// model.safetensors.index.json. Tensors are assigned to shards in the
// order given, as huggingface_hub's split_state_dict_into_shards does: a
// tensor that would overflow the current shard starts a new one, a tensor
// larger than MaxShardSize gets a shard of its own. The index is
// {"metadata": {"total_parameters", "total_size"}, "weight_map"} with sorted
// keys and two-space indent, as transformers writes it. metadata is the
// __metadata__ of every shard. Stale model.safetensors, index or
// model-*-of-*.safetensors files from an earlier write are removed, so the
// folder reads back as exactly these tensors. It returns the paths written
// (safetensors files in order, then the index).
func WriteCheckpoint(dir string, metadata map[string]string, tensors []Source, opt WriteOptions) ([]string, error) {
	if opt.MaxShardSize < 0 {
		return nil, fmt.Errorf("write checkpoint %s: negative MaxShardSize %d", dir, opt.MaxShardSize)
	}
	sizes := make([]int64, len(tensors))
	var totalSize, totalParams int64
	seen := make(map[string]bool, len(tensors))
	for i := range tensors {
		size, err := sourceSize(&tensors[i])
		if err != nil {
			return nil, fmt.Errorf("write checkpoint %s: %w", dir, err)
		}
		if seen[tensors[i].Name] {
			return nil, fmt.Errorf("write checkpoint %s: duplicate tensor name %q", dir, tensors[i].Name)
		}
		seen[tensors[i].Name] = true
		sizes[i] = size
		totalSize += size
		numel, _ := NumElements(tensors[i].Shape)
		totalParams += numel
	}
	var shards [][]Source
	if opt.MaxShardSize == 0 {
		shards = [][]Source{tensors}
	} else {
		var cur []Source
		var curSize int64
		for i, t := range tensors {
			if sizes[i] > opt.MaxShardSize {
				shards = append(shards, []Source{t})
				continue
			}
			if curSize+sizes[i] > opt.MaxShardSize && len(cur) > 0 {
				shards = append(shards, cur)
				cur, curSize = nil, 0
			}
			cur = append(cur, t)
			curSize += sizes[i]
		}
		if len(cur) > 0 || len(shards) == 0 {
			shards = append(shards, cur)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("write checkpoint: %w", err)
	}
	var written []string
	keep := map[string]bool{}
	if len(shards) == 1 {
		path := filepath.Join(dir, SingleFile)
		if err := WriteFile(path, metadata, shards[0]); err != nil {
			return nil, err
		}
		written = append(written, path)
		keep[SingleFile] = true
	} else {
		weightMap := make(map[string]string, len(tensors))
		for k, shard := range shards {
			name := fmt.Sprintf("model-%05d-of-%05d.safetensors", k+1, len(shards))
			path := filepath.Join(dir, name)
			if err := WriteFile(path, metadata, shard); err != nil {
				return nil, err
			}
			for _, t := range shard {
				weightMap[t.Name] = name
			}
			written = append(written, path)
			keep[name] = true
		}
		index := struct {
			Metadata  map[string]int64  `json:"metadata"`
			WeightMap map[string]string `json:"weight_map"`
		}{map[string]int64{"total_parameters": totalParams, "total_size": totalSize}, weightMap}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(index); err != nil {
			return nil, fmt.Errorf("write checkpoint %s: %w", dir, err)
		}
		path := filepath.Join(dir, IndexFile)
		if err := writeAtomic(path, func(w io.Writer) error { _, err := w.Write(buf.Bytes()); return err }); err != nil {
			return nil, err
		}
		written = append(written, path)
		keep[IndexFile] = true
	}
	if err := removeStale(dir, keep); err != nil {
		return nil, err
	}
	return written, nil
}

// removeStale deletes checkpoint weight files of an earlier write that are
// not part of the new one.
func removeStale(dir string, keep map[string]bool) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	for _, e := range entries {
		n := e.Name()
		if keep[n] || e.IsDir() {
			continue
		}
		if n == SingleFile || n == IndexFile || shardFileRE.MatchString(n) {
			if err := os.Remove(filepath.Join(dir, n)); err != nil {
				return fmt.Errorf("write checkpoint: remove stale %s: %w", n, err)
			}
		}
	}
	return nil
}
