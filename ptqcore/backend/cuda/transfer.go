//go:build cuda

package cuda

import (
	"fmt"

	"github.com/ptqgate/ptqgate/ptqcore/backend"
)

// Upload implements backend.Backend. Data whose values are all bfloat16
// values is stored as bfloat16. Weights stay resident while they fit the
// device budgets; otherwise (or with WeightsStream) the backend keeps a
// reference to data and streams it to the device when needed, so data
// must not change while the tensor is in use.
func (b *Backend) Upload(rows, cols int, data []float32) (backend.Tensor, error) {
	if rows < 0 || cols < 0 || len(data) != rows*cols {
		return nil, backend.ShapeError("upload", "%d values for shape [%d, %d]", len(data), rows, cols)
	}
	st := stF32
	if bf16Exact(data) {
		st = stBF16
	}
	bf := &buffer{rows: rows, cols: cols, st: st, weight: true}
	t := &Tensor{rows: rows, cols: cols, buf: bf}
	err := b.run(func() error { return b.place(bf, data) })
	if err != nil {
		return nil, fmt.Errorf("upload [%d, %d]: %w", rows, cols, err)
	}
	return t, nil
}

// place puts an uploaded buffer on a device or registers it for
// streaming (worker).
func (b *Backend) place(bf *buffer, data []float32) error {
	n := bf.bytes()
	minBytes := b.opt.StreamMinBytes
	if minBytes == 0 {
		minBytes = DefaultStreamMinBytes
	}
	small := n < minBytes
	d := b.fill
	stream := false
	switch {
	case b.opt.Weights == WeightsStream:
		stream = !small
	case small:
	default:
		for d < len(b.devs) && b.devs[d].resident+n > b.devs[d].budget {
			d++
		}
		if d == len(b.devs) {
			if b.opt.Weights == WeightsResident {
				return fmt.Errorf("%d bytes of weights do not fit the resident budget of any device (%s=stream or auto streams them)", n, EnvWeights)
			}
			d, stream = len(b.devs)-1, true
		} else {
			b.fill = d
		}
	}
	dv := b.devs[d]
	if err := b.use(d); err != nil {
		return err
	}
	bf.dev = d
	if stream {
		if dv.streamer == nil {
			s, err := b.newStreamer(dv)
			if err != nil {
				return err
			}
			dv.streamer = s
		}
		bf.materialized = true
		return dv.streamer.add(bf, data)
	}
	p, err := b.alloc(dv, n)
	if err != nil {
		return err
	}
	bf.ptr, bf.materialized = p, true
	dv.resident += n
	return dv.ring.toDevice(p, n, fillFunc(bf.st, data))
}

// Download implements backend.Backend.
func (b *Backend) Download(t backend.Tensor, dst []float32) error {
	c, err := b.tensor("download", t)
	if err != nil {
		return err
	}
	if len(dst) != c.rows*c.cols {
		return backend.ShapeError("download", "destination of %d values for shape [%d, %d]", len(dst), c.rows, c.cols)
	}
	return b.exec("download", func(o *op) error {
		p, st, dev, err := o.in(c, -1)
		if err != nil {
			return err
		}
		n := int64(len(dst))
		if n == 0 {
			return nil
		}
		ring := b.devs[dev].ring
		if st == stBF16 {
			return ring.toHost(p, 2*n, func(chunk []byte, off int64) { unpackBF16(dst[off/2:off/2+int64(len(chunk))/2], chunk) })
		}
		return ring.toHost(p, 4*n, func(chunk []byte, off int64) { unpackF32(dst[off/4:off/4+int64(len(chunk))/4], chunk) })
	})
}
