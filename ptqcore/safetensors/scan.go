package safetensors

import (
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// headerScanner parses a safetensors header directly against its schema:
// one JSON object whose values are either the __metadata__ object of
// strings (or null) or tensor entries {"dtype", "shape", "data_offsets"}.
// Because every value has a known type, the scanner never has to skip an
// arbitrary value and needs no recursion. Duplicate keys, which
// encoding/json would silently merge, are errors.
type headerScanner struct {
	buf  []byte
	pos  int
	path string
}

func (s *headerScanner) ws() {
	for s.pos < len(s.buf) {
		switch s.buf[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// syntax is an invalid-JSON error at the current position.
func (s *headerScanner) syntax(tensor, format string, args ...any) error {
	return formatErr(s.path, tensor, "header is not valid JSON at byte %d: %s", s.pos, fmt.Sprintf(format, args...))
}

// found describes the value starting at the current position.
func (s *headerScanner) found() string {
	s.ws()
	if s.pos >= len(s.buf) {
		return "the end of the header"
	}
	switch c := s.buf[s.pos]; {
	case c == '{':
		return "an object"
	case c == '[':
		return "an array"
	case c == '"':
		return "a string"
	case c == 'n':
		return "null"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == '-' || (c >= '0' && c <= '9'):
		return "a number"
	default:
		return fmt.Sprintf("%q", c)
	}
}

// wrongType is the error for a value of the wrong type: a schema error
// when a JSON value starts here, else a syntax error.
func (s *headerScanner) wrongType(tensor, format string, args ...any) error {
	c, ok := s.next()
	if !ok {
		return s.syntax(tensor, "unexpected end of the header")
	}
	if !(c == '{' || c == '[' || c == '"' || c == 'n' || c == 't' || c == 'f' || c == '-' || (c >= '0' && c <= '9')) {
		return s.syntax(tensor, "unexpected %q", c)
	}
	return formatErr(s.path, tensor, "%s, found %s", fmt.Sprintf(format, args...), s.found())
}

// next returns the next non-space byte without consuming it.
func (s *headerScanner) next() (byte, bool) {
	s.ws()
	if s.pos >= len(s.buf) {
		return 0, false
	}
	return s.buf[s.pos], true
}

func (s *headerScanner) expect(c byte, tensor string) error {
	got, ok := s.next()
	if !ok {
		return s.syntax(tensor, "unexpected end, expected %q", c)
	}
	if got != c {
		return s.syntax(tensor, "expected %q, found %q", c, got)
	}
	s.pos++
	return nil
}

// separator consumes ',' (more follows) or the closing byte.
func (s *headerScanner) separator(closing byte, tensor string) (more bool, err error) {
	c, ok := s.next()
	switch {
	case !ok:
		return false, s.syntax(tensor, "unexpected end, expected ',' or %q", closing)
	case c == ',':
		s.pos++
		return true, nil
	case c == closing:
		s.pos++
		return false, nil
	}
	return false, s.syntax(tensor, "expected ',' or %q, found %q", closing, c)
}

// str reads a JSON string (the buffer is already valid UTF-8).
func (s *headerScanner) str(tensor string) (string, error) {
	if err := s.expect('"', tensor); err != nil {
		return "", err
	}
	start := s.pos
	for s.pos < len(s.buf) {
		c := s.buf[s.pos]
		switch {
		case c == '"':
			v := string(s.buf[start:s.pos])
			s.pos++
			return v, nil
		case c == '\\':
			return s.escapedStr(start, tensor)
		case c < 0x20:
			return "", s.syntax(tensor, "control character %#02x in string", c)
		}
		s.pos++
	}
	return "", s.syntax(tensor, "unterminated string")
}

func (s *headerScanner) escapedStr(start int, tensor string) (string, error) {
	out := append([]byte(nil), s.buf[start:s.pos]...)
	for s.pos < len(s.buf) {
		c := s.buf[s.pos]
		switch {
		case c == '"':
			s.pos++
			return string(out), nil
		case c < 0x20:
			return "", s.syntax(tensor, "control character %#02x in string", c)
		case c != '\\':
			out = append(out, c)
			s.pos++
			continue
		}
		if s.pos+1 >= len(s.buf) {
			break
		}
		e := s.buf[s.pos+1]
		s.pos += 2
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := s.hex4()
			if !ok {
				return "", s.syntax(tensor, "invalid \\u escape")
			}
			if utf16.IsSurrogate(r) {
				var r2 rune = -1
				if s.pos+1 < len(s.buf) && s.buf[s.pos] == '\\' && s.buf[s.pos+1] == 'u' {
					s.pos += 2
					r2, ok = s.hex4()
					if !ok {
						return "", s.syntax(tensor, "invalid \\u escape")
					}
				}
				r = utf16.DecodeRune(r, r2)
				if r == utf8.RuneError {
					return "", s.syntax(tensor, "lone UTF-16 surrogate in \\u escape")
				}
			}
			out = utf8.AppendRune(out, r)
		default:
			return "", s.syntax(tensor, "invalid escape \\%c", e)
		}
	}
	return "", s.syntax(tensor, "unterminated string")
}

func (s *headerScanner) hex4() (rune, bool) {
	if s.pos+4 > len(s.buf) {
		return 0, false
	}
	var r rune
	for _, c := range s.buf[s.pos : s.pos+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	s.pos += 4
	return r, true
}

// literal consumes the JSON literal word (null, true, false).
func (s *headerScanner) literal(word string, tensor string) error {
	if s.pos+len(word) > len(s.buf) || string(s.buf[s.pos:s.pos+len(word)]) != word {
		return s.syntax(tensor, "invalid literal")
	}
	s.pos += len(word)
	return nil
}

// header parses the whole header object.
func (s *headerScanner) header() (*Header, error) {
	if err := s.expect('{', ""); err != nil {
		return nil, err
	}
	h := &Header{}
	seen := make(map[string]bool)
	if c, ok := s.next(); ok && c == '}' {
		s.pos++
	} else {
		for {
			key, err := s.str("")
			if err != nil {
				return nil, err
			}
			if err := s.expect(':', key); err != nil {
				return nil, err
			}
			if seen[key] {
				if key == MetadataKey {
					return nil, formatErr(s.path, "", "duplicate %s key in header", MetadataKey)
				}
				return nil, formatErr(s.path, key, "duplicate tensor name in header")
			}
			seen[key] = true
			if key == MetadataKey {
				if h.Metadata, err = s.metadata(); err != nil {
					return nil, err
				}
			} else {
				t, err := s.tensor(key)
				if err != nil {
					return nil, err
				}
				h.Tensors = append(h.Tensors, t)
			}
			more, err := s.separator('}', "")
			if err != nil {
				return nil, err
			}
			if !more {
				break
			}
		}
	}
	s.ws()
	if s.pos != len(s.buf) {
		return nil, formatErr(s.path, "", "header has data after the JSON object at byte %d (only space padding is allowed)", s.pos)
	}
	return h, nil
}

func (s *headerScanner) metadata() (map[string]string, error) {
	c, _ := s.next()
	if c == 'n' {
		return nil, s.literal("null", "")
	}
	if c != '{' {
		return nil, s.wrongType("", "%s must be an object of strings", MetadataKey)
	}
	s.pos++
	md := make(map[string]string)
	if c, ok := s.next(); ok && c == '}' {
		s.pos++
		return md, nil
	}
	for {
		k, err := s.str("")
		if err != nil {
			return nil, err
		}
		if err := s.expect(':', ""); err != nil {
			return nil, err
		}
		if _, dup := md[k]; dup {
			return nil, formatErr(s.path, "", "duplicate key %q in %s", k, MetadataKey)
		}
		if c, _ := s.next(); c != '"' {
			return nil, s.wrongType("", "%s[%q] must be a string", MetadataKey, k)
		}
		if md[k], err = s.str(""); err != nil {
			return nil, err
		}
		more, err := s.separator('}', "")
		if err != nil {
			return nil, err
		}
		if !more {
			return md, nil
		}
	}
}

func (s *headerScanner) tensor(name string) (TensorInfo, error) {
	t := TensorInfo{Name: name, File: s.path}
	if c, _ := s.next(); c != '{' {
		return t, s.wrongType(name, "entry must be an object with dtype, shape and data_offsets")
	}
	s.pos++
	var haveDType, haveShape, haveOffsets bool
	if c, ok := s.next(); ok && c == '}' {
		s.pos++
		return t, formatErr(s.path, name, "entry has no dtype")
	}
	for {
		k, err := s.str(name)
		if err != nil {
			return t, err
		}
		if err := s.expect(':', name); err != nil {
			return t, err
		}
		switch k {
		case "dtype":
			if haveDType {
				return t, formatErr(s.path, name, "duplicate key \"dtype\"")
			}
			haveDType = true
			if c, _ := s.next(); c != '"' {
				return t, s.wrongType(name, "dtype must be a string")
			}
			d, err := s.str(name)
			if err != nil {
				return t, err
			}
			if d == "" {
				return t, formatErr(s.path, name, "dtype is empty")
			}
			t.DType = DType(d)
		case "shape":
			if haveShape {
				return t, formatErr(s.path, name, "duplicate key \"shape\"")
			}
			haveShape = true
			if t.Shape, err = s.intArray(name, "shape"); err != nil {
				return t, err
			}
		case "data_offsets":
			if haveOffsets {
				return t, formatErr(s.path, name, "duplicate key \"data_offsets\"")
			}
			haveOffsets = true
			offs, err := s.intArray(name, "data_offsets")
			if err != nil {
				return t, err
			}
			if len(offs) != 2 {
				return t, formatErr(s.path, name, "data_offsets must hold exactly 2 integers [begin, end], found %d", len(offs))
			}
			t.DataOffsets = [2]int64{offs[0], offs[1]}
		default:
			return t, formatErr(s.path, name, "unknown key %q in tensor entry (want dtype, shape, data_offsets)", k)
		}
		more, err := s.separator('}', name)
		if err != nil {
			return t, err
		}
		if !more {
			break
		}
	}
	switch {
	case !haveDType:
		return t, formatErr(s.path, name, "entry has no dtype")
	case !haveShape:
		return t, formatErr(s.path, name, "entry has no shape")
	case !haveOffsets:
		return t, formatErr(s.path, name, "entry has no data_offsets")
	}
	return t, nil
}

// intArray reads an array of non-negative integers that fit in int64.
func (s *headerScanner) intArray(name, what string) ([]int64, error) {
	if c, _ := s.next(); c != '[' {
		return nil, s.wrongType(name, "%s must be an array of non-negative integers", what)
	}
	s.pos++
	out := []int64{}
	if c, ok := s.next(); ok && c == ']' {
		s.pos++
		return out, nil
	}
	for {
		c, ok := s.next()
		if !ok {
			return nil, s.syntax(name, "unexpected end in %s", what)
		}
		if c != '-' && (c < '0' || c > '9') {
			return nil, s.wrongType(name, "%s must hold non-negative integers", what)
		}
		start := s.pos
		for s.pos < len(s.buf) {
			c := s.buf[s.pos]
			if (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' {
				s.pos++
				continue
			}
			break
		}
		num := string(s.buf[start:s.pos])
		switch {
		case !validJSONNumber(num):
			return nil, s.syntax(name, "invalid number %q", num)
		case !isDigits(num):
			return nil, formatErr(s.path, name, "%s value %s is not a non-negative integer", what, num)
		}
		x, err := strconv.ParseInt(num, 10, 64)
		if err != nil {
			return nil, formatErr(s.path, name, "%s value %s overflows int64", what, num)
		}
		out = append(out, x)
		more, err := s.separator(']', name)
		if err != nil {
			return nil, err
		}
		if !more {
			return out, nil
		}
	}
}

// validJSONNumber reports whether s matches JSON's number grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func validJSONNumber(s string) bool {
	i := 0
	digits := func() int {
		n := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}
