//go:build cuda

package cuda

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
	"unsafe"

	"gorgonia.org/cu"

	"github.com/ptqgate/ptqgate/ptqcore/backend"
)

// Kernel launch geometry.
const (
	tcBM   = 128
	tcBN   = 128
	tcSmem = 3 * (tcBM + tcBN) * 64 * 2 // gemm_bf16_tc: 3 stages of 128×64 x and w tiles
	fBM    = 64
	fBN    = 64
	atBQ   = 64
)

// Kernel argument slots: each parameter travels in the low bytes of a
// uint64 (int and float parameters are 4 bytes, long long and pointers 8).
func pa(p cu.DevicePtr) uint64 { return uint64(p) }
func ia(v int) uint64          { return uint64(uint32(int32(v))) }
func la(v int64) uint64        { return uint64(v) }
func fa(v float32) uint64      { return uint64(math.Float32bits(v)) }
func sa(s storage) uint64      { return uint64(s) }

// dtCode is the kernels' dtype code: 0 float32, 1 bfloat16, 2 float16.
func dtCode(dt backend.DType) (uint64, error) {
	switch dt {
	case backend.F32:
		return 0, nil
	case backend.BF16:
		return 1, nil
	case backend.F16:
		return 2, nil
	}
	return 0, fmt.Errorf("unsupported dtype %v", dt)
}

// launchOn launches kernel name on device d's stream.
func (b *Backend) launchOn(d *device, name string, grid [3]int, block, smem int, args ...uint64) error {
	f, err := d.fn(name)
	if err != nil {
		return err
	}
	if !b.prof.on {
		return launch(name, f, grid, [3]int{block, 1, 1}, smem, d.stream, args)
	}
	start, err := b.markEvent()
	if err != nil {
		return err
	}
	end, err := b.markEvent()
	if err != nil {
		return err
	}
	if err := start.Record(d.stream); err != nil {
		return wrap("cuEventRecord(profile)", err)
	}
	if err := launch(name, f, grid, [3]int{block, 1, 1}, smem, d.stream, args); err != nil {
		return err
	}
	if err := end.Record(d.stream); err != nil {
		return wrap("cuEventRecord(profile)", err)
	}
	b.prof.marks = append(b.prof.marks, kernelMark{name: name, start: start, end: end, dev: d.idx})
	return nil
}

// aligned16 reports whether every address is 16-byte aligned.
func aligned16(ps ...cu.DevicePtr) bool {
	for _, p := range ps {
		if uint64(p)%16 != 0 {
			return false
		}
	}
	return true
}

// blocksFor sizes a grid-stride launch of n items.
func blocksFor(d *device, n int64, per int64) int {
	return int(max(1, min((n+per-1)/per, int64(d.sms)*16)))
}

func (b *Backend) launchConvert(d *device, src cu.DevicePtr, sst storage, dst cu.DevicePtr, dstSt storage, n int64) error {
	return b.launchOn(d, "convert", [3]int{blocksFor(d, n, 256), 1, 1}, 256, 0, pa(src), sa(sst), pa(dst), sa(dstSt), la(n))
}

// anchor is the device an operation runs on: where its weight is, else
// where its first materialized input is, else the first device.
func (b *Backend) anchor(ts ...*Tensor) int {
	for _, t := range ts {
		if t != nil && (t.buf.stream != nil || t.buf.materialized) && t.buf.weight {
			return t.buf.dev
		}
	}
	for _, t := range ts {
		if t != nil && (t.buf.stream != nil || t.buf.materialized) {
			return t.buf.dev
		}
	}
	return 0
}

// exec runs an operation on the worker with an op collecting its
// temporaries and pins, and waits for it.
func (b *Backend) exec(name string, fn func(o *op) error) error {
	return b.run(b.opFunc(name, fn))
}

// execAsync queues an operation without a result (see post).
func (b *Backend) execAsync(name string, fn func(o *op) error) error {
	return b.post(b.opFunc(name, fn))
}

func (b *Backend) opFunc(name string, fn func(o *op) error) func() error {
	return func() (err error) {
		if b.prof.on {
			t0 := time.Now()
			defer func() {
				b.prof.ops[name] += time.Since(t0)
				b.prof.opsN[name]++
			}()
		}
		o := b.newOp(name)
		defer o.finish(&err)
		if err := fn(o); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}
}

