package reports

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
)

// Float is a float64 whose JSON form writes non-finite values as the
// strings "NaN", "+Inf" and "-Inf" (encoding/json cannot write them as
// numbers). Finite values use the shortest representation that round-trips.
type Float float64

// MarshalJSON implements json.Marshaler.
func (f Float) MarshalJSON() ([]byte, error) {
	v := float64(f)
	switch {
	case math.IsNaN(v):
		return []byte(`"NaN"`), nil
	case math.IsInf(v, 1):
		return []byte(`"+Inf"`), nil
	case math.IsInf(v, -1):
		return []byte(`"-Inf"`), nil
	}
	return strconv.AppendFloat(nil, v, 'g', -1, 64), nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (f *Float) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		switch s {
		case "NaN":
			*f = Float(math.NaN())
		case "+Inf", "Inf":
			*f = Float(math.Inf(1))
		case "-Inf":
			*f = Float(math.Inf(-1))
		default:
			return fmt.Errorf("invalid number string %q", s)
		}
		return nil
	}
	v, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("invalid number %s", b)
	}
	*f = Float(v)
	return nil
}

// F returns a pointer to f as a Float, for optional fields.
func F(f float64) *Float { v := Float(f); return &v }

// Amax is a calibrated amax: one value (per-tensor) or an array (per
// channel or per block). A nil *Amax encodes as null (never calibrated).
type Amax struct {
	Values    []Float
	PerTensor bool
}

// ScalarAmax returns a per-tensor amax.
func ScalarAmax(v float64) *Amax { return &Amax{Values: []Float{Float(v)}, PerTensor: true} }

// VectorAmax returns a per-channel or per-block amax.
func VectorAmax(vs []float64) *Amax {
	a := &Amax{Values: make([]Float, len(vs))}
	for i, v := range vs {
		a.Values[i] = Float(v)
	}
	return a
}

// Max returns the largest value of the amax (NaN if any value is NaN).
func (a *Amax) Max() float64 {
	m := math.Inf(-1)
	for _, v := range a.Values {
		if math.IsNaN(float64(v)) {
			return math.NaN()
		}
		m = math.Max(m, float64(v))
	}
	return m
}

// Valid reports whether every value is finite and > 0.
func (a *Amax) Valid() bool {
	if a == nil || len(a.Values) == 0 {
		return false
	}
	for _, v := range a.Values {
		x := float64(v)
		if math.IsNaN(x) || math.IsInf(x, 0) || x <= 0 {
			return false
		}
	}
	return true
}

// MarshalJSON implements json.Marshaler.
func (a Amax) MarshalJSON() ([]byte, error) {
	if a.PerTensor && len(a.Values) == 1 {
		return a.Values[0].MarshalJSON()
	}
	vs := a.Values
	if vs == nil {
		vs = []Float{}
	}
	return json.Marshal(vs)
}

// UnmarshalJSON implements json.Unmarshaler.
func (a *Amax) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '[' {
		a.PerTensor = false
		return json.Unmarshal(b, &a.Values)
	}
	var f Float
	if err := f.UnmarshalJSON(b); err != nil {
		return err
	}
	a.Values, a.PerTensor = []Float{f}, true
	return nil
}
