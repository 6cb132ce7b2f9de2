package safetensors_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
)

// FuzzParseHeader feeds arbitrary bytes to the header parser: it must
// return either a *FormatError or a header whose tensors tile the data
// buffer exactly and that encoding/json reads the same way, never panic.
// The seed corpus in
// testdata/fuzz/FuzzParseHeader runs with plain go test.
func FuzzParseHeader(f *testing.F) {
	f.Add(rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := safetensors.ParseHeader(bytes.NewReader(data), int64(len(data)), "fuzz.safetensors")
		if err != nil {
			var fe *safetensors.FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T is not a *FormatError: %v", err, err)
			}
			if fe.File != "fuzz.safetensors" {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if h.DataStart != 8+h.HeaderLen || h.HeaderLen <= 0 {
			t.Fatalf("DataStart %d, HeaderLen %d", h.DataStart, h.HeaderLen)
		}
		end := h.DataStart
		seen := map[string]bool{}
		for _, ti := range h.Tensors {
			if seen[ti.Name] {
				t.Fatalf("duplicate %q accepted", ti.Name)
			}
			seen[ti.Name] = true
			if ti.Offset != end || ti.Size < 0 {
				t.Fatalf("%q: offset %d size %d, previous end %d", ti.Name, ti.Offset, ti.Size, end)
			}
			end += ti.Size
			n := ti.NumElements()
			if n < 0 {
				t.Fatalf("%q: shape %v accepted but overflows", ti.Name, ti.Shape)
			}
			if ti.DType.Known() {
				want, err := ti.DType.ByteSize(n)
				if err != nil || want != ti.Size {
					t.Fatalf("%q: %s %v has %d bytes (%v)", ti.Name, ti.DType, ti.Shape, ti.Size, err)
				}
			}
		}
		if end != int64(len(data)) {
			t.Fatalf("tensors end at %d, file is %d bytes", end, len(data))
		}
		// Differential check against encoding/json: an accepted header is
		// valid JSON and decodes to the same entries.
		hdr := data[8 : 8+h.HeaderLen]
		if !json.Valid(hdr) {
			t.Fatalf("accepted a header encoding/json calls invalid: %q", hdr)
		}
		var entries map[string]json.RawMessage
		if err := json.Unmarshal(hdr, &entries); err != nil {
			t.Fatalf("encoding/json: %v", err)
		}
		if _, ok := entries[safetensors.MetadataKey]; ok {
			var md map[string]string
			if err := json.Unmarshal(entries[safetensors.MetadataKey], &md); err != nil || !reflect.DeepEqual(md, h.Metadata) {
				t.Fatalf("metadata %v, encoding/json %v (%v)", h.Metadata, md, err)
			}
			delete(entries, safetensors.MetadataKey)
		}
		if len(entries) != len(h.Tensors) {
			t.Fatalf("%d tensors, encoding/json sees %d", len(h.Tensors), len(entries))
		}
		for _, ti := range h.Tensors {
			var e struct {
				DType       string  `json:"dtype"`
				Shape       []int64 `json:"shape"`
				DataOffsets []int64 `json:"data_offsets"`
			}
			if err := json.Unmarshal(entries[ti.Name], &e); err != nil {
				t.Fatalf("%q: encoding/json: %v", ti.Name, err)
			}
			if e.DType != string(ti.DType) || !reflect.DeepEqual(e.Shape, ti.Shape) || !reflect.DeepEqual(e.DataOffsets, ti.DataOffsets[:]) {
				t.Fatalf("%q: parsed %s %v %v, encoding/json %s %v %v", ti.Name, ti.DType, ti.Shape, ti.DataOffsets, e.DType, e.Shape, e.DataOffsets)
			}
		}
	})
}
