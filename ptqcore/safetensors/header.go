package safetensors

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"unicode/utf8"
)

// MaxHeaderSize is the largest JSON header accepted, as in safetensors.
const MaxHeaderSize = 100_000_000

// MetadataKey is the reserved header key holding the string map of
// file-level metadata.
const MetadataKey = "__metadata__"

// TensorInfo describes one tensor of a safetensors file.
type TensorInfo struct {
	Name  string
	DType DType
	// Shape is the logical shape; [] is a scalar (one element). For F4 it
	// counts values, two per byte.
	Shape []int64
	// Offset is the absolute file offset of the first byte.
	Offset int64
	// Size is the number of bytes.
	Size int64
	// File is the path of the file holding the tensor.
	File string
	// DataOffsets are the header's [begin, end) offsets, relative to the
	// start of the data buffer.
	DataOffsets [2]int64
}

// NumElements returns the number of elements (1 for shape []). Shapes
// were validated when the header was parsed, so this never overflows for a
// TensorInfo read from a file.
func (t TensorInfo) NumElements() int64 {
	n, err := NumElements(t.Shape)
	if err != nil {
		return -1
	}
	return n
}

// Header is a parsed and validated safetensors header.
type Header struct {
	// Metadata is the __metadata__ map (nil when absent).
	Metadata map[string]string
	// Tensors are in data order (ascending offsets).
	Tensors []TensorInfo
	// HeaderLen is the JSON header's length in bytes (padding included).
	HeaderLen int64
	// DataStart is the absolute offset of the data buffer (8 + HeaderLen).
	DataStart int64
}

