package cpu_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ptqgate/ptqgate/ptqcore/backend"
	"github.com/ptqgate/ptqgate/ptqcore/backend/cpu"
	"github.com/ptqgate/ptqgate/ptqcore/numerics"
)

var dtypes = []backend.DType{backend.F32, backend.BF16, backend.F16}

func roundFn(dt backend.DType) func(float32) float32 {
	switch dt {
	case backend.BF16:
		return numerics.RoundBF16
	case backend.F16:
		return numerics.RoundF16
	}
	return func(v float32) float32 { return v }
}

func randVals(r *rand.Rand, n int, scale float64, dt backend.DType) []float32 {
	round := roundFn(dt)
	out := make([]float32, n)
	for i := range out {
		out[i] = round(float32(r.NormFloat64() * scale))
	}
	return out
}

func upload(t *testing.T, b backend.Backend, rows, cols int, data []float32) backend.Tensor {
	t.Helper()
	x, err := b.Upload(rows, cols, slices.Clone(data))
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func alloc(t *testing.T, b backend.Backend, rows, cols int) backend.Tensor {
	t.Helper()
	x, err := b.Alloc(rows, cols)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func data(t *testing.T, x backend.Tensor) []float32 { return x.(*cpu.Tensor).Data() }

// seqDot is the contract's dot product: float32, ascending, no FMA.
func seqDot(a, b []float32) float32 {
	var s float32
	for i := range a {
		p := a[i] * b[i]
		s += p
	}
	return s
}

func bitsEqual(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// TestLinearExactOrder: every output of Linear equals the contract's
// sequential float32 dot product bit for bit, for shapes that exercise
// the 4×2 tiles and every remainder path, with and without bias, in every
// dtype and with 1 or 3 workers.
func TestLinearExactOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, workers := range []int{1, 3} {
		b := cpu.NewWorkers(workers)
		for _, dt := range dtypes {
			round := roundFn(dt)
			for _, sh := range [][3]int{{1, 1, 1}, {5, 3, 7}, {4, 2, 16}, {9, 5, 33}, {70, 37, 40}, {3, 130, 64}, {2, 4, 0}} {
				m, n, k := sh[0], sh[1], sh[2]
				xv, wv, bv := randVals(r, m*k, 1, dt), randVals(r, n*k, 1, dt), randVals(r, n, 1, dt)
				for _, withBias := range []bool{false, true} {
					x, w := upload(t, b, m, k, xv), upload(t, b, n, k, wv)
					var bias backend.Tensor
					if withBias {
						bias = upload(t, b, 1, n, bv)
					}
					dst := alloc(t, b, m, n)
					if err := b.Linear(dst, x, w, bias, dt); err != nil {
						t.Fatal(err)
					}
					got := data(t, dst)
					for i := 0; i < m; i++ {
						for j := 0; j < n; j++ {
							want := seqDot(xv[i*k:(i+1)*k], wv[j*k:(j+1)*k])
							if withBias {
								want += bv[j]
							}
							want = round(want)
							if math.Float32bits(got[i*n+j]) != math.Float32bits(want) {
								t.Fatalf("%v %v workers %d bias %v: dst[%d,%d] = %g, want %g", dt, sh, workers, withBias, i, j, got[i*n+j], want)
							}
						}
					}
				}
			}
		}
	}
}

// TestGroupedLinear: the segmented GEMM equals one Linear per expert on
// views (bit for bit) and returns each segment's max|x|, 0 for empty ones.
func TestGroupedLinear(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	b := cpu.New()
	for _, dt := range dtypes {
		const e, n, k = 5, 6, 19
		offsets := []int{0, 3, 3, 10, 11, 80}
		m := offsets[e]
		xv, wv := randVals(r, m*k, 2, dt), randVals(r, e*n*k, 1, dt)
		x, w := upload(t, b, m, k, xv), upload(t, b, e*n, k, wv)
		dst := alloc(t, b, m, n)
		amax, err := b.GroupedLinear(dst, x, w, offsets, dt)
		if err != nil {
			t.Fatal(err)
		}
		for ex := 0; ex < e; ex++ {
			rows := offsets[ex+1] - offsets[ex]
			xe, _ := b.View(x, offsets[ex], offsets[ex+1])
			we, _ := b.View(w, ex*n, (ex+1)*n)
			ref := alloc(t, b, rows, n)
			if err := b.Linear(ref, xe, we, nil, dt); err != nil {
				t.Fatal(err)
			}
			if !bitsEqual(data(t, ref), data(t, dst)[offsets[ex]*n:offsets[ex+1]*n]) {
				t.Errorf("%v expert %d: grouped output differs from its Linear", dt, ex)
			}
			var want float32
			for _, v := range xv[offsets[ex]*k : offsets[ex+1]*k] {
				want = max(want, float32(math.Abs(float64(v))))
			}
			if amax[ex] != want {
				t.Errorf("%v expert %d: amax %g, want %g", dt, ex, amax[ex], want)
			}
		}
	}
	x, w, dst := alloc(t, b, 4, 3), alloc(t, b, 4, 3), alloc(t, b, 4, 2)
	for _, off := range [][]int{{0, 4}, {0, 5, 4}, {1, 2, 4}, {0, 3, 2}} {
		if _, err := b.GroupedLinear(dst, x, w, off, backend.F32); !errors.Is(err, backend.ErrShape) {
			t.Errorf("offsets %v: err %v, want a shape error", off, err)
		}
	}
}

// TestRMSNorm compares both norm kinds with a float64 evaluation of their
// formulas, per row and per group.
func TestRMSNorm(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	b := cpu.New()
	const rows, cols, eps = 7, 24, 1e-6
	for _, group := range []int{24, 8} {
		for _, kind := range []backend.NormKind{backend.NormWeighted, backend.NormOffset} {
			xv, wv := randVals(r, rows*cols, 3, backend.F32), randVals(r, group, 0.3, backend.F32)
			x, w, dst := upload(t, b, rows, cols, xv), upload(t, b, 1, group, wv), alloc(t, b, rows, cols)
			if err := b.RMSNorm(dst, x, w, group, eps, kind, backend.F32); err != nil {
				t.Fatal(err)
			}
			got := data(t, dst)
			for i := 0; i < rows*cols; i += group {
				var ss float64
				for _, v := range xv[i : i+group] {
					ss += float64(v) * float64(v)
				}
				inv := 1 / math.Sqrt(ss/float64(group)+eps)
				for j := 0; j < group; j++ {
					want := float64(xv[i+j]) * inv * float64(wv[j])
					if kind == backend.NormOffset {
						want = float64(xv[i+j]) * inv * (1 + float64(wv[j]))
					}
					if d := math.Abs(float64(got[i+j]) - want); d > 1e-6*math.Max(1, math.Abs(want)) {
						t.Errorf("group %d kind %d: [%d] = %g, want %g", group, kind, i+j, got[i+j], want)
					}
				}
			}
		}
	}
}

// TestRoPE compares with the float64 rotate_half formula and checks that
// dimensions beyond RotaryDim pass through.
func TestRoPE(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	b := cpu.New()
	const heads, hd, rot, theta = 3, 8, 4, 10000.0
	pos := []int32{0, 1, 5, 2, 300}
	rows := len(pos)
	xv := randVals(r, rows*heads*hd, 1, backend.F32)
	x := upload(t, b, rows, heads*hd, xv)
	if err := b.RoPE(x, backend.RoPESpec{Heads: heads, HeadDim: hd, RotaryDim: rot, Theta: theta, Positions: pos}, backend.F32); err != nil {
		t.Fatal(err)
	}
	got := data(t, x)
	half := rot / 2
	for i, p := range pos {
		for h := 0; h < heads; h++ {
			base := i*heads*hd + h*hd
			for d := 0; d < hd; d++ {
				want := float64(xv[base+d])
				if d < rot {
					f := float64(p) / math.Pow(theta, float64(2*(d%half))/rot)
					if d < half {
						want = float64(xv[base+d])*math.Cos(f) - float64(xv[base+d+half])*math.Sin(f)
					} else {
						want = float64(xv[base+d])*math.Cos(f) + float64(xv[base+d-half])*math.Sin(f)
					}
				}
				if diff := math.Abs(float64(got[base+d]) - want); diff > 2e-5 {
					t.Errorf("pos %d head %d dim %d: %g, want %g", p, h, d, got[base+d], want)
				}
			}
		}
	}
	if err := b.RoPE(x, backend.RoPESpec{Heads: heads, HeadDim: hd, RotaryDim: 3, Theta: theta, Positions: pos}, backend.F32); !errors.Is(err, backend.ErrShape) {
		t.Errorf("odd rotary dim: %v", err)
	}
}

// TestAttention compares causal GQA attention over two sequences with a
// float64 evaluation, and checks that sequences do not see each other.
func TestAttention(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	b := cpu.New()
	const nh, nkv, hd = 4, 2, 8
	seqs := []int{5, 3}
	rows := 8
	qv, kv, vv := randVals(r, rows*nh*hd, 1, backend.F32), randVals(r, rows*nkv*hd, 1, backend.F32), randVals(r, rows*nkv*hd, 1, backend.F32)
	q, k, v := upload(t, b, rows, nh*hd, qv), upload(t, b, rows, nkv*hd, kv), upload(t, b, rows, nkv*hd, vv)
	dst := alloc(t, b, rows, nh*hd)
	scale := float32(1 / math.Sqrt(hd))
	if err := b.Attention(dst, q, k, v, backend.AttentionSpec{Heads: nh, KVHeads: nkv, HeadDim: hd, Scale: scale, SeqLens: seqs}, backend.F32); err != nil {
		t.Fatal(err)
	}
	got := data(t, dst)
	start := 0
	for _, n := range seqs {
		for tq := 0; tq < n; tq++ {
			for h := 0; h < nh; h++ {
				g := h / (nh / nkv)
				w := make([]float64, tq+1)
				var m, sum float64 = math.Inf(-1), 0
				for j := 0; j <= tq; j++ {
					var s float64
					for d := 0; d < hd; d++ {
						s += float64(qv[(start+tq)*nh*hd+h*hd+d]) * float64(kv[(start+j)*nkv*hd+g*hd+d])
					}
					w[j] = s * float64(scale)
					m = math.Max(m, w[j])
				}
				for j := range w {
					w[j] = math.Exp(w[j] - m)
					sum += w[j]
				}
				for d := 0; d < hd; d++ {
					var want float64
					for j := range w {
						want += w[j] / sum * float64(vv[(start+j)*nkv*hd+g*hd+d])
					}
					if diff := math.Abs(float64(got[(start+tq)*nh*hd+h*hd+d]) - want); diff > 1e-5 {
						t.Fatalf("row %d head %d dim %d: %g, want %g", start+tq, h, d, got[(start+tq)*nh*hd+h*hd+d], want)
					}
				}
			}
		}
		start += n
	}
	if err := b.Attention(dst, q, k, v, backend.AttentionSpec{Heads: nh, KVHeads: nkv, HeadDim: hd, Scale: scale, SeqLens: []int{5, 4}}, backend.F32); !errors.Is(err, backend.ErrShape) {
		t.Errorf("sequence lengths not summing to the rows: %v", err)
	}
}

// TestElementwise checks SiluMul, Add and ScaleRows against their formulas
// with the dtype's rounding at each documented point.
func TestElementwise(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 6))
	b := cpu.New()
	for _, dt := range dtypes {
		round := roundFn(dt)
		const rows, n = 5, 6
		gu := randVals(r, rows*2*n, 3, dt)
		dst := alloc(t, b, rows, n)
		if err := b.SiluMul(dst, upload(t, b, rows, 2*n, gu), dt); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < rows; i++ {
			for j := 0; j < n; j++ {
				g, u := float64(gu[i*2*n+j]), gu[i*2*n+n+j]
				want := round(round(float32(g/(1+math.Exp(-g)))) * u)
				if got := data(t, dst)[i*n+j]; got != want {
					t.Errorf("%v silu·mul[%d,%d] = %g, want %g", dt, i, j, got, want)
				}
			}
		}
		a, c := randVals(r, rows*n, 1, dt), randVals(r, rows*n, 1, dt)
		at := upload(t, b, rows, n, a)
		if err := b.Add(at, at, upload(t, b, rows, n, c), dt); err != nil {
			t.Fatal(err)
		}
		s := randVals(r, rows, 1, dt)
		if err := b.ScaleRows(at, s, dt); err != nil {
			t.Fatal(err)
		}
		for i := range a {
			if want := round(round(a[i]+c[i]) * s[i/n]); data(t, at)[i] != want {
				t.Errorf("%v add·scale[%d] = %g, want %g", dt, i, data(t, at)[i], want)
			}
		}
	}
}

