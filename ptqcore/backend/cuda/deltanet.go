//go:build cuda

package cuda

import (
	"fmt"
	"math"

	"github.com/ptqgate/ptqgate/ptqcore/backend"
)

// The Gated DeltaNet operations of Qwen3.5-MoE (kernels/deltanet.cu). The
// kernels follow the CPU backend's order of operations, so float32 models
// agree with it to the last bit or within a few float32 ulps.
var _ backend.LinearAttention = (*Backend)(nil)

// seqStarts checks that the sequence lengths are positive and sum to rows
// and returns the first row of every sequence followed by rows.
func seqStarts(op string, seqLens []int, rows int) ([]int32, error) {
	if rows > math.MaxInt32 {
		return nil, fmt.Errorf("%s: %d rows exceed the kernels' int32 row index", op, rows)
	}
	out := make([]int32, 1, len(seqLens)+1)
	total := 0
	for _, n := range seqLens {
		if n <= 0 || n > rows-total {
			return nil, backend.ShapeError(op, "sequence lengths %v must be positive and sum to the %d rows", seqLens, rows)
		}
		total += n
		out = append(out, int32(total))
	}
	if total != rows {
		return nil, backend.ShapeError(op, "sequence lengths %v do not sum to the %d rows", seqLens, rows)
	}
	return out, nil
}

// overlaps reports whether two tensors share rows of one buffer.
func overlaps(a, b *Tensor) bool {
	return a.buf == b.buf && a.rows > 0 && b.rows > 0 && a.row0 < b.row0+b.rows && b.row0 < a.row0+a.rows
}

// partialAlias reports whether two tensors share rows without being the
// same rows (element-wise kernels allow only exact aliasing).
func partialAlias(a, b *Tensor) bool { return overlaps(a, b) && a.row0 != b.row0 }

// CausalConv1DSilu implements backend.LinearAttention.
func (b *Backend) CausalConv1DSilu(dst, x, w backend.Tensor, seqLens []int, dt backend.DType) error {
	const name = "causal conv1d"
	ts, err := b.tensors(name, dst, x, w)
	if err != nil {
		return err
	}
	d, xx, ww := ts[0], ts[1], ts[2]
	c, k := xx.cols, ww.cols
	if ww.rows != c || k < 1 || d.rows != xx.rows || d.cols != c {
		return backend.ShapeError(name, "x [%d,%d], weight [%d,%d] into [%d,%d]", xx.rows, xx.cols, ww.rows, ww.cols, d.rows, d.cols)
	}
	if overlaps(d, xx) {
		return fmt.Errorf("%s: the destination must not be the input (earlier rows are read after later ones are written)", name)
	}
	if _, err := seqStarts(name, seqLens, xx.rows); err != nil {
		return err
	}
	code, err := dtCode(dt)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	starts := rowStarts(seqLens) // per row; the operation runs after the call returns
	return b.execAsync(name, func(o *op) error {
		dev := b.anchor(ww, xx)
		yp, yst, err := o.out(d, dev, dt, true, xx, ww)
		if err != nil {
			return err
		}
		xp, xst, _, err := o.in(xx, dev)
		if err != nil {
			return err
		}
		wp, wst, _, err := o.in(ww, dev)
		if err != nil {
			return err
		}
		n := int64(xx.rows) * int64(c)
		if n == 0 {
			return nil
		}
		dv := b.devs[dev]
		sp, err := o.uploadI32(dv, starts)
		if err != nil {
			return err
		}
		return b.launchOn(dv, "causal_conv1d_silu", [3]int{blocksFor(dv, n, 256), 1, 1}, 256, 0,
			pa(xp), sa(xst), pa(wp), sa(wst), pa(yp), sa(yst), pa(sp), la(int64(xx.rows)), ia(c), ia(k), code)
	})
}

