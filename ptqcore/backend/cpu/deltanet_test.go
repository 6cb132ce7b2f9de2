package cpu_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/ptqgate/ptqgate/ptqcore/backend"
	"github.com/ptqgate/ptqgate/ptqcore/backend/cpu"
)

func silu64(x float64) float64    { return x / (1 + math.Exp(-x)) }
func sigmoid64(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// TestCausalConv1DSilu compares with a float64 evaluation of the causal
// depthwise convolution per sequence (no leakage across sequences), and
// checks that bf16 outputs are bf16 values within one bf16 step.
func TestCausalConv1DSilu(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 11))
	b := cpu.New()
	const c, k = 6, 4
	seqs := []int{2, 5, 1, 7}
	rows := 15
	for _, dt := range []backend.DType{backend.F32, backend.BF16} {
		xv, wv := randVals(r, rows*c, 1, dt), randVals(r, c*k, 0.5, dt)
		x, w, dst := upload(t, b, rows, c, xv), upload(t, b, c, k, wv), alloc(t, b, rows, c)
		if err := b.CausalConv1DSilu(dst, x, w, seqs, dt); err != nil {
			t.Fatal(err)
		}
		got := data(t, dst)
		start := 0
		for _, n := range seqs {
			for tt := start; tt < start+n; tt++ {
				for ch := 0; ch < c; ch++ {
					var acc float64
					for j := 0; j < k; j++ {
						if src := tt - k + 1 + j; src >= start {
							acc += float64(wv[ch*k+j]) * float64(xv[src*c+ch])
						}
					}
					want := silu64(acc)
					tol := 1e-6 * math.Max(1, math.Abs(want))
					if dt == backend.BF16 {
						tol = math.Abs(want)/64 + 1e-6
						if v := got[tt*c+ch]; roundFn(dt)(v) != v {
							t.Fatalf("bf16 output %g is not a bf16 value", v)
						}
					}
					if d := math.Abs(float64(got[tt*c+ch]) - want); d > tol {
						t.Errorf("%v: row %d channel %d = %g, want %g", dt, tt, ch, got[tt*c+ch], want)
					}
				}
			}
			start += n
		}
	}
}

// deltaRef is an independent float64 evaluation of the gated delta rule in
// transformers' chunked form (torch_chunk_gated_delta_rule: UT transform
// by forward substitution, inter- and intra-chunk attention), for one
// sequence and one value head whose q, k are already normalised and q
// scaled.
func deltaRef(q, k, v [][]float64, beta, g []float64, chunk int) [][]float64 {
	n, dk, dv := len(q), len(q[0]), len(v[0])
	state := make([][]float64, dk)
	for i := range state {
		state[i] = make([]float64, dv)
	}
	out := make([][]float64, n)
	for c0 := 0; c0 < n; c0 += chunk {
		c1 := min(c0+chunk, n)
		m := c1 - c0
		cum := make([]float64, m)
		for i := 0; i < m; i++ {
			cum[i] = g[c0+i]
			if i > 0 {
				cum[i] += cum[i-1]
			}
		}
		dotp := func(a, b []float64) float64 {
			s := 0.0
			for i := range a {
				s += a[i] * b[i]
			}
			return s
		}
		// Solve (I + L) U = β·v and (I + L) W = β·k·exp(cum), L[i][j] =
		// β_i (k_i·k_j) exp(cum_i − cum_j) for j < i.
		u := make([][]float64, m)
		w := make([][]float64, m)
		for i := 0; i < m; i++ {
			bi := beta[c0+i]
			u[i] = make([]float64, dv)
			w[i] = make([]float64, dk)
			for j := range u[i] {
				u[i][j] = bi * v[c0+i][j]
			}
			for j := range w[i] {
				w[i][j] = bi * k[c0+i][j] * math.Exp(cum[i])
			}
			for j := 0; j < i; j++ {
				l := bi * dotp(k[c0+i], k[c0+j]) * math.Exp(cum[i]-cum[j])
				for x := range u[i] {
					u[i][x] -= l * u[j][x]
				}
				for x := range w[i] {
					w[i][x] -= l * w[j][x]
				}
			}
		}
		vnew := make([][]float64, m)
		for i := 0; i < m; i++ {
			vnew[i] = make([]float64, dv)
			for x := 0; x < dv; x++ {
				s := u[i][x]
				for y := 0; y < dk; y++ {
					s -= w[i][y] * state[y][x]
				}
				vnew[i][x] = s
			}
		}
		for i := 0; i < m; i++ {
			o := make([]float64, dv)
			for x := 0; x < dv; x++ {
				for y := 0; y < dk; y++ {
					o[x] += q[c0+i][y] * math.Exp(cum[i]) * state[y][x]
				}
			}
			for j := 0; j <= i; j++ {
				a := dotp(q[c0+i], k[c0+j]) * math.Exp(cum[i]-cum[j])
				for x := range o {
					o[x] += a * vnew[j][x]
				}
			}
			out[c0+i] = o
		}
		last := cum[m-1]
		for y := 0; y < dk; y++ {
			for x := 0; x < dv; x++ {
				s := state[y][x] * math.Exp(last)
				for j := 0; j < m; j++ {
					s += k[c0+j][y] * math.Exp(last-cum[j]) * vnew[j][x]
				}
				state[y][x] = s
			}
		}
	}
	return out
}

