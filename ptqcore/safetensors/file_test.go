package safetensors_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	nlp "github.com/nlpodyssey/safetensors"

	"github.com/ptqgate/ptqgate/internal/refdata"
	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
)

// TestReadReferenceFiles reads every safetensors file of testdata/hf and
// checks the project's writer reproduces each byte for byte: the reader
// sees every tensor and the writer matches the Python safetensors 0.8.0
// output (ordering, header JSON, padding).
func TestReadReferenceFiles(t *testing.T) {
	for _, c := range refdata.Cases {
		for _, fn := range []string{"model.safetensors", "model_fused.safetensors", "expected.safetensors"} {
			path := filepath.Join(refdata.Dir(c), fn)
			t.Run(c+"/"+fn, func(t *testing.T) {
				f, err := safetensors.Open(path)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				if got := f.Metadata(); !reflect.DeepEqual(got, map[string]string{"format": "pt"}) {
					t.Errorf("metadata %v", got)
				}
				if len(f.Names()) == 0 {
					t.Fatal("no tensors")
				}
				srcs := make([]safetensors.Source, 0, len(f.Names()))
				for _, ti := range f.Tensors() {
					if ti.File != path {
						t.Errorf("%s: File %q, want %q", ti.Name, ti.File, path)
					}
					data, err := f.ReadTensor(ti.Name)
					if err != nil {
						t.Fatal(err)
					}
					srcs = append(srcs, safetensors.Source{Name: ti.Name, DType: ti.DType, Shape: ti.Shape, Data: data})
				}
				out := filepath.Join(t.TempDir(), "re.safetensors")
				if err := safetensors.WriteFile(out, f.Metadata(), srcs); err != nil {
					t.Fatal(err)
				}
				want, _ := os.ReadFile(path)
				got, _ := os.ReadFile(out)
				if !bytes.Equal(got, want) {
					t.Errorf("rewritten file differs from the transformers original (%d vs %d bytes)", len(got), len(want))
				}
			})
		}
	}
}