// GatherRows implements backend.Backend.
func (b *Backend) GatherRows(dst, src backend.Tensor, idx []int32) error {
	ts, err := b.tensors("gather rows", dst, src)
	if err != nil {
		return err
	}
	d, s := ts[0], ts[1]
	if d.cols != s.cols || len(idx) != d.rows {
		return backend.ShapeError("gather rows", "%d indices from [%d,%d] into [%d,%d]", len(idx), s.rows, s.cols, d.rows, d.cols)
	}
	if d.buf == s.buf {
		return fmt.Errorf("gather rows: source and destination share storage")
	}
	// Copy (the operation runs after the call returns) and check in one pass.
	own := make([]int32, len(idx))
	for r, i := range idx {
		if uint32(i) >= uint32(s.rows) {
			return backend.ShapeError("gather rows", "index %d at row %d outside [0, %d)", i, r, s.rows)
		}
		own[r] = i
	}
	idx = own
	return b.execAsync("gather rows", func(o *op) error {
		dev := b.anchor(s, d)
		sp, sst, _, err := o.in(s, dev)
		if err != nil {
			return err
		}
		dt := backend.F32
		if sst == stBF16 {
			dt = backend.BF16
		}
		dp, dst, err := o.out(d, dev, dt, true)
		if err != nil {
			return err
		}
		if d.rows == 0 || d.cols == 0 {
			return nil
		}
		dv := b.devs[dev]
		ip, err := o.uploadI32(dv, idx)
		if err != nil {
			return err
		}
		rowBytes := int64(d.cols) * sst.size()
		if sst == dst && rowBytes%16 == 0 && uint64(sp)%16 == 0 && uint64(dp)%16 == 0 {
			return b.launchOn(dv, "gather_rows_x16", [3]int{int(min(int64(d.rows), int64(dv.sms)*16)), 1, 1}, 128, 0,
				pa(sp), pa(dp), pa(ip), la(int64(d.rows)), ia(int(rowBytes/16)))
		}
		return b.launchOn(dv, "gather_rows", [3]int{int(min(int64(d.rows), int64(dv.sms)*16)), 1, 1}, 256, 0,
			pa(sp), sa(sst), pa(dp), sa(dst), pa(ip), la(int64(d.rows)), ia(d.cols))
	})
}

// Linear implements backend.Backend.
func (b *Backend) Linear(dst, x, w, bias backend.Tensor, dt backend.DType) error {
	ts, err := b.tensors("linear", dst, x, w)
	if err != nil {
		return err
	}
	d, xx, ww := ts[0], ts[1], ts[2]
	var bb *Tensor
	if bias != nil {
		if bb, err = b.tensor("linear", bias); err != nil {
			return err
		}
	}
	if xx.cols != ww.cols || d.rows != xx.rows || d.cols != ww.rows || (bb != nil && bb.rows*bb.cols != ww.rows) {
		bs := "none"
		if bb != nil {
			bs = fmt.Sprintf("[%d,%d]", bb.rows, bb.cols)
		}
		return backend.ShapeError("linear", "x [%d,%d] · w [%d,%d]ᵀ + bias %s into [%d,%d]", xx.rows, xx.cols, ww.rows, ww.cols, bs, d.rows, d.cols)
	}
	return b.execAsync("linear", func(o *op) error {
		_, err := b.gemm(o, d, xx, ww, bb, nil, dt)
		return err
	})
}

// GroupedLinear implements backend.Backend.
func (b *Backend) GroupedLinear(dst, x, w backend.Tensor, offsets []int, dt backend.DType) ([]float32, error) {
	ts, err := b.tensors("grouped linear", dst, x, w)
	if err != nil {
		return nil, err
	}
	d, xx, ww := ts[0], ts[1], ts[2]
	e := len(offsets) - 1
	if e < 1 || offsets[0] != 0 || offsets[e] != xx.rows || xx.cols != ww.cols || d.rows != xx.rows || ww.rows != e*d.cols {
		return nil, backend.ShapeError("grouped linear", "x [%d,%d], w [%d,%d] as %d experts, offsets %v, into [%d,%d]",
			xx.rows, xx.cols, ww.rows, ww.cols, max(e, 0), head(offsets), d.rows, d.cols)
	}
	for i := 0; i < e; i++ {
		if offsets[i+1] < offsets[i] {
			return nil, backend.ShapeError("grouped linear", "offsets decrease at expert %d", i)
		}
	}
	var amax []float32
	err = b.exec("grouped linear", func(o *op) error {
		var err error
		amax, err = b.gemm(o, d, xx, ww, nil, offsets, dt)
		return err
	})
	return amax, err
}