// TestGatedDeltaRule compares the float32 recurrence with the float64
// chunked form (chunk 3, so several chunks and a partial one) for
// grouped value heads over two sequences, checks the first row of each
// sequence against its closed form o = β·v·(q̂·k̂)/√dk, and checks that
// bf16 outputs are bf16 values.
func TestGatedDeltaRule(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 12))
	b := cpu.New()
	spec := backend.GatedDeltaSpec{KeyHeads: 2, ValueHeads: 4, KeyDim: 5, ValueDim: 3, SeqLens: []int{7, 4}}
	rows, kd := 11, spec.KeyHeads*spec.KeyDim
	for _, dt := range []backend.DType{backend.F32, backend.BF16} {
		round := roundFn(dt)
		qkvv := randVals(r, rows*spec.QKVCols(), 1, dt)
		av, bv := randVals(r, rows*spec.ValueHeads, 1, dt), randVals(r, rows*spec.ValueHeads, 1, dt)
		alog, dtb := randVals(r, spec.ValueHeads, 0.5, dt), randVals(r, spec.ValueHeads, 0.5, dt)
		alog[0] = 30 // a huge decay rate: the state is forgotten at every step
		av[1] = 25   // softplus above its threshold
		qkv := upload(t, b, rows, spec.QKVCols(), qkvv)
		a, bb := upload(t, b, rows, spec.ValueHeads, av), upload(t, b, rows, spec.ValueHeads, bv)
		al, db := upload(t, b, 1, spec.ValueHeads, alog), upload(t, b, 1, spec.ValueHeads, dtb)
		dst := alloc(t, b, rows, spec.ValueHeads*spec.ValueDim)
		if err := b.GatedDeltaRule(dst, qkv, a, bb, al, db, spec, dt); err != nil {
			t.Fatal(err)
		}
		got := data(t, dst)
		norm := func(x []float32, scale float64) []float64 {
			var ss float64
			for _, v := range x {
				ss += float64(v) * float64(v)
			}
			out := make([]float64, len(x))
			for i, v := range x {
				out[i] = float64(v) / math.Sqrt(ss+1e-6) * scale
			}
			return out
		}
		start := 0
		for _, n := range spec.SeqLens {
			for h := 0; h < spec.ValueHeads; h++ {
				kh := h / (spec.ValueHeads / spec.KeyHeads)
				var q, k, v [][]float64
				var beta, g []float64
				for tt := start; tt < start+n; tt++ {
					row := qkvv[tt*spec.QKVCols() : (tt+1)*spec.QKVCols()]
					q = append(q, norm(row[kh*spec.KeyDim:(kh+1)*spec.KeyDim], 1/math.Sqrt(float64(spec.KeyDim))))
					k = append(k, norm(row[kd+kh*spec.KeyDim:kd+(kh+1)*spec.KeyDim], 1))
					vv := make([]float64, spec.ValueDim)
					for j := range vv {
						vv[j] = float64(row[2*kd+h*spec.ValueDim+j])
					}
					v = append(v, vv)
					beta = append(beta, float64(round(float32(sigmoid64(float64(bv[tt*spec.ValueHeads+h]))))))
					x := float64(av[tt*spec.ValueHeads+h]) + float64(dtb[h])
					sp := math.Log1p(math.Exp(x))
					g = append(g, -math.Exp(float64(alog[h]))*sp)
				}
				want := deltaRef(q, k, v, beta, g, 3)
				for i := range want {
					for j, w := range want[i] {
						gv := got[(start+i)*spec.ValueHeads*spec.ValueDim+h*spec.ValueDim+j]
						tol := 2e-6 * math.Max(1, math.Abs(w))
						if dt == backend.BF16 {
							tol = math.Abs(w)/128 + 1e-6
							if round(gv) != gv {
								t.Fatalf("bf16 output %g is not a bf16 value", gv)
							}
						}
						if d := math.Abs(float64(gv) - w); d > tol {
							t.Errorf("%v: sequence at %d, head %d, row %d, col %d = %g, want %g", dt, start, h, i, j, gv, w)
						}
					}
				}
				// First row: the state is β k vᵀ, so o = β v (k·q).
				first := beta[0] * dot64(k[0], q[0])
				for j := range v[0] {
					w := first * v[0][j]
					gv := float64(got[start*spec.ValueHeads*spec.ValueDim+h*spec.ValueDim+j])
					if math.Abs(gv-w) > math.Abs(w)/100+1e-6 {
						t.Errorf("%v: first row of head %d col %d = %g, closed form %g", dt, h, j, gv, w)
					}
				}
			}
			start += n
		}
	}
}