// TestScatterAddRowsOrder: additions into one row happen in ascending
// source row order, each rounded (checked bit for bit in bf16, where the
// order changes results), and the result does not depend on the workers.
func TestScatterAddRowsOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	const rows, cols, dstRows = 300, 9, 11
	src := randVals(r, rows*cols, 1, backend.BF16)
	idx := make([]int32, rows)
	for i := range idx {
		idx[i] = int32(r.IntN(dstRows))
	}
	want := make([]float32, dstRows*cols)
	for i, d := range idx {
		for j := 0; j < cols; j++ {
			want[int(d)*cols+j] = numerics.RoundBF16(want[int(d)*cols+j] + src[i*cols+j])
		}
	}
	for _, workers := range []int{1, 4} {
		b := cpu.NewWorkers(workers)
		dst := alloc(t, b, dstRows, cols)
		if err := b.ScatterAddRows(dst, upload(t, b, rows, cols, src), idx, backend.BF16); err != nil {
			t.Fatal(err)
		}
		if !bitsEqual(data(t, dst), want) {
			t.Errorf("workers %d: scatter-add differs from the sequential order", workers)
		}
	}
	b := cpu.New()
	if err := b.ScatterAddRows(alloc(t, b, 2, cols), upload(t, b, 1, cols, src[:cols]), []int32{2}, backend.F32); !errors.Is(err, backend.ErrShape) {
		t.Errorf("out-of-range index: %v", err)
	}
}