// gemm runs dst = round(x·wᵀ + bias) (or the grouped form with offsets,
// returning each expert's max|x|) on the device of w.
func (b *Backend) gemm(o *op, dst, x, w, bias *Tensor, offsets []int, dt backend.DType) ([]float32, error) {
	code, err := dtCode(dt)
	if err != nil {
		return nil, err
	}
	dev := b.anchor(w, x)
	dv := b.devs[dev]
	cp, cst, err := o.out(dst, dev, dt, true, x, w, bias)
	if err != nil {
		return nil, err
	}
	xp, xst, _, err := o.in(x, dev)
	if err != nil {
		return nil, err
	}
	wp, wst, _, err := o.in(w, dev)
	if err != nil {
		return nil, err
	}
	var bp cu.DevicePtr
	bst := stF32
	if bias != nil {
		if bp, bst, _, err = o.in(bias, dev); err != nil {
			return nil, err
		}
	}
	M, N, K := x.rows, dst.cols, x.cols
	experts := 1
	if offsets != nil {
		experts = len(offsets) - 1
	}
	var amaxP cu.DevicePtr
	if offsets != nil {
		if amaxP, err = o.zeros32(dv, experts); err != nil {
			return nil, err
		}
	}
	// Tensor cores when both operands hold bfloat16 values in bfloat16
	// storage; float32-stored operands (values outside bfloat16) take the
	// exact float32 path, as the CPU backend computes them.
	tc := dt == backend.BF16 && K%8 == 0 && K > 0 && xst == stBF16 && wst == stBF16
	bm := fBM
	if tc {
		bm = tcBM
	}
	var tilesP cu.DevicePtr
	gy := (M + bm - 1) / bm
	if offsets != nil {
		tiles, err := gemmTiles(offsets, bm)
		if err != nil {
			return nil, err
		}
		gy = len(tiles) / 3
		if gy > 0 {
			if tilesP, err = o.uploadI32(dv, tiles); err != nil {
				return nil, err
			}
		}
	}
	if gy > 65535 {
		return nil, fmt.Errorf("%d row tiles exceed the grid limit (65535)", gy)
	}
	if gy > 0 && N > 0 {
		if tc {
			err = b.launchOn(dv, "gemm_bf16_tc", [3]int{(N + tcBN - 1) / tcBN, gy, 1}, 256, tcSmem,
				pa(xp), pa(wp), pa(cp), sa(cst), pa(bp), sa(bst), ia(M), ia(N), ia(K), pa(tilesP), pa(amaxP))
		} else {
			err = b.launchOn(dv, "gemm_f32", [3]int{(N + fBN - 1) / fBN, gy, 1}, 256, 0,
				pa(xp), sa(xst), pa(wp), sa(wst), pa(cp), sa(cst), pa(bp), sa(bst), ia(M), ia(N), ia(K), pa(tilesP), pa(amaxP), code)
		}
		if err != nil {
			return nil, err
		}
	}
	if offsets == nil {
		return nil, nil
	}
	bits, err := o.download32(dv, amaxP, experts)
	if err != nil {
		return nil, err
	}
	return amaxValues(bits), nil
}

// RMSNorm implements backend.Backend.
func (b *Backend) RMSNorm(dst, x, w backend.Tensor, group int, eps float32, kind backend.NormKind, dt backend.DType) error {
	ts, err := b.tensors("rmsnorm", dst, x, w)
	if err != nil {
		return err
	}
	d, xx, ww := ts[0], ts[1], ts[2]
	if group <= 0 || xx.cols%group != 0 || ww.rows*ww.cols != group || d.rows != xx.rows || d.cols != xx.cols {
		return backend.ShapeError("rmsnorm", "x [%d,%d] in groups of %d, weight of %d values, into [%d,%d]", xx.rows, xx.cols, group, ww.rows*ww.cols, d.rows, d.cols)
	}
	if kind != backend.NormWeighted && kind != backend.NormOffset {
		return fmt.Errorf("rmsnorm: unknown norm kind %d", kind)
	}
	code, err := dtCode(dt)
	if err != nil {
		return fmt.Errorf("rmsnorm: %w", err)
	}
	return b.execAsync("rmsnorm", func(o *op) error {
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
		if xx.rows == 0 || xx.cols == 0 {
			return nil
		}
		return b.launchOn(b.devs[dev], "rmsnorm", [3]int{xx.rows, 1, 1}, 256, 0,
			pa(xp), sa(xst), pa(wp), sa(wst), pa(yp), sa(yst), ia(xx.cols), ia(group), fa(eps), ia(int(kind)), code)
	})
}

