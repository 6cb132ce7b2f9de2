package cpu

import (
	"fmt"
	"math"

	"github.com/ptqgate/ptqgate/ptqcore/backend"
)

var nanF32 = float32(math.NaN())

// elementwise work below this many values runs on one goroutine.
const minParallelValues = 1 << 14

// rowChunk is the minimum number of rows per task for row-wise work on
// rows of cols values.
func rowChunk(cols int) int {
	return max(1, minParallelValues/max(cols, 1))
}

// GatherRows implements backend.Backend.
func (b *Backend) GatherRows(dst, src backend.Tensor, idx []int32) error {
	ts, err := b.getN("gather rows", dst, src)
	if err != nil {
		return err
	}
	d, s := ts[0], ts[1]
	if d.cols != s.cols || len(idx) != d.rows {
		return backend.ShapeError("gather rows", "%d indices from [%d,%d] into [%d,%d]", len(idx), s.rows, s.cols, d.rows, d.cols)
	}
	for r, i := range idx {
		if i < 0 || int(i) >= s.rows {
			return backend.ShapeError("gather rows", "index %d at row %d outside [0, %d)", i, r, s.rows)
		}
	}
	b.chunks(d.rows, rowChunk(d.cols), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			copy(d.row(r), s.row(int(idx[r])))
		}
	})
	return nil
}

// RMSNorm implements backend.Backend.
func (b *Backend) RMSNorm(dst, x, w backend.Tensor, group int, eps float32, kind backend.NormKind, dt backend.DType) error {
	ts, err := b.getN("rmsnorm", dst, x, w)
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
	round, err := rounder(dt)
	if err != nil {
		return err
	}
	wv := ww.data
	b.chunks(xx.rows, rowChunk(xx.cols), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			in, out := xx.row(r), d.row(r)
			for g0 := 0; g0 < len(in); g0 += group {
				xs, ys := in[g0:g0+group], out[g0:g0+group]
				var ss float64
				for _, v := range xs {
					ss += float64(v) * float64(v)
				}
				variance := float32(ss / float64(group))
				inv := float32(1 / math.Sqrt(float64(variance+eps)))
				if kind == backend.NormWeighted {
					for i, v := range xs {
						ys[i] = rnd(round, wv[i]*rnd(round, v*inv))
					}
				} else {
					for i, v := range xs {
						ys[i] = rnd(round, (v*inv)*(1+wv[i]))
					}
				}
			}
		}
	})
	return nil
}

// ropeKey identifies a cos/sin table.
type ropeKey struct {
	theta     float64
	rotaryDim int
	dt        backend.DType
}

// ropeTable holds round(cos) and round(sin) per position and frequency.
type ropeTable struct {
	positions int
	cos, sin  []float32 // [positions][rotaryDim/2]
}

// ropeTableFor returns a table covering positions [0, maxPos].
func (b *Backend) ropeTableFor(theta float64, rotaryDim int, maxPos int, dt backend.DType, round func(float32) float32) *ropeTable {
	key := ropeKey{theta, rotaryDim, dt}
	b.mu.Lock()
	defer b.mu.Unlock()
	if t, ok := b.rope[key]; ok && t.positions > maxPos {
		return t
	}
	half := rotaryDim / 2
	positions := max(maxPos+1, 64)
	t := &ropeTable{positions: positions, cos: make([]float32, positions*half), sin: make([]float32, positions*half)}
	invFreq := make([]float32, half)
	for i := range invFreq {
		// transformers: 1.0 / (base ** (arange(0, dim, 2).float() / dim)), in float32.
		e := float32(2*i) / float32(rotaryDim)
		invFreq[i] = 1 / float32(math.Pow(theta, float64(e)))
	}
	for p := 0; p < positions; p++ {
		for i, f := range invFreq {
			a := float32(p) * f
			t.cos[p*half+i] = rnd(round, float32(math.Cos(float64(a))))
			t.sin[p*half+i] = rnd(round, float32(math.Sin(float64(a))))
		}
	}
	b.rope[key] = t
	return t
}

