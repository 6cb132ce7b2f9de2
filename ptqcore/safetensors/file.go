package safetensors

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
)

// File is one opened .safetensors file. Only the header is read when it is
// opened; tensor bytes are read on demand with ReadAt. A File is safe for
// concurrent use by several goroutines until Close.
type File struct {
	path   string
	f      *os.File
	size   int64
	header *Header
	byName map[string]int
	names  []string
}

// Open opens a safetensors file and validates its header (see ParseHeader).
// A missing file is an error wrapping fs.ErrNotExist; a malformed one is a
// *FormatError.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open safetensors file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open safetensors file: %w", err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, formatErr(path, "", "not a regular file")
	}
	h, err := ParseHeader(f, st.Size(), path)
	if err != nil {
		f.Close()
		return nil, err
	}
	sf := &File{path: path, f: f, size: st.Size(), header: h, byName: make(map[string]int, len(h.Tensors))}
	for i, t := range h.Tensors {
		sf.byName[t.Name] = i
		sf.names = append(sf.names, t.Name)
	}
	sort.Strings(sf.names)
	return sf, nil
}

// Path returns the path the file was opened with.
func (f *File) Path() string { return f.path }

// Size returns the file size in bytes.
func (f *File) Size() int64 { return f.size }

// Header returns the parsed header. It must not be modified.
func (f *File) Header() *Header { return f.header }

// Metadata returns a copy of the __metadata__ map (nil when absent).
func (f *File) Metadata() map[string]string { return copyMap(f.header.Metadata) }

// Tensors returns the tensors in data order (ascending offsets).
func (f *File) Tensors() []TensorInfo { return append([]TensorInfo(nil), f.header.Tensors...) }

// Names returns the tensor names, sorted.
func (f *File) Names() []string { return append([]string(nil), f.names...) }

// Tensor returns the named tensor's description.
func (f *File) Tensor(name string) (TensorInfo, bool) {
	i, ok := f.byName[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.header.Tensors[i], true
}

// ReadTensor reads the named tensor's bytes.
func (f *File) ReadTensor(name string) ([]byte, error) {
	t, ok := f.Tensor(name)
	if !ok {
		return nil, &NotFoundError{File: f.path, Tensor: name}
	}
	return readTensor(f.f, t)
}

// Section returns a reader over the named tensor's bytes, for streaming.
func (f *File) Section(name string) (*io.SectionReader, error) {
	t, ok := f.Tensor(name)
	if !ok {
		return nil, &NotFoundError{File: f.path, Tensor: name}
	}
	return io.NewSectionReader(f.f, t.Offset, t.Size), nil
}

// ReaderAt returns the underlying file for ReadAt calls at TensorInfo
// offsets.
func (f *File) ReaderAt() io.ReaderAt { return f.f }

// Close closes the file.
func (f *File) Close() error { return f.f.Close() }

func readTensor(r io.ReaderAt, t TensorInfo) ([]byte, error) {
	buf := make([]byte, t.Size)
	if _, err := r.ReadAt(buf, t.Offset); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &FormatError{File: t.File, Tensor: t.Name, Msg: "file is truncated", Err: io.ErrUnexpectedEOF}
		}
		return nil, fmt.Errorf("%s: read tensor %q: %w", t.File, t.Name, err)
	}
	return buf, nil
}

// NotFoundError says a tensor name is not in a file or checkpoint.
type NotFoundError struct {
	File   string
	Tensor string
}

// Error names the file and the tensor.
func (e *NotFoundError) Error() string {
	return fmt.Sprintf("%s: no tensor %q", e.File, e.Tensor)
}

// ExitCode makes a missing tensor a failed check (exit 1).
func (e *NotFoundError) ExitCode() int { return 1 }

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}