// ropeKey identifies a device cos/sin table.
type ropeKey struct {
	theta     float64
	rotaryDim int
	dt        backend.DType
}

// ropeDev is a cos/sin table on a device covering positions [0, positions).
type ropeDev struct {
	positions int
	cos, sin  cu.DevicePtr
}

// posCache keeps the last positions uploaded to a device (q and k of one
// attention share them).
type posCache struct {
	host []int32
	ptr  cu.DevicePtr
}

// RoPE implements backend.Backend.
func (b *Backend) RoPE(x backend.Tensor, spec backend.RoPESpec, dt backend.DType) error {
	xx, err := b.tensor("rope", x)
	if err != nil {
		return err
	}
	if spec.Heads <= 0 || spec.HeadDim <= 0 || xx.cols != spec.Heads*spec.HeadDim || spec.RotaryDim <= 0 ||
		spec.RotaryDim%2 != 0 || spec.RotaryDim > spec.HeadDim || len(spec.Positions) != xx.rows || !(spec.Theta > 0) {
		return backend.ShapeError("rope", "x [%d,%d] with %d heads of %d (rotary %d, theta %g), %d positions",
			xx.rows, xx.cols, spec.Heads, spec.HeadDim, spec.RotaryDim, spec.Theta, len(spec.Positions))
	}
	code, err := dtCode(dt)
	if err != nil {
		return fmt.Errorf("rope: %w", err)
	}
	spec.Positions = slices.Clone(spec.Positions) // the operation runs after the call returns
	maxPos := 0
	for r, p := range spec.Positions {
		if p < 0 {
			return backend.ShapeError("rope", "negative position %d at row %d", p, r)
		}
		maxPos = max(maxPos, int(p))
	}
	return b.execAsync("rope", func(o *op) error {
		dev := b.anchor(xx)
		xp, xst, err := o.out(xx, dev, dt, false)
		if err != nil {
			return err
		}
		if xx.rows == 0 {
			return nil
		}
		dv := b.devs[dev]
		tab, err := b.ropeTable(dv, ropeKey{spec.Theta, spec.RotaryDim, dt}, maxPos)
		if err != nil {
			return err
		}
		pos, err := b.positions(dv, spec.Positions)
		if err != nil {
			return err
		}
		return b.launchOn(dv, "rope", [3]int{min(xx.rows, dv.sms*16), 1, 1}, 256, 0,
			pa(xp), sa(xst), ia(xx.rows), ia(spec.Heads), ia(spec.HeadDim), ia(spec.RotaryDim), pa(pos), pa(tab.cos), pa(tab.sin), code)
	})
}

// ropeTable returns the device table for key covering maxPos (worker).
func (b *Backend) ropeTable(d *device, key ropeKey, maxPos int) (*ropeDev, error) {
	if t, ok := d.rope[key]; ok && t.positions > maxPos {
		return t, nil
	}
	if t, ok := d.rope[key]; ok {
		if err := errors.Join(freeAsync(t.cos, d.stream), freeAsync(t.sin, d.stream)); err != nil {
			return nil, err
		}
		delete(d.rope, key)
	}
	n := max(maxPos+1, 4096)
	cos, sin := ropeTables(key.theta, key.rotaryDim, n, key.dt)
	t := &ropeDev{positions: n}
	var err error
	for _, x := range []struct {
		dst *cu.DevicePtr
		src []float32
	}{{&t.cos, cos}, {&t.sin, sin}} {
		if *x.dst, err = b.alloc(d, int64(4*len(x.src))); err != nil {
			return nil, err
		}
		src := x.src
		if err := d.ring.toDevice(*x.dst, int64(4*len(src)), func(slot []byte, off int64) { packF32(slot, src[off/4:off/4+int64(len(slot))/4]) }); err != nil {
			return nil, err
		}
	}
	d.rope[key] = t
	return t, nil
}

