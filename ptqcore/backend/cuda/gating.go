//go:build cuda

package cuda

import (
	"fmt"

	"github.com/ptqgate/ptqgate/ptqcore/backend"
)

var _ backend.SigmoidGate = (*Backend)(nil)

// SigmoidMul implements backend.SigmoidGate (kernels/deltanet.cu
// sigmoid_mul): the gated attention output with a full-size gate and the
// shared expert's [M, 1] shared_expert_gate broadcast over the row.
func (b *Backend) SigmoidMul(dst, x, gate backend.Tensor, dt backend.DType) error {
	const name = "sigmoid·mul"
	ts, err := b.tensors(name, dst, x, gate)
	if err != nil {
		return err
	}
	d, xx, gg := ts[0], ts[1], ts[2]
	if gg.rows != xx.rows || (gg.cols != xx.cols && gg.cols != 1) || d.rows != xx.rows || d.cols != xx.cols {
		return backend.ShapeError(name, "x [%d,%d] gated by [%d,%d] into [%d,%d]", xx.rows, xx.cols, gg.rows, gg.cols, d.rows, d.cols)
	}
	broadcast := gg.cols == 1 && xx.cols != 1
	if partialAlias(d, xx) || (overlaps(d, gg) && (broadcast || d.row0 != gg.row0)) {
		return fmt.Errorf("%s: the destination may only alias x (or a full-size gate) exactly", name)
	}
	code, err := dtCode(dt)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	bc := 0
	if broadcast {
		bc = 1
	}
	return b.execAsync(name, func(o *op) error {
		dev := b.anchor(xx, gg)
		yp, yst, err := o.out(d, dev, dt, true, xx, gg)
		if err != nil {
			return err
		}
		xp, xst, _, err := o.in(xx, dev)
		if err != nil {
			return err
		}
		gp, gst, _, err := o.in(gg, dev)
		if err != nil {
			return err
		}
		n := int64(xx.rows) * int64(xx.cols)
		if n == 0 {
			return nil
		}
		dv := b.devs[dev]
		return b.launchOn(dv, "sigmoid_mul", [3]int{blocksFor(dv, n, 256), 1, 1}, 256, 0,
			pa(xp), sa(xst), pa(gp), sa(gst), pa(yp), sa(yst), la(int64(xx.rows)), ia(xx.cols), ia(bc), code)
	})
}