func TestReferenceShapes(t *testing.T) {
	f, err := safetensors.Open(filepath.Join(refdata.Dir("qwen3-moe-tiny"), "model_fused.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ti, ok := f.Tensor("model.layers.0.mlp.experts.gate_up_proj")
	if !ok || ti.DType != safetensors.F32 || !reflect.DeepEqual(ti.Shape, []int64{8, 64, 64}) || ti.Size != 8*64*64*4 {
		t.Fatalf("gate_up_proj: %+v %v", ti, ok)
	}
	b, err := f.ReadTensor("model.layers.0.input_layernorm.weight")
	if err != nil {
		t.Fatal(err)
	}
	sec, err := f.Section("model.layers.0.input_layernorm.weight")
	if err != nil {
		t.Fatal(err)
	}
	b2, err := io.ReadAll(sec)
	if err != nil || !bytes.Equal(b, b2) {
		t.Fatalf("Section bytes differ from ReadTensor: %v", err)
	}
	// The per-expert file holds the same numbers as the fused one.
	g, err := safetensors.Open(filepath.Join(refdata.Dir("qwen3-moe-tiny"), "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	fused, _ := f.ReadTensor("model.layers.1.mlp.experts.gate_up_proj")
	up3, _ := g.ReadTensor("model.layers.1.mlp.experts.3.up_proj.weight")
	// expert 3, rows I..2I-1 of [2I, H] with I=32, H=64, 4 bytes each
	off := (3*64*64 + 32*64) * 4
	if !bytes.Equal(fused[off:off+len(up3)], up3) {
		t.Error("fused gate_up_proj[3, 32:64] != experts.3.up_proj.weight")
	}
	if _, err := f.ReadTensor("nope"); err == nil || !strings.Contains(err.Error(), `no tensor "nope"`) {
		t.Errorf("missing tensor error: %v", err)
	}
}

func le32(vals ...float32) []byte {
	b := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

func seq(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + 3)
	}
	return b
}

// TestRoundTripEveryDType writes one tensor of every dtype (and scalars and
// empty tensors) and reads them back.
func TestRoundTripEveryDType(t *testing.T) {
	var srcs []safetensors.Source
	for _, d := range safetensors.DTypes() {
		bits, _ := d.Bits()
		shape := []int64{2, 12} // 24 elements: whole bytes for 4 and 6 bits
		size := 24 * bits / 8
		srcs = append(srcs,
			safetensors.Source{Name: "t." + string(d), DType: d, Shape: shape, Data: seq(size)},
			safetensors.Source{Name: "empty." + string(d), DType: d, Shape: []int64{0, 5}, Data: []byte{}})
		if bits%8 == 0 {
			srcs = append(srcs, safetensors.Source{Name: "scalar." + string(d), DType: d, Shape: []int64{}, Data: seq(bits / 8)})
		}
	}
	path := filepath.Join(t.TempDir(), "all.safetensors")
	md := map[string]string{"format": "pt", "producer": "ptqgate test", "quote\"\\\n": "\x01ü<>&"}
	if err := safetensors.WriteFile(path, md, srcs); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !reflect.DeepEqual(f.Metadata(), md) {
		t.Errorf("metadata %v, want %v", f.Metadata(), md)
	}
	if len(f.Names()) != len(srcs) {
		t.Fatalf("%d tensors, want %d", len(f.Names()), len(srcs))
	}
	for _, s := range srcs {
		ti, ok := f.Tensor(s.Name)
		if !ok {
			t.Fatalf("missing %s", s.Name)
		}
		if ti.DType != s.DType || !reflect.DeepEqual(ti.Shape, s.Shape) {
			t.Errorf("%s: %s %v, want %s %v", s.Name, ti.DType, ti.Shape, s.DType, s.Shape)
		}
		got, err := f.ReadTensor(s.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, s.Data) {
			t.Errorf("%s: bytes differ", s.Name)
		}
		bits, _ := s.DType.Bits()
		if bits >= 8 && (ti.Offset-f.Header().DataStart)%int64(bits/8) != 0 {
			t.Errorf("%s: offset %d not aligned to its element size", s.Name, ti.Offset)
		}
	}
	// Data order follows safetensors' dtype enum, descending: U64 first, BOOL last.
	ts := f.Tensors()
	if ts[0].DType != safetensors.U64 || ts[len(ts)-1].DType != safetensors.Bool {
		t.Errorf("data order starts with %s and ends with %s", ts[0].DType, ts[len(ts)-1].DType)
	}
}

func TestWriteDeterministicAndStreaming(t *testing.T) {
	dir := t.TempDir()
	a := []safetensors.Source{
		{Name: "w", DType: safetensors.BF16, Shape: []int64{2, 2}, Data: seq(8)},
		{Name: "b", DType: safetensors.F32, Shape: []int64{3}, Data: le32(1, 2, 3)},
		{Name: "s", DType: safetensors.F32, Shape: []int64{}, Size: 4, WriteTo: func(w io.Writer) error {
			_, err := w.Write(le32(0.5))
			return err
		}},
	}
	b := []safetensors.Source{a[2], a[0], a[1]}
	p1, p2 := filepath.Join(dir, "1.safetensors"), filepath.Join(dir, "2.safetensors")
	if err := safetensors.WriteFile(p1, map[string]string{"x": "1", "a": "2"}, a); err != nil {
		t.Fatal(err)
	}
	if err := safetensors.WriteFile(p2, map[string]string{"a": "2", "x": "1"}, b); err != nil {
		t.Fatal(err)
	}
	b1, _ := os.ReadFile(p1)
	b2, _ := os.ReadFile(p2)
	if !bytes.Equal(b1, b2) {
		t.Fatal("same tensors in another order gave different files")
	}
	n := binary.LittleEndian.Uint64(b1)
	if n%8 != 0 {
		t.Errorf("header length %d not a multiple of 8", n)
	}
	wantHeader := `{"__metadata__":{"a":"2","x":"1"},"b":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},"s":{"dtype":"F32","shape":[],"data_offsets":[12,16]},"w":{"dtype":"BF16","shape":[2,2],"data_offsets":[16,24]}}`
	if got := strings.TrimRight(string(b1[8:8+n]), " "); got != wantHeader {
		t.Errorf("header\n%s\nwant\n%s", got, wantHeader)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

func TestWriteErrors(t *testing.T) {
	dir := t.TempDir()
	failing := errors.New("disk on fire")
	cases := []struct {
		name string
		srcs []safetensors.Source
		want string
	}{
		{"size mismatch", []safetensors.Source{{Name: "a", DType: safetensors.F32, Shape: []int64{2}, Data: seq(4)}}, "needs 8"},
		{"unknown dtype", []safetensors.Source{{Name: "a", DType: "Q4", Shape: []int64{2}, Data: seq(1)}}, "unknown dtype"},
		{"duplicate", []safetensors.Source{{Name: "a", DType: safetensors.U8, Shape: []int64{1}, Data: seq(1)}, {Name: "a", DType: safetensors.U8, Shape: []int64{1}, Data: seq(1)}}, "duplicate"},
		{"negative dim", []safetensors.Source{{Name: "a", DType: safetensors.U8, Shape: []int64{-1}}}, "negative"},
		{"F4 odd", []safetensors.Source{{Name: "a", DType: safetensors.F4, Shape: []int64{3}, Data: seq(2)}}, "whole number of bytes"},
		{"reserved name", []safetensors.Source{{Name: "__metadata__", DType: safetensors.U8, Shape: []int64{1}, Data: seq(1)}}, "reserved"},
		{"empty name", []safetensors.Source{{Name: "", DType: safetensors.U8, Shape: []int64{1}, Data: seq(1)}}, "empty name"},
		{"both data and writer", []safetensors.Source{{Name: "a", DType: safetensors.U8, Shape: []int64{1}, Data: seq(1), Size: 1, WriteTo: func(io.Writer) error { return nil }}}, "both"},
		{"writer wrong size", []safetensors.Source{{Name: "a", DType: safetensors.U8, Shape: []int64{4}, Size: 4, WriteTo: func(w io.Writer) error { _, err := w.Write(seq(3)); return err }}}, "wrote 3 bytes, want 4"},
		{"writer declared size", []safetensors.Source{{Name: "a", DType: safetensors.U8, Shape: []int64{4}, Size: 3, WriteTo: func(io.Writer) error { return nil }}}, "needs 4"},
		{"writer fails", []safetensors.Source{{Name: "a", DType: safetensors.U8, Shape: []int64{4}, Size: 4, WriteTo: func(io.Writer) error { return failing }}}, "disk on fire"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "x.safetensors")
			err := safetensors.WriteFile(path, nil, tc.srcs)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a failed write left %s behind", path)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("a failed write left files: %v", entries)
			}
		})
	}
}

// TestInteropNlpodyssey cross-checks the project's container code against
// github.com/nlpodyssey/safetensors for the dtypes that library knows.
func TestInteropNlpodyssey(t *testing.T) {
	type spec struct {
		d     safetensors.DType
		nd    nlp.DType
		shape []int64
	}
	specs := []spec{
		{safetensors.F64, nlp.F64, []int64{3}}, {safetensors.F32, nlp.F32, []int64{2, 3}}, {safetensors.F16, nlp.F16, []int64{5}},
		{safetensors.BF16, nlp.BF16, []int64{1, 2, 2}}, {safetensors.I64, nlp.I64, []int64{2}}, {safetensors.I32, nlp.I32, []int64{4}},
		{safetensors.I16, nlp.I16, []int64{3}}, {safetensors.I8, nlp.I8, []int64{7}}, {safetensors.U8, nlp.U8, []int64{9}},
		{safetensors.U16, nlp.U16, []int64{2}}, {safetensors.U32, nlp.U32, []int64{2}}, {safetensors.U64, nlp.U64, []int64{1}},
		{safetensors.Bool, nlp.BOOL, []int64{3}},
	}
	views := map[string]nlp.TensorView{}
	var srcs []safetensors.Source
	for i, s := range specs {
		bits, _ := s.d.Bits()
		numel, _ := safetensors.NumElements(s.shape)
		data := seq(int(numel) * bits / 8)
		if s.d == safetensors.Bool {
			data = []byte{0, 1, 1}
		}
		name := "layer." + string(rune('a'+i)) + "." + string(s.d)
		ushape := make([]uint64, len(s.shape))
		for j, x := range s.shape {
			ushape[j] = uint64(x)
		}
		v, err := nlp.NewTensorView(s.nd, ushape, data)
		if err != nil {
			t.Fatal(err)
		}
		views[name] = v
		srcs = append(srcs, safetensors.Source{Name: name, DType: s.d, Shape: s.shape, Data: data})
	}
	md := map[string]string{"format": "pt"}
	theirs, err := nlp.Serialize(views, md)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	theirPath := filepath.Join(dir, "theirs.safetensors")
	if err := os.WriteFile(theirPath, theirs, 0o644); err != nil {
		t.Fatal(err)
	}
	ourPath := filepath.Join(dir, "ours.safetensors")
	if err := safetensors.WriteFile(ourPath, md, srcs); err != nil {
		t.Fatal(err)
	}
	ours, _ := os.ReadFile(ourPath)
	// nlpodyssey orders the header's JSON keys by name (a Go map), Python
	// safetensors and ours by data order; the data buffers must be equal.
	no, nt := binary.LittleEndian.Uint64(ours), binary.LittleEndian.Uint64(theirs)
	if !bytes.Equal(ours[8+no:], theirs[8+nt:]) {
		t.Error("our writer and nlpodyssey's Serialize lay out the tensor data differently")
	}
	// nlpodyssey → our reader
	f, err := safetensors.Open(theirPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, s := range srcs {
		got, err := f.ReadTensor(s.Name)
		if err != nil || !bytes.Equal(got, s.Data) {
			t.Errorf("%s: our reader of nlpodyssey's file: %v", s.Name, err)
		}
	}
	// our writer → nlpodyssey reader (including a scalar, which it reads fine)
	srcs = append(srcs, safetensors.Source{Name: "scale", DType: safetensors.F32, Shape: []int64{}, Data: le32(0.25)})
	if err := safetensors.WriteFile(ourPath, md, srcs); err != nil {
		t.Fatal(err)
	}
	ours, _ = os.ReadFile(ourPath)
	st, err := nlp.Deserialize(ours)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range srcs {
		v, ok := st.Tensor(s.Name)
		if !ok {
			t.Fatalf("nlpodyssey does not see %s", s.Name)
		}
		if v.DType().String() != string(s.DType) || !bytes.Equal(v.Data(), s.Data) || len(v.Shape()) != len(s.Shape) {
			t.Errorf("%s: nlpodyssey reads %s %v", s.Name, v.DType(), v.Shape())
		}
	}
	// nlpodyssey rejects F8 headers as a whole: the reason ptqgate owns a reader.
	f8 := []safetensors.Source{{Name: "w", DType: safetensors.F8E4M3, Shape: []int64{2}, Data: []byte{0x38, 0x7e}}}
	if err := safetensors.WriteFile(ourPath, nil, f8); err != nil {
		t.Fatal(err)
	}
	ours, _ = os.ReadFile(ourPath)
	if _, err := nlp.Deserialize(ours); err == nil {
		t.Error("nlpodyssey now reads F8_E4M3; revisit go-stack.md §5")
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := safetensors.Open(filepath.Join(dir, "missing.safetensors"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
	_, err = safetensors.Open(dir)
	var fe *safetensors.FormatError
	if !errors.As(err, &fe) {
		t.Errorf("directory: %v, want FormatError", err)
	}
	// A file truncated after opening reports the tensor on read.
	path := filepath.Join(dir, "t.safetensors")
	if err := safetensors.WriteFile(path, nil, []safetensors.Source{{Name: "a", DType: safetensors.U8, Shape: []int64{8}, Data: seq(8)}}); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := os.Stat(path)
	if err := os.Truncate(path, st.Size()-2); err != nil {
		t.Fatal(err)
	}
	_, err = f.ReadTensor("a")
	if !errors.As(err, &fe) || fe.Tensor != "a" || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("truncated read: %v", err)
	}
}