func TestRouterTopK(t *testing.T) {
	b := cpu.New()
	logits := []float32{
		1, 3, 3, 0, // tie between experts 1 and 2: the lower index first
		-1, -2, 5, 4,
	}
	x := upload(t, b, 2, 4, logits)
	idx, w, err := b.RouterTopK(x, backend.RouterSpec{TopK: 2}, backend.F32)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(idx, []int32{1, 2, 2, 3}) {
		t.Errorf("indices %v", idx)
	}
	soft := func(row []float32, i int) float64 {
		var s float64
		for _, v := range row {
			s += math.Exp(float64(v))
		}
		return math.Exp(float64(row[i])) / s
	}
	for i, want := range []float64{soft(logits[:4], 1), soft(logits[:4], 2), soft(logits[4:], 2), soft(logits[4:], 3)} {
		if math.Abs(float64(w[i])-want) > 1e-6 {
			t.Errorf("weight %d = %g, want %g", i, w[i], want)
		}
	}
	_, wn, err := b.RouterTopK(x, backend.RouterSpec{TopK: 2, Normalize: true}, backend.BF16)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range wn[:2] {
		if v != 0.5 {
			t.Errorf("normalised tie weights %v, want 0.5 each", wn[:2])
		}
	}
	if numerics.RoundBF16(wn[2]) != wn[2] || math.Abs(float64(wn[2]+wn[3])-1) > 1e-2 {
		t.Errorf("normalised bf16 weights %v", wn[2:])
	}
	if _, _, err := b.RouterTopK(x, backend.RouterSpec{TopK: 5}, backend.F32); !errors.Is(err, backend.ErrShape) {
		t.Errorf("top-5 of 4: %v", err)
	}
}