// RoPE implements backend.Backend.
func (b *Backend) RoPE(x backend.Tensor, spec backend.RoPESpec, dt backend.DType) error {
	xx, err := b.get("rope", x)
	if err != nil {
		return err
	}
	if spec.Heads <= 0 || spec.HeadDim <= 0 || xx.cols != spec.Heads*spec.HeadDim || spec.RotaryDim <= 0 ||
		spec.RotaryDim%2 != 0 || spec.RotaryDim > spec.HeadDim || len(spec.Positions) != xx.rows || !(spec.Theta > 0) {
		return backend.ShapeError("rope", "x [%d,%d] with %d heads of %d (rotary %d, theta %g), %d positions",
			xx.rows, xx.cols, spec.Heads, spec.HeadDim, spec.RotaryDim, spec.Theta, len(spec.Positions))
	}
	round, err := rounder(dt)
	if err != nil {
		return err
	}
	maxPos := 0
	for r, p := range spec.Positions {
		if p < 0 {
			return backend.ShapeError("rope", "negative position %d at row %d", p, r)
		}
		maxPos = max(maxPos, int(p))
	}
	tab := b.ropeTableFor(spec.Theta, spec.RotaryDim, maxPos, dt, round)
	half := spec.RotaryDim / 2
	b.chunks(xx.rows, rowChunk(xx.cols), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			p := int(spec.Positions[r])
			cs, sn := tab.cos[p*half:(p+1)*half], tab.sin[p*half:(p+1)*half]
			row := xx.row(r)
			for h := 0; h < spec.Heads; h++ {
				v := row[h*spec.HeadDim : h*spec.HeadDim+spec.RotaryDim]
				for i := 0; i < half; i++ {
					x1, x2 := v[i], v[i+half]
					// q*cos + rotate_half(q)*sin with rotate_half(q) = (-q2, q1);
					// cos and sin repeat with period half (cat(freqs, freqs)).
					v[i] = rnd(round, rnd(round, x1*cs[i])+rnd(round, -x2*sn[i]))
					v[i+half] = rnd(round, rnd(round, x2*cs[i])+rnd(round, x1*sn[i]))
				}
			}
		}
	})
	return nil
}

