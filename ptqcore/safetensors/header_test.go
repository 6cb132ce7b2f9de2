package safetensors_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
)

// rawFile builds a safetensors file from a literal header and data.
func rawFile(header string, data []byte) []byte {
	var b bytes.Buffer
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(header)))
	b.Write(n[:])
	b.WriteString(header)
	b.Write(data)
	return b.Bytes()
}

func withLength(n uint64, rest string) []byte {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], n)
	return append(b[:], rest...)
}

func parse(b []byte) (*safetensors.Header, error) {
	return safetensors.ParseHeader(bytes.NewReader(b), int64(len(b)), "bad.safetensors")
}

func TestParseHeaderMalformed(t *testing.T) {
	z := func(n int) []byte { return make([]byte, n) }
	cases := []struct {
		name   string
		file   []byte
		tensor string // tensor the message must name ("" = none required)
		want   string // substring of the message
	}{
		{"empty file", nil, "", "too short"},
		{"short file", []byte{1, 2, 3}, "", "too short"},
		{"length beyond file", withLength(100, "{}"), "", "larger than the file"},
		{"length beyond limit", withLength(100_000_001, "{}"), "", "exceeds the 100000000-byte limit"},
		{"huge length", withLength(1<<63, "{}"), "", "exceeds"},
		{"zero length", withLength(0, ""), "", "empty"},
		{"not utf8", rawFile("{\"a\xff\":{}}", nil), "", "not valid UTF-8"},
		{"not json", rawFile("{\"a\":", nil), "", "not valid JSON"},
		{"bad json token", rawFile(`{"a":{"dtype":F32}}`, nil), "", "not valid JSON"},
		{"array", rawFile(`[]`, nil), "", "does not start with '{'"},
		{"string", rawFile(`"x"`, nil), "", "does not start with '{'"},
		{"leading space", rawFile(` {}`, nil), "", "does not start with '{'"},
		{"trailing data", rawFile(`{} x`, nil), "", "after the JSON object"},
		{"two objects", rawFile(`{}{}`, nil), "", "after the JSON object"},
		{"duplicate tensor", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, z(2)), "a", "duplicate tensor name"},
		{"duplicate metadata", rawFile(`{"__metadata__":{},"__metadata__":{}}`, nil), "", "duplicate __metadata__"},
		{"duplicate metadata key", rawFile(`{"__metadata__":{"k":"a","k":"b"}}`, nil), "", `duplicate key "k"`},
		{"metadata number", rawFile(`{"__metadata__":{"k":1}}`, nil), "", `__metadata__["k"] must be a string`},
		{"metadata object value", rawFile(`{"__metadata__":{"k":{"x":"y"}}}`, nil), "", "must be a string"},
		{"metadata null value", rawFile(`{"__metadata__":{"k":null}}`, nil), "", "must be a string"},
		{"metadata array", rawFile(`{"__metadata__":["a"]}`, nil), "", "must be an object of strings"},
		{"entry not object", rawFile(`{"a":[1]}`, nil), "a", "must be an object"},
		{"entry string", rawFile(`{"a":"F32"}`, nil), "a", "must be an object"},
		{"missing dtype", rawFile(`{"a":{"shape":[1],"data_offsets":[0,1]}}`, z(1)), "a", "no dtype"},
		{"missing shape", rawFile(`{"a":{"dtype":"U8","data_offsets":[0,1]}}`, z(1)), "a", "no shape"},
		{"missing offsets", rawFile(`{"a":{"dtype":"U8","shape":[1]}}`, z(1)), "a", "no data_offsets"},
		{"unknown key", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":1}}`, z(1)), "a", `unknown key "x"`},
		{"duplicate dtype key", rawFile(`{"a":{"dtype":"U8","dtype":"I8","shape":[1],"data_offsets":[0,1]}}`, z(1)), "a", `duplicate key "dtype"`},
		{"duplicate shape key", rawFile(`{"a":{"dtype":"U8","shape":[1],"shape":[1],"data_offsets":[0,1]}}`, z(1)), "a", `duplicate key "shape"`},
		{"duplicate offsets key", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"data_offsets":[0,1]}}`, z(1)), "a", `duplicate key "data_offsets"`},
		{"dtype number", rawFile(`{"a":{"dtype":4,"shape":[1],"data_offsets":[0,1]}}`, z(1)), "a", "dtype must be a string"},
		{"dtype empty", rawFile(`{"a":{"dtype":"","shape":[1],"data_offsets":[0,1]}}`, z(1)), "a", "dtype is empty"},
		{"negative dim", rawFile(`{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}}`, z(1)), "a", "not a non-negative integer"},
		{"fractional dim", rawFile(`{"a":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}}`, z(1)), "a", "not a non-negative integer"},
		{"exponent dim", rawFile(`{"a":{"dtype":"U8","shape":[1e0],"data_offsets":[0,1]}}`, z(1)), "a", "not a non-negative integer"},
		{"string dim", rawFile(`{"a":{"dtype":"U8","shape":["1"],"data_offsets":[0,1]}}`, z(1)), "a", "must hold non-negative integers"},
		{"shape not array", rawFile(`{"a":{"dtype":"U8","shape":1,"data_offsets":[0,1]}}`, z(1)), "a", "shape must be an array"},
		{"nested shape", rawFile(`{"a":{"dtype":"U8","shape":[[1]],"data_offsets":[0,1]}}`, z(1)), "a", "must hold non-negative integers"},
		{"dim overflows int64", rawFile(`{"a":{"dtype":"U8","shape":[9223372036854775808],"data_offsets":[0,1]}}`, z(1)), "a", "overflows int64"},
		{"shape product overflows", rawFile(`{"a":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,1]}}`, z(1)), "a", "overflows"},
		{"bytes overflow", rawFile(`{"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,1]}}`, z(1)), "a", "overflow"},
		{"unknown dtype overflow shape", rawFile(`{"a":{"dtype":"Q7","shape":[4294967296,4294967296],"data_offsets":[0,1]}}`, z(1)), "a", "overflows"},
		{"three offsets", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}}`, z(1)), "a", "exactly 2 integers"},
		{"one offset", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0]}}`, z(1)), "a", "exactly 2 integers"},
		{"negative offset", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[-1,0]}}`, z(1)), "a", "not a non-negative integer"},
		{"offsets not array", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":{"b":0}}}`, z(1)), "a", "data_offsets must be an array"},
		{"end before begin", rawFile(`{"a":{"dtype":"U8","shape":[0],"data_offsets":[1,0]}}`, z(1)), "a", "end before they begin"},
		{"out of range", rawFile(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}`, z(2)), "a", "out of range"},
		{"huge offsets", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[9223372036854775806,9223372036854775807]}}`, z(1)), "a", "out of range"},
		{"overlap", rawFile(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}`, z(3)), "b", `overlap tensor "a"`},
		{"same range", rawFile(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}`, z(2)), "b", "overlap"},
		{"gap", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}}`, z(3)), "b", "not contiguous"},
		{"not from zero", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, z(2)), "a", "must start at 0"},
		{"trailing bytes", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, z(3)), "", "2 bytes not covered"},
		{"no tensors but data", rawFile(`{}`, z(4)), "", "4 bytes not covered"},
		{"size mismatch", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, z(4)), "a", "needs 8"},
		{"scalar size mismatch", rawFile(`{"a":{"dtype":"F32","shape":[],"data_offsets":[0,8]}}`, z(8)), "a", "needs 4"},
		{"F4 odd count", rawFile(`{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}`, z(2)), "a", "not a whole number of bytes"},
		{"F4 bytes as values", rawFile(`{"a":{"dtype":"F4","shape":[2,3],"data_offsets":[0,6]}}`, z(6)), "a", "needs 3"},
		{"unterminated entry", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]`, z(1)), "", "not valid JSON"},
		{"key not string", rawFile(`{1:2}`, nil), "", "not valid JSON"},
		{"lone surrogate", rawFile(`{"a\ud800":{}}`, nil), "", "lone UTF-16 surrogate"},
		{"bad escape", rawFile(`{"a\x":{}}`, nil), "", "invalid escape"},
		{"short unicode escape", rawFile(`{"a\u12":{}}`, nil), "", "invalid \\u escape"},
		{"control char in name", rawFile("{\"a\x01\":{}}", nil), "", "control character"},
		{"leading zero", rawFile(`{"a":{"dtype":"U8","shape":[01],"data_offsets":[0,1]}}`, z(1)), "a", "invalid number"},
		{"trailing comma", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},}`, z(1)), "", "not valid JSON"},
		{"trailing comma in shape", rawFile(`{"a":{"dtype":"U8","shape":[1,],"data_offsets":[0,1]}}`, z(1)), "a", "not valid JSON"},
		{"bad literal", rawFile(`{"__metadata__":nul}`, nil), "", "invalid literal"},
		{"empty entry", rawFile(`{"a":{}}`, nil), "a", "no dtype"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, err := parse(tc.file)
			if err == nil {
				t.Fatalf("ParseHeader accepted a malformed file: %+v", h)
			}
			var fe *safetensors.FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T %v is not a *FormatError", err, err)
			}
			if fe.ExitCode() != 1 {
				t.Errorf("ExitCode %d, want 1", fe.ExitCode())
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "bad.safetensors: ") {
				t.Errorf("message %q does not start with the file name", msg)
			}
			if tc.tensor != "" && fe.Tensor != tc.tensor {
				t.Errorf("Tensor %q, want %q (message %q)", fe.Tensor, tc.tensor, msg)
			}
			if tc.tensor != "" && !strings.Contains(msg, `"`+tc.tensor+`"`) {
				t.Errorf("message %q does not name tensor %q", msg, tc.tensor)
			}
			if !strings.Contains(msg, tc.want) {
				t.Errorf("message %q does not contain %q", msg, tc.want)
			}
		})
	}
}

func TestParseHeaderValid(t *testing.T) {
	cases := []struct {
		name  string
		file  []byte
		check func(t *testing.T, h *safetensors.Header)
	}{
		{"empty object", rawFile(`{}      `, nil), func(t *testing.T, h *safetensors.Header) {
			if len(h.Tensors) != 0 || h.Metadata != nil || h.DataStart != 16 {
				t.Errorf("got %+v", h)
			}
		}},
		{"null metadata", rawFile(`{"__metadata__":null}`, nil), func(t *testing.T, h *safetensors.Header) {
			if h.Metadata != nil {
				t.Errorf("metadata %v, want nil", h.Metadata)
			}
		}},
		{"whitespace everywhere", rawFile("{ \"a\" : {\n\"dtype\" : \"U8\", \"shape\":[ 2 ],\t\"data_offsets\":[0 , 2]}\r\n}\n  ", []byte{7, 9}), func(t *testing.T, h *safetensors.Header) {
			if len(h.Tensors) != 1 || h.Tensors[0].Size != 2 {
				t.Errorf("got %+v", h.Tensors)
			}
		}},
		{"scalar", rawFile(`{"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}`, make([]byte, 4)), func(t *testing.T, h *safetensors.Header) {
			ti := h.Tensors[0]
			if len(ti.Shape) != 0 || ti.NumElements() != 1 || ti.Size != 4 {
				t.Errorf("got %+v", ti)
			}
		}},
		{"empty tensors share an offset", rawFile(`{"e2":{"dtype":"F32","shape":[0,3],"data_offsets":[4,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"e1":{"dtype":"BF16","shape":[3,0],"data_offsets":[4,4]}}`, make([]byte, 4)), func(t *testing.T, h *safetensors.Header) {
			if got := names(h.Tensors); got != "a,e2,e1" {
				t.Errorf("data order %s, want a,e2,e1 (offsets, then header order)", got)
			}
		}},
		{"F4 counts values", rawFile(`{"q":{"dtype":"F4","shape":[2,6],"data_offsets":[0,6]}}`, make([]byte, 6)), func(t *testing.T, h *safetensors.Header) {
			if h.Tensors[0].NumElements() != 12 || h.Tensors[0].Size != 6 {
				t.Errorf("got %+v", h.Tensors[0])
			}
		}},
		{"unknown dtype kept raw", rawFile(`{"u":{"dtype":"Q3_K","shape":[7],"data_offsets":[0,5]},"v":{"dtype":"U8","shape":[1],"data_offsets":[5,6]}}`, make([]byte, 6)), func(t *testing.T, h *safetensors.Header) {
			u := h.Tensors[0]
			if u.DType != "Q3_K" || u.Size != 5 || u.DType.Known() {
				t.Errorf("got %+v", u)
			}
		}},
		{"offsets out of name order", rawFile(`{"b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}`, make([]byte, 3)), func(t *testing.T, h *safetensors.Header) {
			if got := names(h.Tensors); got != "b,a" {
				t.Errorf("data order %s", got)
			}
			if h.Tensors[1].Offset != h.DataStart+1 {
				t.Errorf("absolute offset %d, want %d", h.Tensors[1].Offset, h.DataStart+1)
			}
		}},
		{"metadata", rawFile(`{"__metadata__":{"format":"pt","ü":"ß"}}`, nil), func(t *testing.T, h *safetensors.Header) {
			if h.Metadata["format"] != "pt" || h.Metadata["ü"] != "ß" {
				t.Errorf("metadata %v", h.Metadata)
			}
		}},
		{"escapes", rawFile(`{"a\u00e9\ud83d\ude00\n\"\/\\":{"dtype":"U8","shape":[],"data_offsets":[0,1]},"__metadata__":{"k\t":"\u0041"}}`, []byte{1}), func(t *testing.T, h *safetensors.Header) {
			if h.Tensors[0].Name != "aé😀\n\"/\\" || h.Metadata["k\t"] != "A" {
				t.Errorf("name %q metadata %v", h.Tensors[0].Name, h.Metadata)
			}
		}},
		{"empty metadata and arrays", rawFile(`{"__metadata__":{},"s":{"shape":[],"data_offsets":[0,2],"dtype":"BF16"}}`, []byte{1, 2}), func(t *testing.T, h *safetensors.Header) {
			if h.Metadata == nil || len(h.Metadata) != 0 || h.Tensors[0].DType != safetensors.BF16 {
				t.Errorf("got %+v %+v", h.Metadata, h.Tensors)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, err := parse(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, h)
		})
	}
}