// ParseHeader reads and strictly validates the header of a safetensors file
// of the given size through r, without reading the tensor data. path is
// only used in error messages. Every problem is a *FormatError naming the
// file and, where there is one, the tensor: a header length beyond the file
// or MaxHeaderSize, a header that is not UTF-8 or not one JSON object,
// duplicate keys, a tensor entry without dtype, shape or data_offsets or
// with unknown keys, negative or overflowing shapes, non-string metadata,
// offsets that do not tile the data buffer exactly (gaps, overlaps, out of
// range, trailing bytes), and byte lengths that differ from
// numel × element size for a known dtype. Unknown dtypes are accepted as
// raw bytes. It never panics.
func ParseHeader(r io.ReaderAt, size int64, path string) (*Header, error) {
	if size < 8 {
		return nil, formatErr(path, "", "file is %d bytes, too short for the 8-byte header length", size)
	}
	var lenBuf [8]byte
	if _, err := r.ReadAt(lenBuf[:], 0); err != nil {
		return nil, &FormatError{File: path, Msg: "cannot read the header length", Err: err}
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if n > MaxHeaderSize {
		return nil, formatErr(path, "", "header length %d exceeds the %d-byte limit", n, MaxHeaderSize)
	}
	if n > uint64(size-8) {
		return nil, formatErr(path, "", "header length %d is larger than the file (%d bytes after the length prefix)", n, size-8)
	}
	if n == 0 {
		return nil, formatErr(path, "", "header is empty (length 0)")
	}
	buf := make([]byte, n)
	if _, err := r.ReadAt(buf, 8); err != nil {
		return nil, &FormatError{File: path, Msg: "cannot read the header", Err: err}
	}
	h, err := parseHeaderJSON(buf, path)
	if err != nil {
		return nil, err
	}
	h.HeaderLen = int64(n)
	h.DataStart = 8 + int64(n)
	if err := h.validate(size-h.DataStart, path); err != nil {
		return nil, err
	}
	return h, nil
}

// parseHeaderJSON decodes the header object against its schema (see
// headerScanner), so that duplicate keys are errors.
func parseHeaderJSON(buf []byte, path string) (*Header, error) {
	if !utf8.Valid(buf) {
		return nil, formatErr(path, "", "header is not valid UTF-8")
	}
	if buf[0] != '{' {
		return nil, formatErr(path, "", "header does not start with '{' (first byte %q)", buf[0])
	}
	s := &headerScanner{buf: buf, path: path}
	return s.header()
}

// validate checks shapes, sizes and that the offsets tile the data buffer
// of dataSize bytes exactly; it sorts Tensors into data order and fills
// Offset and Size.
func (h *Header) validate(dataSize int64, path string) error {
	for i := range h.Tensors {
		t := &h.Tensors[i]
		b, e := t.DataOffsets[0], t.DataOffsets[1]
		if e < b {
			return formatErr(path, t.Name, "data_offsets [%d, %d] end before they begin", b, e)
		}
		if e > dataSize {
			return formatErr(path, t.Name, "data_offsets [%d, %d] are out of range: the data buffer holds %d bytes", b, e, dataSize)
		}
		numel, err := NumElements(t.Shape)
		if err != nil {
			return formatErr(path, t.Name, "bad shape %v: %v", t.Shape, err)
		}
		if t.DType.Known() {
			want, err := t.DType.ByteSize(numel)
			if err != nil {
				return formatErr(path, t.Name, "shape %v of %s: %v", t.Shape, t.DType, err)
			}
			if e-b != want {
				return formatErr(path, t.Name, "data_offsets [%d, %d] hold %d bytes, but %s %v needs %d (numel %d × element size)",
					b, e, e-b, t.DType, t.Shape, want, numel)
			}
		}
		t.Size = e - b
		t.Offset = h.DataStart + b
	}
	sort.SliceStable(h.Tensors, func(i, j int) bool {
		a, b := h.Tensors[i].DataOffsets, h.Tensors[j].DataOffsets
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		return a[1] < b[1]
	})
	var end int64
	prev := ""
	for _, t := range h.Tensors {
		b := t.DataOffsets[0]
		switch {
		case b < end:
			return formatErr(path, t.Name, "data_offsets [%d, %d] overlap tensor %q, which ends at %d", b, t.DataOffsets[1], prev, end)
		case b > end && prev == "":
			return formatErr(path, t.Name, "data_offsets [%d, %d] leave a gap: the first tensor must start at 0", b, t.DataOffsets[1])
		case b > end:
			return formatErr(path, t.Name, "data_offsets [%d, %d] are not contiguous: gap of %d bytes after tensor %q, which ends at %d", b, t.DataOffsets[1], b-end, prev, end)
		}
		end = t.DataOffsets[1]
		prev = t.Name
	}
	if end != dataSize {
		return formatErr(path, "", "tensors cover %d bytes of data, but the data buffer holds %d (%d bytes not covered by any tensor)", end, dataSize, dataSize-end)
	}
	return nil
}

// jsonParser walks JSON tokens and turns every problem into a FormatError.
type jsonParser struct {
	dec  *json.Decoder
	path string
}

func (p *jsonParser) token(tensor string) (json.Token, error) {
	t, err := p.dec.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, &FormatError{File: p.path, Tensor: tensor, Msg: "header is not valid JSON", Err: err}
	}
	return t, nil
}

func (p *jsonParser) expectDelim(d json.Delim, tensor string) error {
	t, err := p.token(tensor)
	if err != nil {
		return err
	}
	if got, ok := t.(json.Delim); !ok || got != d {
		return formatErr(p.path, tensor, "header JSON: expected %q, found %s", string(d), describeToken(t))
	}
	return nil
}

func (p *jsonParser) key(tensor string) (string, error) {
	t, err := p.token(tensor)
	if err != nil {
		return "", err
	}
	s, ok := t.(string)
	if !ok {
		return "", formatErr(p.path, tensor, "header JSON: expected a key, found %s", describeToken(t))
	}
	return s, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func describeToken(t json.Token) string {
	switch v := t.(type) {
	case nil:
		return "null"
	case json.Delim:
		switch v {
		case '{':
			return "an object"
		case '[':
			return "an array"
		}
		return fmt.Sprintf("%q", string(v))
	case string:
		if r := []rune(v); len(r) > 40 {
			v = string(r[:40]) + "…"
		}
		return fmt.Sprintf("the string %q", v)
	case json.Number:
		return "the number " + string(v)
	case bool:
		return fmt.Sprintf("%t", v)
	}
	return fmt.Sprintf("%v", t)
}
