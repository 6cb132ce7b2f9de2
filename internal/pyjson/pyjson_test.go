package pyjson

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func TestMarshalOrderedIndent4(t *testing.T) {
	v := Object{
		{"b", 1},
		{"a", []any{1, "x\u00e9\U0001F600\"\\\n\x7f"}},
		{"c", Object{}},
		{"d", []string{}},
		{"e", nil},
		{"f", true},
		{"g", Object{{"h", []string{"y"}}}},
	}
	got, err := Marshal(v, Options{Indent: 4})
	if err != nil {
		t.Fatal(err)
	}
	// What Python's json.dump(v, f, indent=4) writes (ensure_ascii escapes
	// everything outside ' '..'~', DEL included; no trailing newline).
	want := `{
    "b": 1,
    "a": [
        1,
        "x\u00e9\ud83d\ude00\"\\\n\u007f"
    ],
    "c": {},
    "d": [],
    "e": null,
    "f": true,
    "g": {
        "h": [
            "y"
        ]
    }
}`
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestMarshalSortedIndent2(t *testing.T) {
	v := map[string]any{"z": 1e-06, "a": 10000.0, "m": []int{1, 2}, "n": json.Number("1e-06")}
	got, err := Marshal(v, Options{Indent: 2, SortKeys: true, TrailingNewline: true})
	if err != nil {
		t.Fatal(err)
	}
	want := "{\n  \"a\": 10000.0,\n  \"m\": [\n    1,\n    2\n  ],\n  \"n\": 1e-06,\n  \"z\": 1e-06\n}\n"
	if string(got) != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	if _, err := Marshal(map[string]any{"a": 1}, Options{Indent: 2}); err == nil {
		t.Error("an unordered map without SortKeys must be refused")
	}
}

func TestFloatMatchesPythonRepr(t *testing.T) {
	for in, want := range map[float64]string{
		10000.0: "10000.0", 1e-06: "1e-06", 0.02: "0.02", 1e16: "1e+16", 123456789012345.0: "123456789012345.0",
		0.0001: "0.0001", 0.00001: "1e-05", -2.5: "-2.5", 1e-320: "1e-320",
	} {
		got, err := Float(in)
		if err != nil || got != want {
			t.Errorf("Float(%v) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if _, err := Float(bad); err == nil {
			t.Errorf("Float(%v) accepted a non-finite value", bad)
		}
	}
}

func TestParseObjectKeepsOrderAndNumbers(t *testing.T) {
	o, err := ParseObject([]byte(`{"b": 1e-06, "a": {"y": [1, 2.50]}, "b": 3}`))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Marshal(o, Options{Indent: 4})
	if err != nil {
		t.Fatal(err)
	}
	want := "{\n    \"b\": 3,\n    \"a\": {\n        \"y\": [\n            1,\n            2.50\n        ]\n    }\n}"
	if string(got) != want {
		t.Errorf("got %q want %q", got, want)
	}
	for _, bad := range []string{`[1]`, `{"a": 1} x`, `{"a": }`} {
		if _, err := ParseObject([]byte(bad)); err == nil || strings.TrimSpace(err.Error()) == "" {
			t.Errorf("ParseObject(%q) accepted", bad)
		}
	}
}