func names(ts []safetensors.TensorInfo) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = t.Name
	}
	return strings.Join(s, ",")
}

func TestDTypeBits(t *testing.T) {
	want := map[safetensors.DType]int{
		"F64": 64, "F32": 32, "F16": 16, "BF16": 16, "I64": 64, "I32": 32, "I16": 16, "I8": 8, "U8": 8, "U16": 16,
		"U32": 32, "U64": 64, "BOOL": 8, "F8_E4M3": 8, "F8_E5M2": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
		"F4": 4, "C64": 64, "F6_E2M3": 6, "F6_E3M2": 6,
	}
	for d, bits := range want {
		got, ok := d.Bits()
		if !ok || got != bits {
			t.Errorf("%s.Bits() = %d, %v; want %d, true", d, got, ok, bits)
		}
	}
	if len(safetensors.DTypes()) != len(want) {
		t.Errorf("DTypes() has %d entries, want %d", len(safetensors.DTypes()), len(want))
	}
	if _, ok := safetensors.DType("F8_E4M3FN").Bits(); ok {
		t.Error("F8_E4M3FN is not a safetensors dtype but Bits says known")
	}
	if safetensors.BOOL != safetensors.Bool || safetensors.F8E4M3 != "F8_E4M3" {
		t.Error("constant spelling")
	}
}
