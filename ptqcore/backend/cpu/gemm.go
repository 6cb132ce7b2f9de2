package cpu

import (
	"github.com/ptqgate/ptqgate/ptqcore/backend"
)

// Blocking of the GEMM: a task computes up to gemmRowBlock rows of x
// against a block of weight rows that fits in about gemmWeightBytes of
// cache; inside a task 4 × 2 register tiles walk the whole K dimension.
const (
	gemmRowBlock    = 64
	gemmWeightBytes = 96 << 10
)

// Linear implements backend.Backend.
func (b *Backend) Linear(dst, x, w, bias backend.Tensor, dt backend.DType) error {
	ts, err := b.getN("linear", dst, x, w)
	if err != nil {
		return err
	}
	d, xx, ww := ts[0], ts[1], ts[2]
	if xx.cols != ww.cols || d.rows != xx.rows || d.cols != ww.rows {
		return backend.ShapeError("linear", "x [%d,%d] · w[%d,%d]ᵀ into [%d,%d]", xx.rows, xx.cols, ww.rows, ww.cols, d.rows, d.cols)
	}
	var bv []float32
	if bias != nil {
		bt, err := b.get("linear", bias)
		if err != nil {
			return err
		}
		if bt.rows*bt.cols != ww.rows {
			return backend.ShapeError("linear", "bias of %d values for %d outputs", bt.rows*bt.cols, ww.rows)
		}
		bv = bt.data
	}
	round, err := rounder(dt)
	if err != nil {
		return err
	}
	b.gemm(d.data, xx.data, ww.data, xx.rows, ww.rows, xx.cols, bv, round)
	return nil
}

// GroupedLinear implements backend.Backend.
func (b *Backend) GroupedLinear(dst, x, w backend.Tensor, offsets []int, dt backend.DType) ([]float32, error) {
	ts, err := b.getN("grouped linear", dst, x, w)
	if err != nil {
		return nil, err
	}
	d, xx, ww := ts[0], ts[1], ts[2]
	e := len(offsets) - 1
	if e < 1 || offsets[0] != 0 || offsets[e] != xx.rows {
		return nil, backend.ShapeError("grouped linear", "offsets %v for %d rows", offsets, xx.rows)
	}
	for i := 0; i < e; i++ {
		if offsets[i+1] < offsets[i] {
			return nil, backend.ShapeError("grouped linear", "offsets %v decrease at expert %d", offsets, i)
		}
	}
	n := d.cols
	if xx.cols != ww.cols || d.rows != xx.rows || ww.rows != e*n {
		return nil, backend.ShapeError("grouped linear", "x [%d,%d] · %d experts of w[%d,%d]ᵀ into [%d,%d]", xx.rows, xx.cols, e, ww.rows, ww.cols, d.rows, d.cols)
	}
	round, err := rounder(dt)
	if err != nil {
		return nil, err
	}
	k := xx.cols
	amax := make([]float32, e)
	nan := make([]bool, e)
	// Per-expert input amax: one task per expert segment.
	b.parallel(e, func(i int) {
		amax[i], nan[i] = absMax(xx.data[offsets[i]*k : offsets[i+1]*k])
	})
	for i := range amax {
		if nan[i] {
			amax[i] = nanF32
		}
	}
	// GEMM tasks: (expert, row block, weight block).
	nb := weightBlock(k, n)
	type task struct{ e, m0, m1, n0, n1 int }
	var tasks []task
	for i := 0; i < e; i++ {
		for m0 := offsets[i]; m0 < offsets[i+1]; m0 += gemmRowBlock {
			m1 := min(m0+gemmRowBlock, offsets[i+1])
			for n0 := 0; n0 < n; n0 += nb {
				tasks = append(tasks, task{i, m0, m1, n0, min(n0+nb, n)})
			}
		}
	}
	b.parallel(len(tasks), func(t int) {
		tk := tasks[t]
		wexp := ww.data[tk.e*n*k : (tk.e+1)*n*k]
		gemmBlock(d.data, n, xx.data, wexp, k, tk.m0, tk.m1, tk.n0, tk.n1, nil, round)
	})
	return amax, nil
}

// weightBlock is the number of weight rows per task (even, ≥ 2).
func weightBlock(k, n int) int {
	nb := gemmWeightBytes / (4 * max(k, 1))
	nb &^= 1
	if nb < 2 {
		nb = 2
	}
	return min(nb, max(n, 2))
}

