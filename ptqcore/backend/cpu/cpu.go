// Package cpu is the CPU backend of ptqcore: every operation of
// backend.Backend in plain Go, parallel across cores (goroutines over rows,
// experts and heads, runtime.GOMAXPROCS of them). It is always built.
//
// Numerics: dot products accumulate in float32, one accumulator per output
// element, in ascending index order, each product rounded to float32 before
// the addition (no fused multiply-add), exactly as the backend contract
// says; register tiling only changes which outputs are computed together,
// never the order of one output's additions, so an output element has the
// same bits whichever operation computed it. Reductions that transformers
// runs in float32 (RMSNorm's mean of squares, softmax sums) are accumulated
// in float64 and rounded to float32 once. Transcendentals (exp, cos, sin,
// pow) are computed in float64 and rounded to float32.
package cpu

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/ptqgate/ptqgate/ptqcore/backend"
	"github.com/ptqgate/ptqgate/ptqcore/numerics"
)

// Tensor is the CPU backend's tensor: a row-major float32 matrix.
type Tensor struct {
	rows, cols int
	data       []float32
	view       bool
	freed      bool
}

// Rows implements backend.Tensor.
func (t *Tensor) Rows() int { return t.rows }

// Cols implements backend.Tensor.
func (t *Tensor) Cols() int { return t.cols }

// Data returns the tensor's storage (len Rows·Cols). Tests and the
// benchmark use it; the forward goes through the backend.Backend methods.
func (t *Tensor) Data() []float32 { return t.data }

func (t *Tensor) row(r int) []float32 { return t.data[r*t.cols : (r+1)*t.cols] }

// Backend is the CPU backend. The zero value is not usable; call New.
type Backend struct {
	workers int

	mu   sync.Mutex
	rope map[ropeKey]*ropeTable
}

// New returns a CPU backend using runtime.GOMAXPROCS(0) worker goroutines.
func New() *Backend { return NewWorkers(runtime.GOMAXPROCS(0)) }

// NewWorkers returns a CPU backend with n worker goroutines (n < 1 means 1).
func NewWorkers(n int) *Backend {
	if n < 1 {
		n = 1
	}
	return &Backend{workers: n, rope: map[ropeKey]*ropeTable{}}
}

var _ backend.Backend = (*Backend)(nil)

// Name implements backend.Backend.
func (b *Backend) Name() string { return fmt.Sprintf("cpu (%d workers)", b.workers) }

// Workers returns the number of worker goroutines.
func (b *Backend) Workers() int { return b.workers }

// Alloc implements backend.Backend.
func (b *Backend) Alloc(rows, cols int) (backend.Tensor, error) {
	if rows < 0 || cols < 0 {
		return nil, backend.ShapeError("alloc", "negative shape [%d, %d]", rows, cols)
	}
	return &Tensor{rows: rows, cols: cols, data: make([]float32, rows*cols)}, nil
}

// Upload implements backend.Backend. The CPU backend keeps data itself.
func (b *Backend) Upload(rows, cols int, data []float32) (backend.Tensor, error) {
	if rows < 0 || cols < 0 || len(data) != rows*cols {
		return nil, backend.ShapeError("upload", "%d values for shape [%d, %d]", len(data), rows, cols)
	}
	return &Tensor{rows: rows, cols: cols, data: data}, nil
}

// Download implements backend.Backend.
func (b *Backend) Download(t backend.Tensor, dst []float32) error {
	c, err := b.get("download", t)
	if err != nil {
		return err
	}
	if len(dst) != len(c.data) {
		return backend.ShapeError("download", "destination of %d values for shape [%d, %d]", len(dst), c.rows, c.cols)
	}
	copy(dst, c.data)
	return nil
}

// View implements backend.Backend.
func (b *Backend) View(t backend.Tensor, row0, row1 int) (backend.Tensor, error) {
	c, err := b.get("view", t)
	if err != nil {
		return nil, err
	}
	if row0 < 0 || row1 < row0 || row1 > c.rows {
		return nil, backend.ShapeError("view", "rows [%d, %d) of a tensor with %d rows", row0, row1, c.rows)
	}
	return &Tensor{rows: row1 - row0, cols: c.cols, data: c.data[row0*c.cols : row1*c.cols : row1*c.cols], view: true}, nil
}

// Free implements backend.Backend. Memory goes back to the Go heap when
// the tensor is no longer referenced.
func (b *Backend) Free(t backend.Tensor) {
	if c, ok := t.(*Tensor); ok && c != nil && !c.view {
		c.data, c.freed = nil, true
	}
}

// Close implements backend.Backend; the CPU backend holds nothing.
func (b *Backend) Close() error { return nil }

// get unwraps a tensor made by this package.
func (b *Backend) get(op string, t backend.Tensor) (*Tensor, error) {
	c, ok := t.(*Tensor)
	if !ok || c == nil {
		return nil, fmt.Errorf("%s: tensor %T was not made by the CPU backend", op, t)
	}
	if c.freed {
		return nil, fmt.Errorf("%s: tensor used after Free", op)
	}
	return c, nil
}

// getN unwraps several tensors.
func (b *Backend) getN(op string, ts ...backend.Tensor) ([]*Tensor, error) {
	out := make([]*Tensor, len(ts))
	for i, t := range ts {
		c, err := b.get(op, t)
		if err != nil {
			return nil, err
		}
		out[i] = c
	}
	return out, nil
}

// parallel runs fn(i) for i in [0, n) on up to b.workers goroutines.
func (b *Backend) parallel(n int, fn func(i int)) {
	w := b.workers
	if w > n {
		w = n
	}
	if w <= 1 {
		for i := 0; i < n; i++ {
			fn(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	wg.Add(w)
	for g := 0; g < w; g++ {
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				fn(i)
			}
		}()
	}
	wg.Wait()
}

// chunks splits [0, n) into about 4 pieces per worker, each at least
// minChunk long, and runs fn(lo, hi) on each in parallel.
func (b *Backend) chunks(n, minChunk int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	if minChunk < 1 {
		minChunk = 1
	}
	parts := 4 * b.workers
	size := (n + parts - 1) / parts
	if size < minChunk {
		size = minChunk
	}
	count := (n + size - 1) / size
	b.parallel(count, func(i int) {
		lo := i * size
		hi := min(lo+size, n)
		fn(lo, hi)
	})
}

// rounder returns the rounding of dt (nil for float32: values stay as computed).
func rounder(dt backend.DType) (func(float32) float32, error) {
	switch dt {
	case backend.F32:
		return nil, nil
	case backend.BF16:
		return numerics.RoundBF16, nil
	case backend.F16:
		return numerics.RoundF16, nil
	}
	return nil, fmt.Errorf("unsupported dtype %v", dt)
}

// roundAll rounds xs in place (no-op for nil).
func roundAll(round func(float32) float32, xs []float32) {
	if round == nil {
		return
	}
	for i, v := range xs {
		xs[i] = round(v)
	}
}

// rnd applies round when it is not nil.
func rnd(round func(float32) float32, v float32) float32 {
	if round == nil {
		return v
	}
	return round(v)
}
