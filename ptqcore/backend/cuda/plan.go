package cuda

import (
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/ptqgate/ptqgate/ptqcore/backend"
	"github.com/ptqgate/ptqgate/ptqcore/numerics"
)

// gemmTiles splits each expert's rows [offsets[e], offsets[e+1]) into
// tiles of at most bm rows and returns {first row, end row, expert} per
// tile, experts in order. Experts without rows have no tile.
func gemmTiles(offsets []int, bm int) ([]int32, error) {
	if len(offsets) < 2 || offsets[0] != 0 {
		return nil, fmt.Errorf("grouped linear: offsets %v must start at 0 and name at least one expert", head(offsets))
	}
	var out []int32
	for e := 0; e+1 < len(offsets); e++ {
		lo, hi := offsets[e], offsets[e+1]
		if hi < lo {
			return nil, fmt.Errorf("grouped linear: offsets decrease at expert %d (%d > %d)", e, lo, hi)
		}
		if hi > math.MaxInt32 {
			return nil, fmt.Errorf("grouped linear: %d rows exceed the kernel's 32-bit row index", hi)
		}
		for r := lo; r < hi; r += bm {
			out = append(out, int32(r), int32(hi), int32(e))
		}
	}
	return out, nil
}

func head(xs []int) []int {
	if len(xs) > 8 {
		return xs[:8]
	}
	return xs
}

// attentionTiles lists {first row of the sequence, its length, first
// query} for every tile of bq queries of every sequence.
func attentionTiles(seqLens []int, bq int) []int32 {
	var out []int32
	start := 0
	for _, n := range seqLens {
		for q := 0; q < n; q += bq {
			out = append(out, int32(start), int32(n), int32(q))
		}
		start += n
	}
	return out
}

// rowStarts returns, for every row, the first row of its sequence.
func rowStarts(seqLens []int) []int32 {
	var out []int32
	start := 0
	for _, n := range seqLens {
		for t := 0; t < n; t++ {
			out = append(out, int32(start))
		}
		start += n
	}
	return out
}

// scatterOrder groups the source rows by destination for ScatterAddRows:
// the sources of destination d are order[start[d]:start[d+1]], ascending.
func scatterOrder(idx []int32, rows int) (order, start []int32, err error) {
	start = make([]int32, rows+1)
	for r, i := range idx {
		if i < 0 || int(i) >= rows {
			return nil, nil, backend.ShapeError("scatter add rows", "index %d at row %d outside [0, %d)", i, r, rows)
		}
		start[i+1]++
	}
	for i := 0; i < rows; i++ {
		start[i+1] += start[i]
	}
	fill := make([]int32, rows)
	copy(fill, start[:rows])
	order = make([]int32, len(idx))
	for r, i := range idx {
		order[fill[i]] = int32(r)
		fill[i]++
	}
	return order, start, nil
}

// ropeTables computes round(cos) and round(sin) of pos·f_i for positions
// [0, positions) and i < rotaryDim/2 exactly as the CPU backend does
// (inv_freq in float32, cos/sin in float64 rounded to float32, then to dt).
func ropeTables(theta float64, rotaryDim, positions int, dt backend.DType) (cos, sin []float32) {
	half := rotaryDim / 2
	round := rounder(dt)
	invFreq := make([]float32, half)
	for i := range invFreq {
		e := float32(2*i) / float32(rotaryDim)
		invFreq[i] = 1 / float32(math.Pow(theta, float64(e)))
	}
	cos = make([]float32, positions*half)
	sin = make([]float32, positions*half)
	for p := 0; p < positions; p++ {
		for i, f := range invFreq {
			a := float32(p) * f
			cos[p*half+i] = round(float32(math.Cos(float64(a))))
			sin[p*half+i] = round(float32(math.Sin(float64(a))))
		}
	}
	return cos, sin
}

// rounder returns the rounding of dt to float32 values.
func rounder(dt backend.DType) func(float32) float32 {
	switch dt {
	case backend.BF16:
		return numerics.RoundBF16
	case backend.F16:
		return numerics.RoundF16
	}
	return func(v float32) float32 { return v }
}

// bf16Exact reports whether every value is a bfloat16 value (NaN
// included only as 0x7FC0-like quiet NaNs whose low 16 bits are zero),
// checking chunks on all cores.
func bf16Exact(data []float32) bool {
	exact := true
	var mu sync.Mutex
	parallelChunks(len(data), 1<<18, func(lo, hi int) {
		for _, v := range data[lo:hi] {
			if math.Float32bits(v)&0xffff != 0 {
				mu.Lock()
				exact = false
				mu.Unlock()
				return
			}
		}
	})
	return exact
}

// packBF16 writes the bfloat16 bits of src (little-endian) into dst
// (2·len(src) bytes) on all cores.
func packBF16(dst []byte, src []float32) {
	parallelChunks(len(src), 1<<18, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			b := numerics.F32ToBF16(src[i])
			dst[2*i] = byte(b)
			dst[2*i+1] = byte(b >> 8)
		}
	})
}

// unpackBF16 widens little-endian bfloat16 bytes into dst.
func unpackBF16(dst []float32, src []byte) {
	parallelChunks(len(dst), 1<<18, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			dst[i] = math.Float32frombits(uint32(src[2*i])<<16 | uint32(src[2*i+1])<<24)
		}
	})
}

// packF32 writes src as little-endian float32 bytes into dst.
func packF32(dst []byte, src []float32) {
	parallelChunks(len(src), 1<<18, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			u := math.Float32bits(src[i])
			dst[4*i], dst[4*i+1], dst[4*i+2], dst[4*i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
		}
	})
}

// unpackF32 reads little-endian float32 bytes into dst.
func unpackF32(dst []float32, src []byte) {
	parallelChunks(len(dst), 1<<18, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			dst[i] = math.Float32frombits(uint32(src[4*i]) | uint32(src[4*i+1])<<8 | uint32(src[4*i+2])<<16 | uint32(src[4*i+3])<<24)
		}
	})
}

// amaxValues turns magnitude bits from the amax kernels into values:
// bits above +Inf mean a NaN was seen.
func amaxValues(bits []uint32) []float32 {
	out := make([]float32, len(bits))
	for i, b := range bits {
		if b > 0x7f800000 {
			out[i] = float32(math.NaN())
		} else {
			out[i] = math.Float32frombits(b)
		}
	}
	return out
}

// parallelChunks runs fn over [0, n) in chunks of at least minChunk on up
// to GOMAXPROCS goroutines.
func parallelChunks(n, minChunk int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	w := runtime.GOMAXPROCS(0)
	size := max(minChunk, (n+w-1)/w)
	if size >= n {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	for lo := 0; lo < n; lo += size {
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			fn(lo, hi)
		}(lo, min(lo+size, n))
	}
	wg.Wait()
}
