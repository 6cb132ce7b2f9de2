package model

import (
	"fmt"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/ptqgate/ptqgate/ptqcore/backend"
	"github.com/ptqgate/ptqgate/ptqcore/numerics"
	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
)

// Param is one weight of the model in host memory: float32 values equal to
// the parameter transformers holds in memory (the checkpoint's values,
// widened exactly from bf16/f16, or rounded to the model dtype when the
// file is wider than the model's dtype).
type Param struct {
	// Name is the parameter's name as transformers' state_dict names it
	// (for fused experts "….mlp.experts.gate_up_proj", even when the file
	// stores per-expert tensors).
	Name string
	// Shape is the logical shape.
	Shape []int
	// Data holds the values, row-major.
	Data []float32
	// Source is the safetensors dtype the values were read from.
	Source safetensors.DType
	// Sources are the checkpoint tensors the values were read from (one,
	// or the per-expert tensors merged into a fused parameter).
	Sources []string

	dev backend.Tensor
}

// Rows returns the product of all dimensions but the last.
func (p *Param) Rows() int {
	n := 1
	for _, d := range p.Shape[:len(p.Shape)-1] {
		n *= d
	}
	return n
}

// Cols returns the last dimension.
func (p *Param) Cols() int { return p.Shape[len(p.Shape)-1] }

// Device returns the parameter's tensor on the backend the model was
// prepared for (nil before Prepare).
func (p *Param) Device() backend.Tensor { return p.dev }

// WeightError says a checkpoint tensor the model needs is missing, has the
// wrong shape or dtype, or cannot be decoded. It maps to exit 1 and names
// the checkpoint folder (or file) and the tensor.
type WeightError struct {
	File   string
	Tensor string
	Msg    string
	Err    error
}