// positions returns the positions on the device, reusing the last upload
// when they are the same (worker).
func (b *Backend) positions(d *device, pos []int32) (cu.DevicePtr, error) {
	if d.pos.ptr != 0 && slices.Equal(d.pos.host, pos) {
		return d.pos.ptr, nil
	}
	if d.pos.ptr != 0 {
		if err := freeAsync(d.pos.ptr, d.stream); err != nil {
			return 0, err
		}
		d.pos.ptr = 0
	}
	p, err := b.alloc(d, int64(4*len(pos)))
	if err != nil {
		return 0, err
	}
	src := unsafe.Slice((*byte)(unsafe.Pointer(&pos[0])), 4*len(pos))
	if len(src) <= len(d.arena.buf)/4 {
		err = d.arena.copyToDevice(p, src)
	} else {
		err = d.ring.toDevice(p, int64(len(src)), func(slot []byte, off int64) { copy(slot, src[off:]) })
	}
	if err != nil {
		return 0, err
	}
	d.pos = posCache{host: append([]int32(nil), pos...), ptr: p}
	return p, nil
}

// Attention implements backend.Backend.
func (b *Backend) Attention(dst, q, k, v backend.Tensor, spec backend.AttentionSpec, dt backend.DType) error {
	ts, err := b.tensors("attention", dst, q, k, v)
	if err != nil {
		return err
	}
	d, qq, kk, vv := ts[0], ts[1], ts[2], ts[3]
	hd, nh, nkv := spec.HeadDim, spec.Heads, spec.KVHeads
	total, maxLen := 0, 0
	for _, n := range spec.SeqLens {
		if n <= 0 {
			return backend.ShapeError("attention", "sequence lengths %v must be positive", spec.SeqLens)
		}
		total += n
		maxLen = max(maxLen, n)
	}
	if hd <= 0 || nh <= 0 || nkv <= 0 || nh%nkv != 0 || qq.cols != nh*hd || kk.cols != nkv*hd || vv.cols != nkv*hd ||
		d.cols != nh*hd || qq.rows != total || kk.rows != total || vv.rows != total || d.rows != total {
		return backend.ShapeError("attention", "q [%d,%d] k [%d,%d] v [%d,%d] into [%d,%d] with %d heads, %d kv heads of %d, sequences %v",
			qq.rows, qq.cols, kk.rows, kk.cols, vv.rows, vv.cols, d.rows, d.cols, nh, nkv, hd, spec.SeqLens)
	}
	code, err := dtCode(dt)
	if err != nil {
		return fmt.Errorf("attention: %w", err)
	}
	spec.SeqLens = slices.Clone(spec.SeqLens) // the operation runs after the call returns
	return b.execAsync("attention", func(o *op) error {
		dev := b.anchor(qq, kk, vv)
		dv := b.devs[dev]
		op, ost, err := o.out(d, dev, dt, true, qq, kk, vv)
		if err != nil {
			return err
		}
		qp, qst, _, err := o.in(qq, dev)
		if err != nil {
			return err
		}
		kp, kst, _, err := o.in(kk, dev)
		if err != nil {
			return err
		}
		vp, vst, _, err := o.in(vv, dev)
		if err != nil {
			return err
		}
		if total == 0 {
			return nil
		}
		if dt == backend.BF16 && (hd == 64 || hd == 128) && qst == stBF16 && kst == stBF16 && vst == stBF16 {
			tiles := attentionTiles(spec.SeqLens, atBQ)
			tp, err := o.uploadI32(dv, tiles)
			if err != nil {
				return err
			}
			name := "attn_bf16_d128"
			if hd == 64 {
				name = "attn_bf16_d64"
			}
			return b.launchOn(dv, name, [3]int{len(tiles) / 3, nh, 1}, 128, 3*atBQ*hd*2,
				pa(qp), pa(kp), pa(vp), pa(op), sa(ost), pa(tp), ia(nh), ia(nkv), fa(spec.Scale))
		}
		smem := (maxLen + hd) * 4
		if smem > dv.maxSmem-1024 {
			return fmt.Errorf("a sequence of %d tokens with head_dim %d needs %d bytes of shared memory in the float32 attention kernel, device %d allows %d",
				maxLen, hd, smem, dv.ordinal, dv.maxSmem-1024)
		}
		rp, err := o.uploadI32(dv, rowStarts(spec.SeqLens))
		if err != nil {
			return err
		}
		return b.launchOn(dv, "attn_ref", [3]int{total, nh, 1}, 128, smem,
			pa(qp), sa(qst), pa(kp), sa(kst), pa(vp), sa(vst), pa(op), sa(ost), pa(rp), ia(nh), ia(nkv), ia(hd), fa(spec.Scale), code)
	})
}