// Attention implements backend.Backend.
func (b *Backend) Attention(dst, q, k, v backend.Tensor, spec backend.AttentionSpec, dt backend.DType) error {
	ts, err := b.getN("attention", dst, q, k, v)
	if err != nil {
		return err
	}
	d, qq, kk, vv := ts[0], ts[1], ts[2], ts[3]
	hd, nh, nkv := spec.HeadDim, spec.Heads, spec.KVHeads
	total := 0
	for _, n := range spec.SeqLens {
		if n <= 0 {
			return backend.ShapeError("attention", "sequence lengths %v must be positive", spec.SeqLens)
		}
		total += n
	}
	if hd <= 0 || nh <= 0 || nkv <= 0 || nh%nkv != 0 || qq.cols != nh*hd || kk.cols != nkv*hd || vv.cols != nkv*hd ||
		d.cols != nh*hd || qq.rows != total || kk.rows != total || vv.rows != total || d.rows != total {
		return backend.ShapeError("attention", "q [%d,%d] k [%d,%d] v [%d,%d] into [%d,%d] with %d heads, %d kv heads of %d, sequences %v",
			qq.rows, qq.cols, kk.rows, kk.cols, vv.rows, vv.cols, d.rows, d.cols, nh, nkv, hd, spec.SeqLens)
	}
	round, err := rounder(dt)
	if err != nil {
		return err
	}
	starts := make([]int, len(spec.SeqLens))
	for i := 1; i < len(starts); i++ {
		starts[i] = starts[i-1] + spec.SeqLens[i-1]
	}
	group := nh / nkv
	// One task per (sequence, query head, block of query rows).
	const qBlock = 32
	type task struct{ seq, head, t0, t1 int }
	var tasks []task
	for s, n := range spec.SeqLens {
		for h := 0; h < nh; h++ {
			for t0 := 0; t0 < n; t0 += qBlock {
				tasks = append(tasks, task{s, h, t0, min(t0+qBlock, n)})
			}
		}
	}
	maxLen := 0
	for _, n := range spec.SeqLens {
		maxLen = max(maxLen, n)
	}
	b.parallel(len(tasks), func(ti int) {
		tk := tasks[ti]
		base := starts[tk.seq]
		kvh := tk.head / group
		scores := make([]float32, maxLen)
		acc := make([]float32, hd)
		for t := tk.t0; t < tk.t1; t++ {
			qrow := qq.row(base + t)[tk.head*hd : (tk.head+1)*hd]
			key := func(j int) []float32 { return kk.row(base + j)[kvh*hd : (kvh+1)*hd] }
			j := 0
			for ; j+4 <= t+1; j += 4 {
				scores[j], scores[j+1], scores[j+2], scores[j+3] = dot1x4(qrow, key(j), key(j+1), key(j+2), key(j+3))
			}
			for ; j <= t; j++ {
				scores[j] = dot(qrow, key(j))
			}
			m := float32(math.Inf(-1))
			for j := 0; j <= t; j++ {
				s := rnd(round, rnd(round, scores[j])*spec.Scale)
				scores[j] = s
				if s > m {
					m = s
				}
			}
			var sum float64
			for j := 0; j <= t; j++ {
				e := float32(math.Exp(float64(scores[j] - m)))
				scores[j] = e
				sum += float64(e)
			}
			s32 := float32(sum)
			for j := 0; j <= t; j++ {
				scores[j] = rnd(round, scores[j]/s32)
			}
			clear(acc)
			for j := 0; j <= t; j++ {
				p := scores[j]
				vrow := vv.row(base + j)[kvh*hd : (kvh+1)*hd]
				for i, x := range vrow {
					acc[i] += float32(p * x)
				}
			}
			out := d.row(base + t)[tk.head*hd : (tk.head+1)*hd]
			for i, a := range acc {
				out[i] = rnd(round, a)
			}
		}
	})
	return nil
}

// silu returns x·sigmoid(x) computed in float64, rounded to float32.
func silu(x float32) float32 {
	v := float64(x)
	return float32(v / (1 + math.Exp(-v)))
}

// SiluMul implements backend.Backend.
func (b *Backend) SiluMul(dst, gu backend.Tensor, dt backend.DType) error {
	ts, err := b.getN("silu·mul", dst, gu)
	if err != nil {
		return err
	}
	d, g := ts[0], ts[1]
	if g.cols != 2*d.cols || g.rows != d.rows {
		return backend.ShapeError("silu·mul", "[%d,%d] into [%d,%d]", g.rows, g.cols, d.rows, d.cols)
	}
	round, err := rounder(dt)
	if err != nil {
		return err
	}
	n := d.cols
	b.chunks(d.rows, rowChunk(g.cols), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			in, out := g.row(r), d.row(r)
			gate, up := in[:n], in[n:]
			for i := range out {
				out[i] = rnd(round, rnd(round, silu(gate[i]))*up[i])
			}
		}
	})
	return nil
}

// Add implements backend.Backend.
func (b *Backend) Add(dst, x, y backend.Tensor, dt backend.DType) error {
	ts, err := b.getN("add", dst, x, y)
	if err != nil {
		return err
	}
	d, a, c := ts[0], ts[1], ts[2]
	if a.rows != c.rows || a.cols != c.cols || d.rows != a.rows || d.cols != a.cols {
		return backend.ShapeError("add", "[%d,%d] + [%d,%d] into [%d,%d]", a.rows, a.cols, c.rows, c.cols, d.rows, d.cols)
	}
	round, err := rounder(dt)
	if err != nil {
		return err
	}
	b.chunks(len(d.data), minParallelValues, func(lo, hi int) {
		dv, av, cv := d.data[lo:hi], a.data[lo:hi], c.data[lo:hi]
		for i := range dv {
			dv[i] = rnd(round, av[i]+cv[i])
		}
	})
	return nil
}