// GatedDeltaRule implements backend.LinearAttention. Two kernels: the
// L2-normalised queries and keys of every row into float32 scratch, then
// the recurrence with one block per (sequence, value head) and the state
// in shared memory (KeyDim·ValueDim floats; ValueDim ≤ 1024).
func (b *Backend) GatedDeltaRule(dst, qkv, aProj, bProj, aLog, dtBias backend.Tensor, spec backend.GatedDeltaSpec, dt backend.DType) error {
	const name = "gated delta rule"
	ts, err := b.tensors(name, dst, qkv, aProj, bProj, aLog, dtBias)
	if err != nil {
		return err
	}
	d, x, aa, bb, al, db := ts[0], ts[1], ts[2], ts[3], ts[4], ts[5]
	nk, nv, dk, dvv := spec.KeyHeads, spec.ValueHeads, spec.KeyDim, spec.ValueDim
	if nk <= 0 || nv <= 0 || dk <= 0 || dvv <= 0 || nv%nk != 0 {
		return backend.ShapeError(name, "%d key heads of %d, %d value heads of %d (value heads must be a multiple of key heads)", nk, dk, nv, dvv)
	}
	m := x.rows
	if x.cols != spec.QKVCols() || aa.rows != m || aa.cols != nv || bb.rows != m || bb.cols != nv ||
		al.rows*al.cols != nv || db.rows*db.cols != nv || d.rows != m || d.cols != nv*dvv {
		return backend.ShapeError(name, "qkv [%d,%d] (want %d columns), a [%d,%d], b [%d,%d], A_log %d and dt_bias %d values (want %d) into [%d,%d]",
			x.rows, x.cols, spec.QKVCols(), aa.rows, aa.cols, bb.rows, bb.cols, al.rows*al.cols, db.rows*db.cols, nv, d.rows, d.cols)
	}
	for _, in := range []*Tensor{x, aa, bb} {
		if overlaps(d, in) {
			return fmt.Errorf("%s: the destination must not share storage with the inputs", name)
		}
	}
	seq, err := seqStarts(name, spec.SeqLens, m)
	if err != nil {
		return err
	}
	if dvv > 1024 {
		return fmt.Errorf("%s: value head dim %d exceeds the kernel's 1024 threads per block", name, dvv)
	}
	if nv > 65535 || len(spec.SeqLens) > math.MaxInt32 {
		return fmt.Errorf("%s: %d sequences × %d value heads exceed the grid limits", name, len(spec.SeqLens), nv)
	}
	code, err := dtCode(dt)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	scale := float32(1 / math.Sqrt(float64(dk)))
	smem := (dk*dvv + 2*dk) * 4
	kd := nk * dk
	return b.execAsync(name, func(o *op) error {
		dev := b.anchor(al, db, x, aa, bb)
		dv := b.devs[dev]
		if smem > dv.maxSmem-1024 {
			return fmt.Errorf("a %d×%d state needs %d bytes of shared memory, device %d allows %d", dk, dvv, smem, dv.ordinal, dv.maxSmem-1024)
		}
		op, ost, err := o.out(d, dev, dt, true, x, aa, bb, al, db)
		if err != nil {
			return err
		}
		ins := make([]struct {
			p  uint64
			st storage
		}, 5)
		for i, t := range []*Tensor{x, aa, bb, al, db} {
			p, st, _, err := o.in(t, dev)
			if err != nil {
				return err
			}
			ins[i].p, ins[i].st = pa(p), st
		}
		if m == 0 {
			return nil
		}
		qk, err := o.scratch(dv, 4*int64(m)*2*int64(kd))
		if err != nil {
			return err
		}
		heads := int64(m) * 2 * int64(nk)
		if err := b.launchOn(dv, "deltanet_l2norm", [3]int{blocksFor(dv, heads, 8), 1, 1}, 256, 0,
			ins[0].p, sa(ins[0].st), pa(qk), la(int64(m)), ia(nk), ia(dk), ia(x.cols), fa(scale)); err != nil {
			return err
		}
		sp, err := o.uploadI32(dv, seq)
		if err != nil {
			return err
		}
		threads := (dvv + 31) / 32 * 32
		return b.launchOn(dv, "gated_delta_rule", [3]int{len(spec.SeqLens), nv, 1}, threads, smem,
			pa(qk), ins[0].p, sa(ins[0].st), ins[1].p, sa(ins[1].st), ins[2].p, sa(ins[2].st),
			ins[3].p, sa(ins[3].st), ins[4].p, sa(ins[4].st), pa(op), sa(ost), pa(sp),
			ia(nk), ia(nv), ia(dk), ia(dvv), ia(x.cols), code)
	})
}

// GatedRMSNorm implements backend.LinearAttention.
func (b *Backend) GatedRMSNorm(dst, x, z, w backend.Tensor, group int, eps float32, dt backend.DType) error {
	const name = "gated rmsnorm"
	ts, err := b.tensors(name, dst, x, z, w)
	if err != nil {
		return err
	}
	d, xx, zz, ww := ts[0], ts[1], ts[2], ts[3]
	if group <= 0 || xx.cols%group != 0 || ww.rows*ww.cols != group || zz.rows != xx.rows || zz.cols != xx.cols ||
		d.rows != xx.rows || d.cols != xx.cols {
		return backend.ShapeError(name, "x [%d,%d] and gate [%d,%d] in groups of %d, weight of %d values, into [%d,%d]",
			xx.rows, xx.cols, zz.rows, zz.cols, group, ww.rows*ww.cols, d.rows, d.cols)
	}
	if partialAlias(d, xx) || partialAlias(d, zz) {
		return fmt.Errorf("%s: the destination may only alias an input exactly", name)
	}
	code, err := dtCode(dt)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return b.execAsync(name, func(o *op) error {
		dev := b.anchor(ww, xx, zz)
		yp, yst, err := o.out(d, dev, dt, true, xx, zz, ww)
		if err != nil {
			return err
		}
		xp, xst, _, err := o.in(xx, dev)
		if err != nil {
			return err
		}
		zp, zst, _, err := o.in(zz, dev)
		if err != nil {
			return err
		}
		wp, wst, _, err := o.in(ww, dev)
		if err != nil {
			return err
		}
		groups := int64(xx.rows) * int64(xx.cols/group)
		if groups == 0 {
			return nil
		}
		dv := b.devs[dev]
		return b.launchOn(dv, "gated_rmsnorm", [3]int{blocksFor(dv, groups, 8), 1, 1}, 256, 0,
			pa(xp), sa(xst), pa(zp), sa(zst), pa(wp), sa(wst), pa(yp), sa(yst), la(int64(xx.rows)), ia(xx.cols), ia(group), fa(eps), code)
	})
}