// Error implements error.
func (e *WeightError) Error() string {
	s := fmt.Sprintf("%s: tensor %q: %s", e.File, e.Tensor, e.Msg)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying error.
func (e *WeightError) Unwrap() error { return e.Err }

// ExitCode makes a bad checkpoint tensor a failed check (exit 1).
func (e *WeightError) ExitCode() int { return 1 }

// Weights reads a checkpoint's tensors for an architecture's builder,
// decoding them to the model dtype and remembering which tensors were used
// (the rest are Model.Unused).
type Weights struct {
	ck   *safetensors.Checkpoint
	dir  string
	dt   backend.DType
	used map[string]bool
}

func newWeights(ck *safetensors.Checkpoint, dt backend.DType) *Weights {
	return &Weights{ck: ck, dir: ck.Dir(), dt: dt, used: map[string]bool{}}
}

// Has reports whether the checkpoint holds a tensor.
func (l *Weights) Has(name string) bool {
	_, ok := l.ck.Tensor(name)
	return ok
}

func (l *Weights) errf(tensor, format string, args ...any) error {
	return &WeightError{File: l.dir, Tensor: tensor, Msg: fmt.Sprintf(format, args...)}
}

// read decodes one tensor of the given shape into float32 values in the
// model dtype.
func (l *Weights) read(name string, shape ...int) ([]float32, safetensors.DType, error) {
	info, ok := l.ck.Tensor(name)
	if !ok {
		return nil, "", l.errf(name, "missing from the checkpoint (expected shape %v)", shape)
	}
	file := filepath.Base(info.File)
	if !sameShape(info.Shape, shape) {
		return nil, "", &WeightError{File: l.dir, Tensor: name, Msg: fmt.Sprintf("shape %v in %s, expected %v", info.Shape, file, shape)}
	}
	switch info.DType {
	case safetensors.F32, safetensors.BF16, safetensors.F16:
	default:
		return nil, "", &WeightError{File: l.dir, Tensor: name, Msg: fmt.Sprintf("dtype %s in %s; ptqgate reads F32, BF16 or F16 weights (an already quantized checkpoint cannot be calibrated)", info.DType, file)}
	}
	raw, err := l.ck.ReadTensor(name)
	if err != nil {
		return nil, "", &WeightError{File: l.dir, Tensor: name, Msg: "cannot read", Err: err}
	}
	vals, err := numerics.DecodeFloats(string(info.DType), raw)
	if err != nil {
		return nil, "", &WeightError{File: l.dir, Tensor: name, Msg: "cannot decode " + string(info.DType), Err: err}
	}
	roundTo(l.dt, info.DType, vals)
	l.used[name] = true
	return vals, info.DType, nil
}

// roundTo rounds values read as src to the model dtype where the file is
// wider (transformers casts parameters to the model dtype at load).
func roundTo(dt backend.DType, src safetensors.DType, vals []float32) {
	var round func(float32) float32
	switch {
	case dt == backend.BF16 && src != safetensors.BF16:
		round = numerics.RoundBF16
	case dt == backend.F16 && src != safetensors.F16:
		round = numerics.RoundF16
	}
	if round == nil {
		return
	}
	for i, v := range vals {
		vals[i] = round(v)
	}
}

// Param loads one tensor of the given shape as a Param.
func (l *Weights) Param(name string, shape ...int) (*Param, error) {
	vals, dt, err := l.read(name, shape...)
	if err != nil {
		return nil, err
	}
	return &Param{Name: name, Shape: shape, Data: vals, Source: dt, Sources: []string{name}}, nil
}

// Optional loads a tensor if the checkpoint has it (nil, nil otherwise).
func (l *Weights) Optional(name string, shape ...int) (*Param, error) {
	if !l.Has(name) {
		return nil, nil
	}
	return l.Param(name, shape...)
}

// Experts loads the fused experts of prefix ("model.layers.3.mlp.experts")
// from either layout: fused 3-D "gate_up_proj" [E,2I,H] and "down_proj"
// [E,H,I], or per-expert "<e>.{gate,up,down}_proj.weight", merged as
// transformers does (gate rows first).
func (l *Weights) Experts(prefix string, e, inter, hidden int) (gateUp, down *Param, err error) {
	fusedGU, fusedD := prefix+".gate_up_proj", prefix+".down_proj"
	perExpert := l.Has(prefix + ".0.gate_proj.weight")
	fused := l.Has(fusedGU) || l.Has(fusedD)
	switch {
	case fused && perExpert:
		return nil, nil, l.errf(fusedGU, "the checkpoint holds both fused and per-expert weights for %s", prefix)
	case fused:
		if gateUp, err = l.Param(fusedGU, e, 2*inter, hidden); err != nil {
			return nil, nil, err
		}
		if down, err = l.Param(fusedD, e, hidden, inter); err != nil {
			return nil, nil, err
		}
		return gateUp, down, nil
	}
	gateUp = &Param{Name: fusedGU, Shape: []int{e, 2 * inter, hidden}, Data: make([]float32, e*2*inter*hidden)}
	down = &Param{Name: fusedD, Shape: []int{e, hidden, inter}, Data: make([]float32, e*hidden*inter)}
	slice := inter * hidden
	for x := 0; x < e; x++ {
		base := prefix + "." + strconv.Itoa(x)
		parts := []struct {
			name string
			dst  []float32
			rows int
			cols int
			p    *Param
		}{
			{base + ".gate_proj.weight", gateUp.Data[2*x*slice : (2*x+1)*slice], inter, hidden, gateUp},
			{base + ".up_proj.weight", gateUp.Data[(2*x+1)*slice : (2*x+2)*slice], inter, hidden, gateUp},
			{base + ".down_proj.weight", down.Data[x*slice : (x+1)*slice], hidden, inter, down},
		}
		for _, pt := range parts {
			vals, dt, err := l.read(pt.name, pt.rows, pt.cols)
			if err != nil {
				return nil, nil, err
			}
			if pt.p.Source == "" {
				pt.p.Source = dt
			} else if pt.p.Source != dt {
				return nil, nil, l.errf(pt.name, "dtype %s differs from the other experts' %s", dt, pt.p.Source)
			}
			copy(pt.dst, vals)
			pt.p.Sources = append(pt.p.Sources, pt.name)
		}
	}
	// A per-expert tensor beyond num_experts means the config disagrees
	// with the file.
	if l.Has(prefix + "." + strconv.Itoa(e) + ".gate_proj.weight") {
		return nil, nil, l.errf(prefix+"."+strconv.Itoa(e)+".gate_proj.weight", "expert %d is beyond num_experts %d of %s", e, e, ConfigFile)
	}
	return gateUp, down, nil
}

// unused returns the checkpoint tensors the model did not read, sorted.
func (l *Weights) unused() []string {
	var out []string
	for _, n := range l.ck.Names() {
		if !l.used[n] {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

func sameShape(got []int64, want []int) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != int64(want[i]) {
			return false
		}
	}
	return true
}
