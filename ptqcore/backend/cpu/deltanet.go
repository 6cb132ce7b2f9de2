package cpu

import (
	"fmt"
	"math"

	"github.com/ptqgate/ptqgate/ptqcore/backend"
)

var _ backend.LinearAttention = (*Backend)(nil)

// rowStarts returns, for every row of a batch of sequences, the row at
// which its sequence starts, checking that the lengths are positive and
// cover rows exactly.
func rowStarts(op string, seqLens []int, rows int) ([]int, error) {
	total := 0
	for _, n := range seqLens {
		if n <= 0 || n > rows {
			return nil, backend.ShapeError(op, "sequence lengths %v must be positive and sum to the %d rows", seqLens, rows)
		}
		total += n
		if total > rows {
			break
		}
	}
	if total != rows {
		return nil, backend.ShapeError(op, "sequence lengths %v do not sum to the %d rows", seqLens, rows)
	}
	starts := make([]int, 0, rows)
	total = 0
	for _, n := range seqLens {
		for i := 0; i < n; i++ {
			starts = append(starts, total)
		}
		total += n
	}
	return starts, nil
}

// CausalConv1DSilu implements backend.LinearAttention.
func (b *Backend) CausalConv1DSilu(dst, x, w backend.Tensor, seqLens []int, dt backend.DType) error {
	const op = "causal conv1d"
	ts, err := b.getN(op, dst, x, w)
	if err != nil {
		return err
	}
	d, xx, ww := ts[0], ts[1], ts[2]
	c, k := xx.cols, ww.cols
	if ww.rows != c || k < 1 || d.rows != xx.rows || d.cols != c {
		return backend.ShapeError(op, "x [%d,%d], weight [%d,%d] into [%d,%d]", xx.rows, xx.cols, ww.rows, ww.cols, d.rows, d.cols)
	}
	if d == xx && xx.rows > 0 {
		return fmt.Errorf("%s: the destination must not be the input (earlier rows are read after later ones are written)", op)
	}
	starts, err := rowStarts(op, seqLens, xx.rows)
	if err != nil {
		return err
	}
	round, err := rounder(dt)
	if err != nil {
		return err
	}
	b.chunks(xx.rows, rowChunk(c*k), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			out, s0 := d.row(r), starts[r]
			for ch := range out {
				wr := ww.data[ch*k : (ch+1)*k]
				var acc float32
				for j, wv := range wr {
					if src := r - k + 1 + j; src >= s0 {
						acc += float32(wv * xx.data[src*c+ch])
					}
				}
				out[ch] = rnd(round, silu(rnd(round, acc)))
			}
		}
	})
	return nil
}

// sigmoid returns 1/(1+exp(-x)) computed in float64, rounded to float32.
func sigmoid(x float32) float32 { return float32(1 / (1 + math.Exp(-float64(x)))) }

// softplus is torch's softplus (beta 1, threshold 20) in float32:
// x above 20, else log1p(exp(x)) rounded to float32.
func softplus(x float32) float32 {
	if x > 20 {
		return x
	}
	return float32(math.Log1p(math.Exp(float64(x))))
}

// l2norm writes src·rsqrt(Σsrc² + 1e-6) into dst in float32 (the sum of
// the float32 squares accumulated in float64 and rounded once).
func l2norm(dst, src []float32) {
	var ss float64
	for _, v := range src {
		ss += float64(v * v)
	}
	inv := float32(1 / math.Sqrt(float64(float32(ss)+1e-6)))
	for i, v := range src {
		dst[i] = v * inv
	}
}

