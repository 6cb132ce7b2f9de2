package export

import "github.com/ptqgate/ptqgate/internal/pyjson"

// object is a JSON object that keeps its key order, as Python's dict does:
// ModelOpt reads config.json with json.load, adds quantization_config and
// writes it back with json.dump(indent=4), so the source's key order
// survives and the new key comes last.
type object []member

// member is one key of an object.
type member struct {
	Key   string
	Value any
}

// get returns the value of key.
func (o object) get(key string) (any, bool) {
	for _, m := range o {
		if m.Key == key {
			return m.Value, true
		}
	}
	return nil, false
}

// set replaces the value of key in place, or appends the key.
func (o *object) set(key string, v any) {
	for i := range *o {
		if (*o)[i].Key == key {
			(*o)[i].Value = v
			return
		}
	}
	*o = append(*o, member{key, v})
}

// Len and At make object a pyjson.Ordered.
func (o object) Len() int { return len(o) }

// At returns the i-th key and value.
func (o object) At(i int) (string, any) { return o[i].Key, o[i].Value }

// parseObject decodes a JSON document whose top level is an object into
// an ordered tree (pyjson.ParseObject): objects become object, arrays
// []any, numbers json.Number (their source text is kept), strings, bools
// and nil. A duplicated key keeps its first position and its last value,
// as Python's json.load does.
func parseObject(raw []byte) (object, error) {
	po, err := pyjson.ParseObject(raw)
	if err != nil {
		return nil, err
	}
	return fromPy(po).(object), nil
}

// fromPy converts pyjson's ordered tree into this package's object type.
func fromPy(v any) any {
	switch x := v.(type) {
	case pyjson.Object:
		o := make(object, len(x))
		for i, m := range x {
			o[i] = member{m.Key, fromPy(m.Value)}
		}
		return o
	case []any:
		for i := range x {
			x[i] = fromPy(x[i])
		}
		return x
	}
	return v
}

// marshalPy encodes v the way Python's json.dump(v, f, indent=4) writes it:
// keys in order, four-space indent, "," then a newline between items,
// ": " between key and value, empty containers as [] and {},
// non-ASCII escaped as \uXXXX (ensure_ascii) and no trailing newline
// (internal/pyjson).
func marshalPy(v any) ([]byte, error) { return pyjson.Marshal(v, pyjson.Options{Indent: 4}) }
