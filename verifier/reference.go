package verifier

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"sort"
	"strings"

	"github.com/ptqgate/ptqgate/ptqcore/numerics"
	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
	"github.com/ptqgate/ptqgate/reports"
)

// Thresholds of the reference comparison.
const (
	// mismatchLimit: a relative error above it means the codes or scales
	// do not encode the weight (FP8 is ~3%, NVFP4 ~10%).
	mismatchLimit = 0.5
	// outlierFactor × the median of the same projection in the same
	// layer, and above outlierFloor, makes a module an outlier.
	outlierFactor = 3
	outlierFloor  = 0.05
)

// refSlice locates a module's original weight in the reference: a tensor,
// and for fused 3-D experts the expert index and row range.
type refSlice struct {
	name       string
	expert     int // -1: the whole tensor
	row0, rows int64
	cols       int64
}

// findReference looks the module's weight up under the same name, the
// other text prefix, and the fused 3-D experts layout.
func findReference(ref *safetensors.Checkpoint, m *module) (refSlice, bool) {
	var cands []string
	base := m.name
	cands = append(cands, base)
	switch {
	case strings.HasPrefix(base, "model.language_model."):
		cands = append(cands, "model."+strings.TrimPrefix(base, "model.language_model."))
	case strings.HasPrefix(base, "model."):
		cands = append(cands, "model.language_model."+strings.TrimPrefix(base, "model."))
	}
	for _, c := range cands {
		if ti, ok := ref.Tensor(c + ".weight"); ok && len(ti.Shape) == 2 {
			return refSlice{name: ti.Name, expert: -1, rows: ti.Shape[0], cols: ti.Shape[1]}, true
		}
	}
	if m.expert < 0 || (m.kind != kindExpert && m.kind != kindExpertSwapped) {
		return refSlice{}, false
	}
	for _, c := range cands {
		// c is …mlp.experts.<e>.<proj> or …mlp.experts.<proj>.<e>.
		i := strings.Index(c, ".mlp.experts.")
		if i < 0 {
			continue
		}
		container := c[:i] + ".mlp.experts"
		switch m.proj {
		case "gate_proj", "up_proj":
			ti, ok := ref.Tensor(container + ".gate_up_proj")
			if !ok || len(ti.Shape) != 3 || ti.Shape[1]%2 != 0 {
				continue
			}
			half := ti.Shape[1] / 2
			r := refSlice{name: ti.Name, expert: m.expert, rows: half, cols: ti.Shape[2]}
			if m.proj == "up_proj" {
				r.row0 = half
			}
			if int64(m.expert) >= ti.Shape[0] {
				continue
			}
			return r, true
		case "down_proj":
			ti, ok := ref.Tensor(container + ".down_proj")
			if !ok || len(ti.Shape) != 3 || int64(m.expert) >= ti.Shape[0] {
				continue
			}
			return refSlice{name: ti.Name, expert: m.expert, rows: ti.Shape[1], cols: ti.Shape[2]}, true
		}
	}
	return refSlice{}, false
}

// readRef reads and decodes the reference rows.
func readRef(ref *safetensors.Checkpoint, r refSlice) ([]float32, error) {
	ti, _ := ref.Tensor(r.name)
	bits, known := ti.DType.Bits()
	if !known || bits%8 != 0 || !numerics.IsFloatDType(string(ti.DType)) {
		return nil, fmt.Errorf("reference tensor %s has dtype %s, not a float format", r.name, ti.DType)
	}
	es := int64(bits / 8)
	var off int64
	if r.expert >= 0 {
		off = int64(r.expert) * ti.Shape[1] * ti.Shape[2] * es
	}
	off += r.row0 * r.cols * es
	n := r.rows * r.cols * es
	sec, err := ref.Section(r.name)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, n)
	if _, err := sec.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read reference tensor %s: %w", r.name, err)
	}
	return numerics.DecodeFloats(string(ti.DType), buf)
}

// dequantize returns the module's dequantized weight [out, in] row-major.
func (v *run) dequantize(m *module) ([]float32, int64, int64, error) {
	rows, cols, ok := shape2(m.weight)
	if !ok {
		return nil, 0, 0, fmt.Errorf("%s: weight is not 2-D", m.weight.Name)
	}
	raw, err := m.weight.file.ReadTensor(m.weight.Name)
	if err != nil {
		return nil, 0, 0, err
	}
	switch m.stored() {
	case fmtFP8:
		sc := m.scale.vals
		if len(sc) != 1 && int64(len(sc)) != rows {
			return nil, 0, 0, fmt.Errorf("%s: weight_scale has %d values for %d rows", m.scale.Name, len(sc), rows)
		}
		out := make([]float32, rows*cols)
		for r := int64(0); r < rows; r++ {
			s := sc[0]
			if len(sc) > 1 {
				s = sc[r]
			}
			for c := int64(0); c < cols; c++ {
				out[r*cols+c] = numerics.E4M3ToF32(raw[r*cols+c]) * s
			}
		}
		return out, rows, cols, nil
	case fmtNVFP4:
		s2, ok := v.scalar(m.scale2)
		if !ok {
			return nil, 0, 0, fmt.Errorf("%s: no single-element weight_scale_2", m.name)
		}
		bs, err := m.scale.file.ReadTensor(m.scale.Name)
		if err != nil {
			return nil, 0, 0, err
		}
		in := cols * 2
		groups := in / 16
		if in%16 != 0 || int64(len(bs)) != rows*groups {
			return nil, 0, 0, fmt.Errorf("%s: block scale shape %v does not fit weight %v", m.scale.Name, m.scale.Shape, m.weight.Shape)
		}
		out := make([]float32, rows*in)
		for r := int64(0); r < rows; r++ {
			for c := int64(0); c < in; c++ {
				b := raw[r*cols+c/2]
				code := b & 0xF
				if c%2 == 1 {
					code = b >> 4
				}
				out[r*in+c] = numerics.E2M1ToF32(code) * numerics.E4M3ToF32(bs[r*groups+c/16]) * s2
			}
		}
		return out, rows, in, nil
	}
	return nil, 0, 0, fmt.Errorf("%s: not a quantized weight", m.name)
}