func TestAmax(t *testing.T) {
	b := cpu.New()
	vals := []float32{
		1, -7, 2, 0,
		-3, 4, 0.5, -0.25,
		2, 2, -9, 1,
	}
	x := upload(t, b, 3, 4, vals)
	for _, tc := range []struct {
		r    backend.Reduction
		want []float32
	}{
		{backend.Reduction{Kind: backend.PerTensor}, []float32{9}},
		{backend.Reduction{Kind: backend.PerRow}, []float32{7, 4, 9}},
		{backend.Reduction{Kind: backend.PerColumn}, []float32{3, 7, 9, 1}},
		{backend.Reduction{Kind: backend.PerBlock, Block: 2}, []float32{7, 2, 4, 0.5, 2, 9}},
	} {
		got, err := b.Amax(x, tc.r)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%+v: %v, want %v", tc.r, got, tc.want)
		}
	}
	if _, err := b.Amax(x, backend.Reduction{Kind: backend.PerBlock, Block: 3}); err == nil {
		t.Error("block 3 of 4 columns accepted")
	}
	// A large tensor (parallel path) with a NaN, and one with +Inf.
	big := make([]float32, 1<<17)
	big[12345] = -5
	big[99999] = float32(math.NaN())
	got, _ := b.Amax(upload(t, b, 1<<7, 1<<10, big), backend.Reduction{Kind: backend.PerTensor})
	if !math.IsNaN(float64(got[0])) {
		t.Errorf("NaN input: amax %g", got[0])
	}
	big[99999] = float32(math.Inf(-1))
	got, _ = b.Amax(upload(t, b, 1<<7, 1<<10, big), backend.Reduction{Kind: backend.PerTensor})
	if !math.IsInf(float64(got[0]), 1) {
		t.Errorf("-Inf input: amax %g", got[0])
	}
	rows, _ := b.Amax(upload(t, b, 1<<7, 1<<10, big), backend.Reduction{Kind: backend.PerRow})
	if !math.IsInf(float64(rows[97]), 1) || rows[12] != 5 || rows[0] != 0 {
		t.Errorf("per-row amax %g %g %g", rows[97], rows[12], rows[0])
	}
}