// ScaleRows implements backend.Backend.
func (b *Backend) ScaleRows(x backend.Tensor, s []float32, dt backend.DType) error {
	xx, err := b.get("scale rows", x)
	if err != nil {
		return err
	}
	if len(s) != xx.rows {
		return backend.ShapeError("scale rows", "%d scales for %d rows", len(s), xx.rows)
	}
	round, err := rounder(dt)
	if err != nil {
		return err
	}
	b.chunks(xx.rows, rowChunk(xx.cols), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			row, f := xx.row(r), s[r]
			for i, v := range row {
				row[i] = rnd(round, v*f)
			}
		}
	})
	return nil
}

// ScatterAddRows implements backend.Backend.
func (b *Backend) ScatterAddRows(dst, src backend.Tensor, idx []int32, dt backend.DType) error {
	ts, err := b.getN("scatter add rows", dst, src)
	if err != nil {
		return err
	}
	d, s := ts[0], ts[1]
	if d.cols != s.cols || len(idx) != s.rows {
		return backend.ShapeError("scatter add rows", "%d indices for [%d,%d] into [%d,%d]", len(idx), s.rows, s.cols, d.rows, d.cols)
	}
	// Source rows per destination row, in ascending source order (a
	// counting sort), so destination rows can be summed in parallel.
	start := make([]int, d.rows+1)
	for r, i := range idx {
		if i < 0 || int(i) >= d.rows {
			return backend.ShapeError("scatter add rows", "index %d at row %d outside [0, %d)", i, r, d.rows)
		}
		start[i+1]++
	}
	for i := 0; i < d.rows; i++ {
		start[i+1] += start[i]
	}
	order := make([]int32, len(idx))
	fill := make([]int, d.rows)
	copy(fill, start[:d.rows])
	for r, i := range idx {
		order[fill[i]] = int32(r)
		fill[i]++
	}
	round, err := rounder(dt)
	if err != nil {
		return err
	}
	b.chunks(d.rows, rowChunk(d.cols), func(lo, hi int) {
		for t := lo; t < hi; t++ {
			out := d.row(t)
			for _, r := range order[start[t]:start[t+1]] {
				in := s.row(int(r))
				for i, v := range in {
					out[i] = rnd(round, out[i]+v)
				}
			}
		}
	})
	return nil
}

// RouterTopK implements backend.Backend.
func (b *Backend) RouterTopK(logits backend.Tensor, spec backend.RouterSpec, dt backend.DType) ([]int32, []float32, error) {
	l, err := b.get("router top-k", logits)
	if err != nil {
		return nil, nil, err
	}
	k, e := spec.TopK, l.cols
	if k <= 0 || k > e {
		return nil, nil, backend.ShapeError("router top-k", "top-%d of %d experts", k, e)
	}
	round, err := rounder(dt)
	if err != nil {
		return nil, nil, err
	}
	idx := make([]int32, l.rows*k)
	wts := make([]float32, l.rows*k)
	b.chunks(l.rows, rowChunk(e), func(lo, hi int) {
		p := make([]float32, e)
		for r := lo; r < hi; r++ {
			softmax(p, l.row(r))
			ri, rw := idx[r*k:(r+1)*k], wts[r*k:(r+1)*k]
			topK(p, ri, rw)
			if spec.Normalize {
				var s float32
				for _, v := range rw {
					s += v
				}
				for i := range rw {
					rw[i] /= s
				}
			}
			roundAll(round, rw)
		}
	})
	return idx, wts, nil
}