// checkReference dequantizes every quantized weight and compares it with
// the reference checkpoint.
func (v *run) checkReference(dir string) error {
	if _, err := os.Stat(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("verify: reference %s: %w", dir, err)
		}
		return fmt.Errorf("verify: reference %s: %w", dir, err)
	}
	ref, err := safetensors.OpenCheckpoint(dir)
	if err != nil {
		return fmt.Errorf("verify: reference checkpoint: %w", err)
	}
	defer ref.Close()
	v.rep.Run.Paths["reference"] = dir
	for _, r := range []string{"reference.outlier", "reference.mismatch", "reference.missing"} {
		v.evaluated(r, reports.TargetAny)
	}
	type result struct {
		m   *module
		rel float64
	}
	var results []result
	var missing []string
	var mism groups
	for _, m := range v.mods.list {
		f := m.stored()
		if (f != fmtFP8 && f != fmtNVFP4) || m.kind == kindMTP || m.scale == nil {
			continue
		}
		if f == fmtNVFP4 && (m.scale2 == nil || m.scale.DType != safetensors.F8E4M3) {
			continue
		}
		rs, ok := findReference(ref, m)
		if !ok {
			missing = append(missing, m.name)
			continue
		}
		w, rows, cols, err := v.dequantize(m)
		if err != nil {
			v.addAny("reference.mismatch", reports.SeverityError, m.weight.Name, m.name, fmt.Sprintf("cannot dequantize: %v", err), "")
			continue
		}
		if rows != rs.rows || cols != rs.cols {
			v.addAny("reference.mismatch", reports.SeverityError, m.weight.Name, m.name,
				fmt.Sprintf("dequantized shape [%d, %d] differs from the reference %s [%d, %d]", rows, cols, rs.name, rs.rows, rs.cols), "")
			continue
		}
		orig, err := readRef(ref, rs)
		if err != nil {
			v.addAny("reference.mismatch", reports.SeverityError, m.weight.Name, m.name, err.Error(), "")
			continue
		}
		var diff2, ref2, maxAbs float64
		for i, x := range orig {
			d := float64(w[i]) - float64(x)
			diff2 += d * d
			ref2 += float64(x) * float64(x)
			maxAbs = math.Max(maxAbs, math.Abs(d))
			if math.IsNaN(d) {
				maxAbs = math.NaN()
			}
		}
		rel := math.Sqrt(diff2)
		if ref2 > 0 {
			rel = math.Sqrt(diff2 / ref2)
		}
		v.rep.DequantError = append(v.rep.DequantError, reports.DequantError{Module: m.name, RelativeError: reports.Float(rel), MaxAbsError: reports.Float(maxAbs)})
		if !(rel <= mismatchLimit) {
			key, module, id := m.name, m.name, -1
			msg := fmt.Sprintf("%s: dequantized %s weight differs from the reference %s: relative error %.4g (max abs %.4g)", m.name, f, rs.name, rel, maxAbs)
			if le := v.mods.experts[m.layer]; le != nil && m.expert >= 0 {
				key, module, id = le.prefix+"|"+m.proj, le.prefix, m.expert
				msg = fmt.Sprintf("%s weights of experts %%s of %s differ from the reference (e.g. expert %d: relative error %.4g, max abs %.4g)", m.proj, module, m.expert, rel, maxAbs)
			}
			mism.add(key, group{rule: "reference.mismatch", tok: reports.TargetAny, sev: reports.SeverityError, tensor: m.weight.Name, module: module, msg: msg,
				behavior: "the engines load exactly these codes and scales: the module computes with the wrong weights"}, id, m.name)
			continue
		}
		results = append(results, result{m, rel})
	}
	mism.flush(v)
	if len(missing) > 0 {
		v.addAny("reference.missing", reports.SeverityInfo, "", missing[0],
			fmt.Sprintf("%d quantized modules have no counterpart in the reference: %s", len(missing), listNames(missing)), "")
	}
	// Outliers within each layer and projection.
	byKey := map[string][]result{}
	var keys []string
	for _, r := range results {
		k := fmt.Sprintf("%s|%d|%s|%d", r.m.prefix, r.m.layer, r.m.proj, r.m.kind)
		if _, ok := byKey[k]; !ok {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], r)
	}
	sort.Strings(keys)
	for _, k := range keys {
		rs := byKey[k]
		if len(rs) < 3 {
			continue
		}
		vals := make([]float64, len(rs))
		for i, r := range rs {
			vals[i] = r.rel
		}
		sort.Float64s(vals)
		med := vals[len(vals)/2]
		for _, r := range rs {
			if r.rel > outlierFloor && r.rel > outlierFactor*med {
				v.addAny("reference.outlier", reports.SeverityWarning, r.m.weight.Name, r.m.name,
					fmt.Sprintf("relative dequantization error %.4g is %.1f× the median %.4g of the %d %s modules of layer %d", r.rel, r.rel/med, med, len(rs), r.m.proj, r.m.layer),
					"the engines load these scales as given: this module's weights are noticeably less accurate (a scale that does not fit the weight, or a poorly calibrated block)")
			}
		}
	}
	return nil
}