// SiluMul implements backend.Backend.
func (b *Backend) SiluMul(dst, gu backend.Tensor, dt backend.DType) error {
	ts, err := b.tensors("silu·mul", dst, gu)
	if err != nil {
		return err
	}
	d, g := ts[0], ts[1]
	if g.cols != 2*d.cols || g.rows != d.rows {
		return backend.ShapeError("silu·mul", "[%d,%d] into [%d,%d]", g.rows, g.cols, d.rows, d.cols)
	}
	code, err := dtCode(dt)
	if err != nil {
		return fmt.Errorf("silu·mul: %w", err)
	}
	return b.execAsync("silu·mul", func(o *op) error {
		dev := b.anchor(g)
		dp, dst, err := o.out(d, dev, dt, true, g)
		if err != nil {
			return err
		}
		gp, gst, _, err := o.in(g, dev)
		if err != nil {
			return err
		}
		if d.rows == 0 || d.cols == 0 {
			return nil
		}
		dv := b.devs[dev]
		if gst == stBF16 && dst == stBF16 && d.cols%8 == 0 && aligned16(gp, dp) {
			n := int64(d.rows) * int64(d.cols/8)
			return b.launchOn(dv, "silu_mul_bf16x8", [3]int{blocksFor(dv, n, 256), 1, 1}, 256, 0, pa(gp), pa(dp), la(int64(d.rows)), ia(d.cols), code)
		}
		return b.launchOn(dv, "silu_mul", [3]int{int(min(int64(d.rows), int64(dv.sms)*16)), 1, 1}, 256, 0,
			pa(gp), sa(gst), pa(dp), sa(dst), la(int64(d.rows)), ia(d.cols), code)
	})
}

// Add implements backend.Backend.
func (b *Backend) Add(dst, x, y backend.Tensor, dt backend.DType) error {
	ts, err := b.tensors("add", dst, x, y)
	if err != nil {
		return err
	}
	d, a, c := ts[0], ts[1], ts[2]
	if a.rows != c.rows || a.cols != c.cols || d.rows != a.rows || d.cols != a.cols {
		return backend.ShapeError("add", "[%d,%d] + [%d,%d] into [%d,%d]", a.rows, a.cols, c.rows, c.cols, d.rows, d.cols)
	}
	code, err := dtCode(dt)
	if err != nil {
		return fmt.Errorf("add: %w", err)
	}
	return b.execAsync("add", func(o *op) error {
		dev := b.anchor(a, c)
		dp, dst, err := o.out(d, dev, dt, true, a, c)
		if err != nil {
			return err
		}
		ap, ast, _, err := o.in(a, dev)
		if err != nil {
			return err
		}
		cp, cst, _, err := o.in(c, dev)
		if err != nil {
			return err
		}
		n := int64(d.rows) * int64(d.cols)
		if n == 0 {
			return nil
		}
		dv := b.devs[dev]
		if ast == stBF16 && cst == stBF16 && dst == stBF16 && n%8 == 0 && aligned16(ap, cp, dp) {
			return b.launchOn(dv, "add_bf16x8", [3]int{blocksFor(dv, n/8, 256), 1, 1}, 256, 0, pa(ap), pa(cp), pa(dp), la(n/8), code)
		}
		return b.launchOn(dv, "add", [3]int{blocksFor(dv, n, 256), 1, 1}, 256, 0, pa(ap), sa(ast), pa(cp), sa(cst), pa(dp), sa(dst), la(n), code)
	})
}

