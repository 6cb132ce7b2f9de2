//go:build cuda

package cuda

import (
	"fmt"
	"math"

	"gorgonia.org/cu"

	"github.com/ptqgate/ptqgate/ptqcore/backend"
)

// QuantizeFP8 casts a weight to float8_e4m3fn codes on the GPU, bit for
// bit as ptqcore/export.QuantizeFP8: q = round_dt(w / round_dt(scale)),
// E4M3 round to nearest even. It returns the codes, or the index of the
// first element whose quotient is beyond ±464 or NaN (ok false). A zero
// scale gives zero codes.
func (b *Backend) QuantizeFP8(w backend.Tensor, scale float32, dt backend.DType) (codes []byte, bad int, ok bool, err error) {
	return b.fp8(w, scale, dt, 0)
}

// QuantizeFP8Sat is the saturating cast: round_dt(w/round_dt(scale))
// clamped to ±448, then E4M3 (numerics.F32ToE4M3Sat); NaN stays NaN.
func (b *Backend) QuantizeFP8Sat(w backend.Tensor, scale float32, dt backend.DType) ([]byte, error) {
	codes, _, _, err := b.fp8(w, scale, dt, 1)
	return codes, err
}

func (b *Backend) fp8(w backend.Tensor, scale float32, dt backend.DType, mode int) ([]byte, int, bool, error) {
	t, err := b.tensor("fp8 quantize", w)
	if err != nil {
		return nil, 0, false, err
	}
	code, err := dtCode(dt)
	if err != nil {
		return nil, 0, false, fmt.Errorf("fp8 quantize: %w", err)
	}
	n := t.rows * t.cols
	out := make([]byte, n)
	if scale == 0 && mode == 0 {
		return out, 0, true, nil
	}
	s := rounder(dt)(scale)
	bad := -1
	err = b.exec("fp8 quantize", func(o *op) error {
		p, st, dev, err := o.in(t, -1)
		if err != nil || n == 0 {
			return err
		}
		dv := b.devs[dev]
		q, err := o.scratch(dv, int64(n))
		if err != nil {
			return err
		}
		flag, err := o.scratch(dv, 8)
		if err != nil {
			return err
		}
		if err := cu.MemsetD8Async(flag, 0xff, 8, dv.stream); err != nil {
			return fmt.Errorf("cuMemsetD8Async: %w", err)
		}
		if err := b.launchOn(dv, "fp8_quantize", [3]int{blocksFor(dv, int64(n), 256), 1, 1}, 256, 0,
			pa(p), sa(st), la(int64(n)), fa(s), code, ia(mode), pa(q), pa(flag)); err != nil {
			return err
		}
		if err := dv.ring.toHost(q, int64(n), func(c []byte, off int64) { copy(out[off:], c) }); err != nil {
			return err
		}
		fb, err := o.download32(dv, flag, 2)
		if err != nil {
			return err
		}
		if v := uint64(fb[0]) | uint64(fb[1])<<32; v != math.MaxUint64 {
			bad = int(v)
		}
		return nil
	})
	if err != nil {
		return nil, 0, false, err
	}
	return out, max(bad, 0), bad < 0, nil
}

// QuantizeNVFP4 quantizes a row-major [rows, cols] weight to NVFP4 on the
// GPU, bit for bit as ptqcore/export.QuantizeNVFP4 with scale2 the
// weight_scale_2: it returns the packed E2M1 codes [rows, kp/2] and the
// E4M3 block scales [rows, kp/16], kp = cols rounded up to 16.
func (b *Backend) QuantizeNVFP4(w backend.Tensor, scale2 float32) (packed, blockScales []byte, err error) {
	t, err := b.tensor("nvfp4 quantize", w)
	if err != nil {
		return nil, nil, err
	}
	kp := (t.cols + 15) / 16 * 16
	packed = make([]byte, t.rows*kp/2)
	blockScales = make([]byte, t.rows*kp/16)
	err = b.exec("nvfp4 quantize", func(o *op) error {
		p, st, dev, err := o.in(t, -1)
		if err != nil || len(packed) == 0 {
			return err
		}
		dv := b.devs[dev]
		pp, err := o.scratch(dv, int64(len(packed)))
		if err != nil {
			return err
		}
		sp, err := o.scratch(dv, int64(len(blockScales)))
		if err != nil {
			return err
		}
		if err := b.launchOn(dv, "nvfp4_quantize", [3]int{blocksFor(dv, int64(len(blockScales)), 256), 1, 1}, 256, 0,
			pa(p), sa(st), ia(t.rows), ia(t.cols), fa(scale2), pa(pp), pa(sp)); err != nil {
			return err
		}
		if err := dv.ring.toHost(pp, int64(len(packed)), func(c []byte, off int64) { copy(packed[off:], c) }); err != nil {
			return err
		}
		return dv.ring.toHost(sp, int64(len(blockScales)), func(c []byte, off int64) { copy(blockScales[off:], c) })
	})
	if err != nil {
		return nil, nil, err
	}
	return packed, blockScales, nil
}