// TestErrorsNotPanics: mismatched shapes and foreign tensors are errors.
func TestErrorsNotPanics(t *testing.T) {
	b := cpu.New()
	x, y := alloc(t, b, 2, 3), alloc(t, b, 3, 2)
	checks := map[string]error{
		"linear":    b.Linear(x, x, x, nil, backend.F32),
		"add":       b.Add(x, x, y, backend.F32),
		"silu":      b.SiluMul(x, x, backend.F32),
		"gather":    b.GatherRows(x, y, []int32{0, 3}),
		"scale":     b.ScaleRows(x, []float32{1}, backend.F32),
		"rmsnorm":   b.RMSNorm(x, x, y, 3, 1e-6, backend.NormWeighted, backend.F32),
		"download":  b.Download(x, make([]float32, 5)),
		"upload":    func() error { _, err := b.Upload(2, 2, make([]float32, 3)); return err }(),
		"view":      func() error { _, err := b.View(x, 1, 3); return err }(),
		"bad dtype": b.Add(x, x, x, backend.DType(9)),
	}
	for name, err := range checks {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if err := b.Add(x, x, foreign{}, backend.F32); err == nil {
		t.Error("foreign tensor accepted")
	}
	b.Free(x)
	if err := b.Add(x, x, x, backend.F32); err == nil {
		t.Error("freed tensor accepted")
	}
}

type foreign struct{}

func (foreign) Rows() int { return 2 }
func (foreign) Cols() int { return 3 }

func TestParseDType(t *testing.T) {
	for s, want := range map[string]backend.DType{"float32": backend.F32, "torch.bfloat16": backend.BF16, "F16": backend.F16, "half": backend.F16} {
		if got, err := backend.ParseDType(s); err != nil || got != want {
			t.Errorf("%q: %v %v", s, got, err)
		}
	}
	if _, err := backend.ParseDType("float8_e4m3fn"); err == nil {
		t.Error("float8 accepted as a compute dtype")
	}
}