// ScaleRows implements backend.Backend.
func (b *Backend) ScaleRows(x backend.Tensor, s []float32, dt backend.DType) error {
	xx, err := b.tensor("scale rows", x)
	if err != nil {
		return err
	}
	if len(s) != xx.rows {
		return backend.ShapeError("scale rows", "%d scales for %d rows", len(s), xx.rows)
	}
	code, err := dtCode(dt)
	if err != nil {
		return fmt.Errorf("scale rows: %w", err)
	}
	s = slices.Clone(s) // the operation runs after the call returns
	return b.execAsync("scale rows", func(o *op) error {
		dev := b.anchor(xx)
		xp, xst, err := o.out(xx, dev, dt, false)
		if err != nil {
			return err
		}
		if xx.rows == 0 || xx.cols == 0 {
			return nil
		}
		dv := b.devs[dev]
		sp, err := o.uploadF32(dv, s)
		if err != nil {
			return err
		}
		if xst == stBF16 && xx.cols%8 == 0 && aligned16(xp) {
			n := int64(xx.rows) * int64(xx.cols/8)
			return b.launchOn(dv, "scale_rows_bf16x8", [3]int{blocksFor(dv, n, 256), 1, 1}, 256, 0, pa(xp), pa(sp), la(int64(xx.rows)), ia(xx.cols), code)
		}
		return b.launchOn(dv, "scale_rows", [3]int{int(min(int64(xx.rows), int64(dv.sms)*16)), 1, 1}, 256, 0,
			pa(xp), sa(xst), pa(sp), la(int64(xx.rows)), ia(xx.cols), code)
	})
}

// ScatterAddRows implements backend.Backend.
func (b *Backend) ScatterAddRows(dst, src backend.Tensor, idx []int32, dt backend.DType) error {
	ts, err := b.tensors("scatter add rows", dst, src)
	if err != nil {
		return err
	}
	d, s := ts[0], ts[1]
	if d.cols != s.cols || len(idx) != s.rows {
		return backend.ShapeError("scatter add rows", "%d indices for [%d,%d] into [%d,%d]", len(idx), s.rows, s.cols, d.rows, d.cols)
	}
	order, start, err := scatterOrder(idx, d.rows)
	if err != nil {
		return err
	}
	code, err := dtCode(dt)
	if err != nil {
		return fmt.Errorf("scatter add rows: %w", err)
	}
	return b.execAsync("scatter add rows", func(o *op) error {
		dev := b.anchor(s, d)
		dp, dst, err := o.out(d, dev, dt, false, s)
		if err != nil {
			return err
		}
		sp, sst, _, err := o.in(s, dev)
		if err != nil {
			return err
		}
		if d.rows == 0 || d.cols == 0 || len(idx) == 0 {
			return nil
		}
		dv := b.devs[dev]
		op, err := o.uploadI32(dv, order)
		if err != nil {
			return err
		}
		stp, err := o.uploadI32(dv, start)
		if err != nil {
			return err
		}
		if dst == stBF16 && sst == stBF16 && d.cols%8 == 0 && aligned16(dp, sp) {
			n := int64(d.rows) * int64(d.cols/8)
			return b.launchOn(dv, "scatter_add_rows_bf16x8", [3]int{blocksFor(dv, n, 256), 1, 1}, 256, 0,
				pa(dp), pa(sp), pa(op), pa(stp), la(int64(d.rows)), ia(d.cols), code)
		}
		return b.launchOn(dv, "scatter_add_rows", [3]int{int(min(int64(d.rows), int64(dv.sms)*16)), 1, 1}, 256, 0,
			pa(dp), sa(dst), pa(sp), sa(sst), pa(op), pa(stp), la(int64(d.rows)), ia(d.cols), code)
	})
}

// RouterTopK implements backend.Backend.
func (b *Backend) RouterTopK(logits backend.Tensor, spec backend.RouterSpec, dt backend.DType) ([]int32, []float32, error) {
	l, err := b.tensor("router top-k", logits)
	if err != nil {
		return nil, nil, err
	}
	k, e := spec.TopK, l.cols
	if k <= 0 || k > e {
		return nil, nil, backend.ShapeError("router top-k", "top-%d of %d experts", k, e)
	}
	if k > 32 {
		return nil, nil, fmt.Errorf("router top-k: top-%d is more than the kernel's 32", k)
	}
	code, err := dtCode(dt)
	if err != nil {
		return nil, nil, fmt.Errorf("router top-k: %w", err)
	}
	const warps = 4
	smem := warps * e * 5
	var idx []int32
	var wts []float32
	err = b.exec("router top-k", func(o *op) error {
		dev := b.anchor(l)
		dv := b.devs[dev]
		if smem > 48<<10 {
			return fmt.Errorf("%d experts need %d bytes of shared memory, more than 48 KiB", e, smem)
		}
		lp, lst, _, err := o.in(l, dev)
		if err != nil {
			return err
		}
		n := l.rows * k
		if n == 0 {
			idx, wts = []int32{}, []float32{}
			return nil
		}
		// Indices and weights land in one buffer: one download.
		ip, err := o.scratch(dv, int64(8*n))
		if err != nil {
			return err
		}
		wp := ip + cu.DevicePtr(4*n)
		norm := 0
		if spec.Normalize {
			norm = 1
		}
		if err := b.launchOn(dv, "router_topk", [3]int{(l.rows + warps - 1) / warps, 1, 1}, 32*warps, smem,
			pa(lp), sa(lst), ia(l.rows), ia(e), ia(k), ia(norm), code, pa(ip), pa(wp)); err != nil {
			return err
		}
		idx = make([]int32, n)
		wts = make([]float32, n)
		ib := unsafe.Slice((*byte)(unsafe.Pointer(&idx[0])), 4*n)
		wb := unsafe.Slice((*byte)(unsafe.Pointer(&wts[0])), 4*n)
		return dv.ring.toHost(ip, int64(8*n), func(c []byte, off int64) {
			for len(c) > 0 {
				if off < int64(4*n) {
					m := copy(ib[off:], c)
					c, off = c[m:], off+int64(m)
					continue
				}
				m := copy(wb[off-int64(4*n):], c)
				c, off = c[m:], off+int64(m)
			}
		})
	})
	return idx, wts, err
}