// gemm computes dst[m,n] = round(Σ_k x[m,k]·w[n,k] + bias[n]) in parallel.
func (b *Backend) gemm(dst, x, w []float32, m, n, k int, bias []float32, round func(float32) float32) {
	nb := weightBlock(k, n)
	rowBlocks := (m + gemmRowBlock - 1) / gemmRowBlock
	colBlocks := (n + nb - 1) / nb
	b.parallel(rowBlocks*colBlocks, func(t int) {
		rb, cb := t/colBlocks, t%colBlocks
		m0, n0 := rb*gemmRowBlock, cb*nb
		gemmBlock(dst, n, x, w, k, m0, min(m0+gemmRowBlock, m), n0, min(n0+nb, n), bias, round)
	})
}

// gemmBlock computes rows [m0,m1) × cols [n0,n1) of dst (row stride ldd)
// from x rows (stride k) and w rows (stride k).
func gemmBlock(dst []float32, ldd int, x, w []float32, k, m0, m1, n0, n1 int, bias []float32, round func(float32) float32) {
	store := func(i, j int, acc float32) {
		if bias != nil {
			acc += bias[j]
		}
		dst[i*ldd+j] = rnd(round, acc)
	}
	j := n0
	for ; j+2 <= n1; j += 2 {
		w0, w1 := w[j*k:(j+1)*k], w[(j+1)*k:(j+2)*k]
		i := m0
		for ; i+4 <= m1; i += 4 {
			c00, c01, c10, c11, c20, c21, c30, c31 := dot4x2(x[i*k:(i+1)*k], x[(i+1)*k:(i+2)*k], x[(i+2)*k:(i+3)*k], x[(i+3)*k:(i+4)*k], w0, w1)
			store(i, j, c00)
			store(i, j+1, c01)
			store(i+1, j, c10)
			store(i+1, j+1, c11)
			store(i+2, j, c20)
			store(i+2, j+1, c21)
			store(i+3, j, c30)
			store(i+3, j+1, c31)
		}
		for ; i < m1; i++ {
			c0, c1 := dot1x2(x[i*k:(i+1)*k], w0, w1)
			store(i, j, c0)
			store(i, j+1, c1)
		}
	}
	for ; j < n1; j++ {
		w0 := w[j*k : (j+1)*k]
		for i := m0; i < m1; i++ {
			store(i, j, dot(x[i*k:(i+1)*k], w0))
		}
	}
}

// dot4x2 returns the 8 dot products of 4 x rows with 2 w rows, each
// accumulated in float32 in ascending index order (explicit float32
// conversions forbid fused multiply-add, keeping every kernel bit-identical).
func dot4x2(x0, x1, x2, x3, w0, w1 []float32) (c00, c01, c10, c11, c20, c21, c30, c31 float32) {
	n := len(x0)
	x1, x2, x3, w0, w1 = x1[:n], x2[:n], x3[:n], w0[:n], w1[:n]
	for p := 0; p < n; p++ {
		a0, a1, a2, a3 := x0[p], x1[p], x2[p], x3[p]
		b0, b1 := w0[p], w1[p]
		c00 += float32(a0 * b0)
		c01 += float32(a0 * b1)
		c10 += float32(a1 * b0)
		c11 += float32(a1 * b1)
		c20 += float32(a2 * b0)
		c21 += float32(a2 * b1)
		c30 += float32(a3 * b0)
		c31 += float32(a3 * b1)
	}
	return
}

// dot1x2 returns the dot products of one x row with 2 w rows.
func dot1x2(x0, w0, w1 []float32) (c0, c1 float32) {
	n := len(x0)
	w0, w1 = w0[:n], w1[:n]
	for p := 0; p < n; p++ {
		a := x0[p]
		c0 += float32(a * w0[p])
		c1 += float32(a * w1[p])
	}
	return
}

// dot1x4 returns the dot products of one x row with 4 w rows.
func dot1x4(x0, w0, w1, w2, w3 []float32) (c0, c1, c2, c3 float32) {
	n := len(x0)
	w0, w1, w2, w3 = w0[:n], w1[:n], w2[:n], w3[:n]
	for p := 0; p < n; p++ {
		a := x0[p]
		c0 += float32(a * w0[p])
		c1 += float32(a * w1[p])
		c2 += float32(a * w2[p])
		c3 += float32(a * w3[p])
	}
	return
}

// dot returns Σ a[p]·b[p] accumulated in float32 in ascending p.
func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s float32
	for p := range a {
		s += float32(a[p] * b[p])
	}
	return s
}
