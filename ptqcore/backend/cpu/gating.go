package cpu

import (
	"math"

	"github.com/ptqgate/ptqgate/ptqcore/backend"
)

var _ backend.SigmoidGate = (*Backend)(nil)

// GatedRMSNorm implements backend.LinearAttention.
func (b *Backend) GatedRMSNorm(dst, x, z, w backend.Tensor, group int, eps float32, dt backend.DType) error {
	const op = "gated rmsnorm"
	ts, err := b.getN(op, dst, x, z, w)
	if err != nil {
		return err
	}
	d, xx, zz, ww := ts[0], ts[1], ts[2], ts[3]
	if group <= 0 || xx.cols%group != 0 || ww.rows*ww.cols != group || zz.rows != xx.rows || zz.cols != xx.cols ||
		d.rows != xx.rows || d.cols != xx.cols {
		return backend.ShapeError(op, "x [%d,%d] and gate [%d,%d] in groups of %d, weight of %d values, into [%d,%d]",
			xx.rows, xx.cols, zz.rows, zz.cols, group, ww.rows*ww.cols, d.rows, d.cols)
	}
	round, err := rounder(dt)
	if err != nil {
		return err
	}
	wv := ww.data
	b.chunks(xx.rows, rowChunk(xx.cols), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			in, gate, out := xx.row(r), zz.row(r), d.row(r)
			for g0 := 0; g0 < len(in); g0 += group {
				xs := in[g0 : g0+group]
				var ss float64
				for _, v := range xs {
					ss += float64(v) * float64(v)
				}
				variance := float32(ss / float64(group))
				inv := float32(1 / math.Sqrt(float64(variance+eps)))
				for i, v := range xs {
					n := rnd(round, wv[i]*rnd(round, v*inv))
					out[g0+i] = rnd(round, n*silu(gate[g0+i]))
				}
			}
		}
	})
	return nil
}

// SigmoidMul implements backend.SigmoidGate.
func (b *Backend) SigmoidMul(dst, x, gate backend.Tensor, dt backend.DType) error {
	const op = "sigmoid·mul"
	ts, err := b.getN(op, dst, x, gate)
	if err != nil {
		return err
	}
	d, xx, gg := ts[0], ts[1], ts[2]
	if gg.rows != xx.rows || (gg.cols != xx.cols && gg.cols != 1) || d.rows != xx.rows || d.cols != xx.cols {
		return backend.ShapeError(op, "x [%d,%d] gated by [%d,%d] into [%d,%d]", xx.rows, xx.cols, gg.rows, gg.cols, d.rows, d.cols)
	}
	round, err := rounder(dt)
	if err != nil {
		return err
	}
	broadcast := gg.cols == 1
	b.chunks(xx.rows, rowChunk(xx.cols), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			in, gr, out := xx.row(r), gg.row(r), d.row(r)
			if broadcast {
				s := rnd(round, sigmoid(gr[0]))
				for i, v := range in {
					out[i] = rnd(round, v*s)
				}
				continue
			}
			for i, v := range in {
				out[i] = rnd(round, v*rnd(round, sigmoid(gr[i])))
			}
		}
	})
	return nil
}