// amaxKey identifies a reduction of a tensor's contents.
type amaxKey struct {
	buf        *buffer
	row0, rows int
	red        backend.Reduction
	version    uint64
}

// Amax implements backend.Backend. A reduction of a tensor that has not
// been written since the same reduction is answered from a cache.
func (b *Backend) Amax(x backend.Tensor, r backend.Reduction) ([]float32, error) {
	xx, err := b.tensor("amax", x)
	if err != nil {
		return nil, err
	}
	n, err := r.Len(xx.rows, xx.cols)
	if err != nil {
		return nil, err
	}
	var out []float32
	err = b.exec("amax", func(o *op) error {
		xp, st, dev, err := o.in(xx, -1)
		if err != nil {
			return err
		}
		key := amaxKey{buf: xx.buf, row0: xx.row0, rows: xx.rows, red: r, version: xx.buf.version}
		if v, ok := b.amax[key]; ok {
			out = append([]float32(nil), v...)
			return nil
		}
		defer func() {
			if out != nil {
				if len(b.amax) >= 256 {
					clear(b.amax)
				}
				b.amax[key] = append([]float32(nil), out...)
			}
		}()
		dv := b.devs[dev]
		total := int64(xx.rows) * int64(xx.cols)
		if n == 0 {
			out = []float32{}
			return nil
		}
		var res cu.DevicePtr
		switch r.Kind {
		case backend.PerTensor:
			if res, err = o.zeros32(dv, 1); err != nil {
				return err
			}
			if total > 0 {
				err = b.launchOn(dv, "amax_tensor", [3]int{blocksFor(dv, total, 256), 1, 1}, 256, 0, pa(xp), sa(st), la(total), pa(res))
			}
		case backend.PerRow:
			if res, err = o.zeros32(dv, n); err != nil {
				return err
			}
			if xx.cols > 0 {
				err = b.launchOn(dv, "amax_rows", [3]int{xx.rows, 1, 1}, 256, 0, pa(xp), sa(st), ia(xx.cols), pa(res))
			}
		case backend.PerColumn:
			if res, err = o.zeros32(dv, n); err != nil {
				return err
			}
			if xx.rows > 0 {
				rowsPer := max(32, (xx.rows+511)/512)
				err = b.launchOn(dv, "amax_cols", [3]int{(xx.cols + 255) / 256, (xx.rows + rowsPer - 1) / rowsPer, 1}, 256, 0,
					pa(xp), sa(st), la(int64(xx.rows)), ia(xx.cols), ia(rowsPer), pa(res))
			}
		case backend.PerBlock:
			if res, err = o.zeros32(dv, n); err != nil {
				return err
			}
			err = b.launchOn(dv, "amax_blocks", [3]int{blocksFor(dv, int64(n), 256), 1, 1}, 256, 0, pa(xp), sa(st), la(int64(n)), ia(r.Block), pa(res))
		default:
			return fmt.Errorf("unknown reduction kind %d", r.Kind)
		}
		if err != nil {
			return err
		}
		bits, err := o.download32(dv, res, n)
		if err != nil {
			return err
		}
		out = amaxValues(bits)
		return nil
	})
	return out, err
}