func dot64(a, b []float64) float64 {
	s := 0.0
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// TestGatedRMSNorm compares with a float64 evaluation per value head in
// float32 and with the documented rounding points in bf16.
func TestGatedRMSNorm(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 13))
	b := cpu.New()
	const rows, group, cols, eps = 5, 4, 12, 1e-6
	for _, dt := range []backend.DType{backend.F32, backend.BF16} {
		round := roundFn(dt)
		xv, zv, wv := randVals(r, rows*cols, 2, dt), randVals(r, rows*cols, 2, dt), randVals(r, group, 0.5, dt)
		x, z, w := upload(t, b, rows, cols, xv), upload(t, b, rows, cols, zv), upload(t, b, 1, group, wv)
		if err := b.GatedRMSNorm(x, x, z, w, group, eps, dt); err != nil { // in place
			t.Fatal(err)
		}
		got := data(t, x)
		for i := 0; i < rows*cols; i += group {
			var ss float64
			for _, v := range xv[i : i+group] {
				ss += float64(v) * float64(v)
			}
			inv := 1 / math.Sqrt(ss/group+eps)
			for j := 0; j < group; j++ {
				n := float64(xv[i+j]) * inv
				want := float64(wv[j]) * n * silu64(float64(zv[i+j]))
				tol := 1e-6 * math.Max(1, math.Abs(want))
				if dt == backend.BF16 {
					// round(round(w·round(n))·silu(z))
					want = float64(round(round(wv[j]*round(float32(n))) * float32(silu64(float64(zv[i+j])))))
					tol = math.Abs(want) / 128
				}
				if d := math.Abs(float64(got[i+j]) - want); d > tol {
					t.Errorf("%v [%d] = %g, want %g", dt, i+j, got[i+j], want)
				}
			}
		}
	}
}