// softmax writes softmax(x) in float32 (exp in float64, sum in float64).
func softmax(p, x []float32) {
	m := float32(math.Inf(-1))
	for _, v := range x {
		if v > m {
			m = v
		}
	}
	var sum float64
	for i, v := range x {
		e := float32(math.Exp(float64(v - m)))
		p[i] = e
		sum += float64(e)
	}
	s := float32(sum)
	for i := range p {
		p[i] /= s
	}
}

// topK writes the k largest values of p (descending; ties to the lower
// index) and their indices. NaN sorts below every number.
func topK(p []float32, idx []int32, val []float32) {
	k := len(idx)
	n := 0
	for i, v := range p {
		// insertion into the sorted prefix of length n (≤ k)
		pos := n
		for pos > 0 && greater(v, val[pos-1]) {
			pos--
		}
		if pos >= k {
			continue
		}
		if n < k {
			n++
		}
		copy(val[pos+1:n], val[pos:n-1])
		copy(idx[pos+1:n], idx[pos:n-1])
		val[pos], idx[pos] = v, int32(i)
	}
}

// greater orders values for top-k: a beats b when a > b, or b is NaN and a is not.
func greater(a, b float32) bool {
	if b != b {
		return a == a
	}
	return a > b
}

// absMax returns max|x| over xs and whether a NaN was seen. It compares
// the magnitudes' bit patterns, which order like the values for finite
// numbers and infinities and put every NaN above +Inf, so the loop has
// no data-dependent branches.
func absMax(xs []float32) (float32, bool) {
	var m uint32
	for _, v := range xs {
		m = max(m, math.Float32bits(v)&0x7fffffff)
	}
	if m > 0x7f800000 {
		return 0, true
	}
	return math.Float32frombits(m), false
}

// Amax implements backend.Backend.
func (b *Backend) Amax(x backend.Tensor, r backend.Reduction) ([]float32, error) {
	xx, err := b.get("amax", x)
	if err != nil {
		return nil, err
	}
	n, err := r.Len(xx.rows, xx.cols)
	if err != nil {
		return nil, err
	}
	out := make([]float32, n)
	switch r.Kind {
	case backend.PerTensor:
		var parts []float32
		var nans []bool
		size := max(minParallelValues, (len(xx.data)+4*b.workers-1)/(4*b.workers))
		count := (len(xx.data) + size - 1) / size
		parts, nans = make([]float32, count), make([]bool, count)
		b.parallel(count, func(i int) {
			parts[i], nans[i] = absMax(xx.data[i*size : min((i+1)*size, len(xx.data))])
		})
		for i, v := range parts {
			if nans[i] {
				out[0] = nanF32
				break
			}
			out[0] = max(out[0], v)
		}
	case backend.PerRow:
		b.chunks(xx.rows, rowChunk(xx.cols), func(lo, hi int) {
			for i := lo; i < hi; i++ {
				out[i] = amaxValue(absMax(xx.row(i)))
			}
		})
	case backend.PerColumn:
		nan := make([]bool, xx.cols)
		for i := 0; i < xx.rows; i++ {
			for j, v := range xx.row(i) {
				if v < 0 {
					v = -v
				}
				if v > out[j] {
					out[j] = v
				} else if v != v {
					nan[j] = true
				}
			}
		}
		for j := range out {
			if nan[j] {
				out[j] = nanF32
			}
		}
	case backend.PerBlock:
		blocks := xx.cols / r.Block
		b.chunks(xx.rows, rowChunk(xx.cols), func(lo, hi int) {
			for i := lo; i < hi; i++ {
				row := xx.row(i)
				for j := 0; j < blocks; j++ {
					out[i*blocks+j] = amaxValue(absMax(row[j*r.Block : (j+1)*r.Block]))
				}
			}
		})
	}
	return out, nil
}

// amaxValue folds the NaN flag of absMax into the value.
func amaxValue(m float32, nan bool) float32 {
	if nan {
		return nanF32
	}
	return m
}