// GatedDeltaRule implements backend.LinearAttention.
func (b *Backend) GatedDeltaRule(dst, qkv, aProj, bProj, aLog, dtBias backend.Tensor, spec backend.GatedDeltaSpec, dt backend.DType) error {
	const op = "gated delta rule"
	ts, err := b.getN(op, dst, qkv, aProj, bProj, aLog, dtBias)
	if err != nil {
		return err
	}
	d, x, aa, bb, al, db := ts[0], ts[1], ts[2], ts[3], ts[4], ts[5]
	nk, nv, dk, dv := spec.KeyHeads, spec.ValueHeads, spec.KeyDim, spec.ValueDim
	if nk <= 0 || nv <= 0 || dk <= 0 || dv <= 0 || nv%nk != 0 {
		return backend.ShapeError(op, "%d key heads of %d, %d value heads of %d (value heads must be a multiple of key heads)", nk, dk, nv, dv)
	}
	m := x.rows
	if x.cols != spec.QKVCols() || aa.rows != m || aa.cols != nv || bb.rows != m || bb.cols != nv ||
		al.rows*al.cols != nv || db.rows*db.cols != nv || d.rows != m || d.cols != nv*dv {
		return backend.ShapeError(op, "qkv [%d,%d] (want %d columns), a [%d,%d], b [%d,%d], A_log %d and dt_bias %d values (want %d) into [%d,%d]",
			x.rows, x.cols, spec.QKVCols(), aa.rows, aa.cols, bb.rows, bb.cols, al.rows*al.cols, db.rows*db.cols, nv, d.rows, d.cols)
	}
	if _, err := rowStarts(op, spec.SeqLens, m); err != nil {
		return err
	}
	round, err := rounder(dt)
	if err != nil {
		return err
	}
	// Gates per row and value head: β rounded to the model dtype (sigmoid
	// of a model-dtype tensor), the log-decay g in float32.
	beta := make([]float32, m*nv)
	g := make([]float32, m*nv)
	negA := make([]float32, nv)
	for h, v := range al.data {
		negA[h] = -float32(math.Exp(float64(v)))
	}
	for r := 0; r < m; r++ {
		ar, br := aa.row(r), bb.row(r)
		for h := 0; h < nv; h++ {
			beta[r*nv+h] = rnd(round, sigmoid(br[h]))
			g[r*nv+h] = negA[h] * softplus(ar[h]+db.data[h])
		}
	}
	// L2-normalised queries (scaled by dk^-0.5) and keys, float32.
	kd := nk * dk
	qn := make([]float32, m*kd)
	kn := make([]float32, m*kd)
	scale := float32(1 / math.Sqrt(float64(dk)))
	b.chunks(m, rowChunk(2*kd), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			row := x.row(r)
			for h := 0; h < nk; h++ {
				l2norm(qn[r*kd+h*dk:r*kd+(h+1)*dk], row[h*dk:(h+1)*dk])
				l2norm(kn[r*kd+h*dk:r*kd+(h+1)*dk], row[kd+h*dk:kd+(h+1)*dk])
			}
			for i := r * kd; i < (r+1)*kd; i++ {
				qn[i] *= scale
			}
		}
	})
	// The recurrence: one task per (sequence, value head).
	starts := make([]int, len(spec.SeqLens)+1)
	for i, n := range spec.SeqLens {
		starts[i+1] = starts[i] + n
	}
	group := nv / nk
	b.parallel(len(spec.SeqLens)*nv, func(task int) {
		s, h := task/nv, task%nv
		kh := h / group
		state := make([]float32, dk*dv)
		mem := make([]float32, dv)
		delta := make([]float32, dv)
		for t := starts[s]; t < starts[s+1]; t++ {
			decay := float32(math.Exp(float64(g[t*nv+h])))
			for i := range state {
				state[i] *= decay
			}
			k := kn[t*kd+kh*dk : t*kd+(kh+1)*dk]
			q := qn[t*kd+kh*dk : t*kd+(kh+1)*dk]
			v := x.row(t)[2*kd+h*dv : 2*kd+(h+1)*dv]
			clear(mem)
			for i, ki := range k {
				for j, sv := range state[i*dv : (i+1)*dv] {
					mem[j] += float32(sv * ki)
				}
			}
			bt := beta[t*nv+h]
			for j := range delta {
				delta[j] = (v[j] - mem[j]) * bt
			}
			for i, ki := range k {
				row := state[i*dv : (i+1)*dv]
				for j, dj := range delta {
					row[j] += float32(ki * dj)
				}
			}
			clear(mem) // reused as the output accumulator
			for i, qi := range q {
				for j, sv := range state[i*dv : (i+1)*dv] {
					mem[j] += float32(sv * qi)
				}
			}
			out := d.row(t)[h*dv : (h+1)*dv]
			for j, o := range mem {
				out[j] = rnd(round, o)
			}
		}
	})
	return nil
}
