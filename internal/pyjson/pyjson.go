// Package pyjson reads and writes JSON byte for byte the way Python's json
// module does, so that files ptqgate writes next to Hugging Face ones
// (config.json, generation_config.json, hf_quant_config.json) look exactly
// like what transformers and ModelOpt write: Python's indentation and
// separators, ensure_ascii escaping, float repr, and either sorted keys
// (json.dumps(sort_keys=True)) or the insertion order of a dict.
package pyjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf16"
)

// Ordered is a JSON object with an order of its own: Marshal writes its
// keys in that order whatever Options.SortKeys says. Object implements it;
// packages with their own ordered types implement it too.
type Ordered interface {
	Len() int
	At(i int) (key string, value any)
}

// Object is a JSON object that keeps its key order, as a Python dict does.
type Object []Member

// Len implements Ordered.
func (o Object) Len() int { return len(o) }

// At implements Ordered.
func (o Object) At(i int) (string, any) { return o[i].Key, o[i].Value }

// Member is one key of an Object.
type Member struct {
	Key   string
	Value any
}

// Get returns the value of key.
func (o Object) Get(key string) (any, bool) {
	for _, m := range o {
		if m.Key == key {
			return m.Value, true
		}
	}
	return nil, false
}

// Set replaces the value of key in place, or appends the key.
func (o *Object) Set(key string, v any) {
	for i := range *o {
		if (*o)[i].Key == key {
			(*o)[i].Value = v
			return
		}
	}
	*o = append(*o, Member{key, v})
}

// ParseObject decodes a JSON document whose top level is an object into an
// ordered tree: objects become Object, arrays []any, numbers json.Number
// (their source text is kept), strings, bools and nil. A duplicated key
// keeps its first position and its last value, as Python's json.load does.
func ParseObject(raw []byte) (Object, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	v, err := parseValue(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the top-level value")
	}
	o, ok := v.(Object)
	if !ok {
		return nil, errors.New("the top-level value is not an object")
	}
	return o, nil
}

func parseValue(dec *json.Decoder) (any, error) {
	t, err := dec.Token()
	if err != nil {
		return nil, err
	}
	d, ok := t.(json.Delim)
	if !ok {
		return t, nil
	}
	switch d {
	case '{':
		o := Object{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, err
			}
			k, ok := kt.(string)
			if !ok {
				return nil, fmt.Errorf("object key %v is not a string", kt)
			}
			v, err := parseValue(dec)
			if err != nil {
				return nil, err
			}
			o.Set(k, v)
		}
		if _, err := dec.Token(); err != nil {
			return nil, err
		}
		return o, nil
	case '[':
		a := []any{}
		for dec.More() {
			v, err := parseValue(dec)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		if _, err := dec.Token(); err != nil {
			return nil, err
		}
		return a, nil
	}
	return nil, fmt.Errorf("unexpected %v", d)
}

// Options selects the Python json.dumps flavour.
type Options struct {
	// Indent is the indent= argument (2 for transformers, 4 for ModelOpt).
	Indent int
	// SortKeys sorts the keys of map[string]any values (sort_keys=True);
	// Object values always keep their order.
	SortKeys bool
	// TrailingNewline appends "\n" (transformers' to_json_file does).
	TrailingNewline bool
}

// Marshal encodes v as Python's json.dumps(v, indent=o.Indent,
// sort_keys=o.SortKeys) would: "," then a newline between items, ": "
// between key and value, empty containers as [] and {}, floats in Python's
// repr (10000.0, 1e-06), every character outside printable ASCII escaped
// as \uXXXX (ensure_ascii). Supported values: nil, bool, string, int,
// int64, float64, json.Number, []int, []string, []any, map[string]any and
// Ordered (e.g. Object). A map without SortKeys is an error (Go maps have no order).
func Marshal(v any, o Options) ([]byte, error) {
	var b bytes.Buffer
	if err := o.write(&b, v, 0); err != nil {
		return nil, err
	}
	if o.TrailingNewline {
		b.WriteByte('\n')
	}
	return b.Bytes(), nil
}

func (o Options) write(b *bytes.Buffer, v any, depth int) error {
	newline := func(d int) {
		b.WriteByte('\n')
		b.WriteString(strings.Repeat(" ", o.Indent*d))
	}
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case string:
		writeString(b, x)
	case int:
		b.WriteString(strconv.Itoa(x))
	case int64:
		b.WriteString(strconv.FormatInt(x, 10))
	case float64:
		s, err := Float(x)
		if err != nil {
			return err
		}
		b.WriteString(s)
	case json.Number:
		b.WriteString(string(x))
	case []int:
		return o.write(b, toAny(x), depth)
	case []string:
		return o.write(b, toAny(x), depth)
	case []any:
		if len(x) == 0 {
			b.WriteString("[]")
			return nil
		}
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			newline(depth + 1)
			if err := o.write(b, e, depth+1); err != nil {
				return err
			}
		}
		newline(depth)
		b.WriteByte(']')
	case map[string]any:
		if !o.SortKeys {
			return errors.New("a map[string]any needs SortKeys (use Object to keep an order)")
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		obj := make(Object, len(keys))
		for i, k := range keys {
			obj[i] = Member{k, x[k]}
		}
		return o.write(b, obj, depth)
	case Ordered:
		if x.Len() == 0 {
			b.WriteString("{}")
			return nil
		}
		b.WriteByte('{')
		for i := 0; i < x.Len(); i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			k, val := x.At(i)
			newline(depth + 1)
			writeString(b, k)
			b.WriteString(": ")
			if err := o.write(b, val, depth+1); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
		}
		newline(depth)
		b.WriteByte('}')
	default:
		return fmt.Errorf("cannot encode %T as JSON", v)
	}
	return nil
}

func toAny[T any](xs []T) []any {
	out := make([]any, len(xs))
	for i, x := range xs {
		out[i] = x
	}
	return out
}

// Float formats f like Python's float.__repr__: the shortest digits that
// round-trip, scientific notation when the exponent is < -4 or >= 16, and
// always a decimal point or exponent. Non-finite values are an error
// (Python would write NaN/Infinity, which is not JSON).
func Float(f float64) (string, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "", fmt.Errorf("non-finite float %v", f)
	}
	if f == 0 {
		if math.Signbit(f) {
			return "-0.0", nil
		}
		return "0.0", nil
	}
	sci := strconv.FormatFloat(f, 'e', -1, 64)
	exp, err := strconv.Atoi(sci[strings.IndexByte(sci, 'e')+1:])
	if err != nil {
		return "", fmt.Errorf("format float %v: %w", f, err)
	}
	if exp < -4 || exp >= 16 {
		return sci, nil // Go writes e-06 / e+16 like Python
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s, nil
}

// writeString writes s as json.dumps with ensure_ascii: the short escapes
// \" \\ \n \r \t \b \f, and every other character outside ' '..'~' as
// \uXXXX (surrogate pairs beyond the BMP). Invalid UTF-8 is written as
// U+FFFD.
func writeString(b *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	u4 := func(r rune) {
		b.WriteString(`\u`)
		for shift := 12; shift >= 0; shift -= 4 {
			b.WriteByte(hex[(r>>shift)&0xF])
		}
	}
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\f':
			b.WriteString(`\f`)
		case r >= 0x20 && r <= 0x7E:
			b.WriteByte(byte(r))
		case r > 0xFFFF:
			r1, r2 := utf16.EncodeRune(r)
			u4(r1)
			u4(r2)
		default:
			u4(r)
		}
	}
	b.WriteByte('"')
}