// TestSigmoidMul checks the per-element and the broadcast [rows, 1] gate
// with the rounding points round(x·round(sigmoid(g))).
func TestSigmoidMul(t *testing.T) {
	r := rand.New(rand.NewPCG(14, 14))
	b := cpu.New()
	const rows, cols = 4, 6
	for _, dt := range dtypes {
		round := roundFn(dt)
		for _, gcols := range []int{cols, 1} {
			xv, gv := randVals(r, rows*cols, 2, dt), randVals(r, rows*gcols, 3, dt)
			x, g, dst := upload(t, b, rows, cols, xv), upload(t, b, rows, gcols, gv), alloc(t, b, rows, cols)
			if err := b.SigmoidMul(dst, x, g, dt); err != nil {
				t.Fatal(err)
			}
			got := data(t, dst)
			for i := 0; i < rows; i++ {
				for j := 0; j < cols; j++ {
					gate := gv[i*gcols]
					if gcols == cols {
						gate = gv[i*cols+j]
					}
					want := round(xv[i*cols+j] * round(float32(sigmoid64(float64(gate)))))
					if math.Float32bits(got[i*cols+j]) != math.Float32bits(want) {
						t.Errorf("%v gate cols %d: [%d,%d] = %g, want %g", dt, gcols, i, j, got[i*cols+j], want)
					}
				}
			}
		}
	}
}

// TestLinearAttentionErrors: mismatched shapes and bad sequence lengths
// are shape errors, never panics.
func TestLinearAttentionErrors(t *testing.T) {
	b := cpu.New()
	spec := backend.GatedDeltaSpec{KeyHeads: 1, ValueHeads: 2, KeyDim: 2, ValueDim: 2, SeqLens: []int{3}}
	x6 := alloc(t, b, 3, 6)
	a2, v2 := alloc(t, b, 3, 2), alloc(t, b, 1, 2)
	out4 := alloc(t, b, 3, 4)
	for name, err := range map[string]error{
		"conv weight rows":   b.CausalConv1DSilu(alloc(t, b, 3, 6), x6, alloc(t, b, 5, 4), []int{3}, backend.F32),
		"conv seq lens":      b.CausalConv1DSilu(alloc(t, b, 3, 6), x6, alloc(t, b, 6, 4), []int{2}, backend.F32),
		"conv zero seq":      b.CausalConv1DSilu(alloc(t, b, 3, 6), x6, alloc(t, b, 6, 4), []int{3, 0}, backend.F32),
		"delta qkv cols":     b.GatedDeltaRule(out4, alloc(t, b, 3, 5), a2, a2, v2, v2, spec, backend.F32),
		"delta heads":        b.GatedDeltaRule(out4, x6, a2, a2, v2, v2, backend.GatedDeltaSpec{KeyHeads: 2, ValueHeads: 3, KeyDim: 1, ValueDim: 1, SeqLens: []int{3}}, backend.F32),
		"delta seq lens":     b.GatedDeltaRule(out4, x6, a2, a2, v2, v2, backend.GatedDeltaSpec{KeyHeads: 1, ValueHeads: 2, KeyDim: 2, ValueDim: 2, SeqLens: []int{4}}, backend.F32),
		"delta dst":          b.GatedDeltaRule(alloc(t, b, 3, 3), x6, a2, a2, v2, v2, spec, backend.F32),
		"gated norm group":   b.GatedRMSNorm(out4, out4, out4, alloc(t, b, 1, 3), 3, 1e-6, backend.F32),
		"gated norm gate":    b.GatedRMSNorm(out4, out4, a2, alloc(t, b, 1, 2), 2, 1e-6, backend.F32),
		"sigmoid gate shape": b.SigmoidMul(out4, out4, a2, backend.F32),
	} {
		if !errors.Is(err, backend.ErrShape) {
			t.Errorf("%s: err %v, want a shape error", name, err)
		}
	}
	if err := b.CausalConv1DSilu(x6, x6, alloc(t, b, 6, 4), []int{3}, backend.F32); err == nil {
		t.Error("conv in place: no error")
	}
}
