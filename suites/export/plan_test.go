package export_test

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/ptqgate/ptqgate/reports"
)

// Format constants of specs/modelopt.md §4.3.
const (
	e4m3Max    = 448.0
	e2m1Max    = 6.0
	nvfp4Group = 16
)

// quantized is one module the export must store quantized, derived from the
// calibration report's quantizers (never from the exporter).
type quantized struct {
	Module string
	// Format is the weight quantizer's format: "fp8" or "nvfp4".
	Format string
	// WeightAmax is the weight quantizer's per-tensor amax.
	WeightAmax float64
	// InputAmax is the input quantizer's amax; NaN when it is disabled.
	InputAmax float64
}

// plan is what an export of a calibration must contain.
type plan struct {
	Modules map[string]*quantized
	// KV maps k_scale/v_scale tensor names to the bmm quantizer amax.
	KV map[string]float64
	// Experts is the routed expert count per MoE layer.
	Experts int
}

func amaxOf(q reports.Quantizer) float64 {
	GinkgoHelper()
	Expect(q.Amax).NotTo(BeNil(), "%s is enabled but has no amax", q.Name)
	Expect(q.Amax.Values).To(HaveLen(1), "%s: per-tensor amax expected", q.Name)
	return float64(q.Amax.Values[0])
}

// planOf derives the expected export from a calibration report.
func planOf(r *reports.Report) *plan {
	GinkgoHelper()
	p := &plan{Modules: map[string]*quantized{}, KV: map[string]float64{}, Experts: r.Model.Experts}
	get := func(m string) *quantized {
		if p.Modules[m] == nil {
			p.Modules[m] = &quantized{Module: m, InputAmax: math.NaN()}
		}
		return p.Modules[m]
	}
	inputs := map[string]float64{}
	for _, q := range r.Quantizers {
		if !q.Enabled {
			continue
		}
		name := q.Name
		switch {
		case strings.HasSuffix(name, ".weight_quantizer"):
			m := get(strings.TrimSuffix(name, ".weight_quantizer"))
			m.Format, m.WeightAmax = q.Format, amaxOf(q)
		case strings.HasSuffix(name, ".input_quantizer"):
			inputs[strings.TrimSuffix(name, ".input_quantizer")] = amaxOf(q)
		case strings.Contains(name, "_weight_quantizers."):
			i := strings.LastIndex(name, "_weight_quantizers.")
			container, proj := name[:strings.LastIndex(name[:i], ".")], name[strings.LastIndex(name[:i], ".")+1:i]
			e, err := strconv.Atoi(name[i+len("_weight_quantizers."):])
			Expect(err).NotTo(HaveOccurred())
			for _, sub := range expertProjections(proj) {
				m := get(fmt.Sprintf("%s.%d.%s", container, e, sub))
				m.Format, m.WeightAmax = q.Format, amaxOf(q)
			}
		case strings.HasSuffix(name, "_proj_input_quantizer") && strings.Contains(name, ".experts."):
			container, proj, _ := strings.Cut(name, ".experts.")
			proj = strings.TrimSuffix(proj, "_input_quantizer")
			for e := range p.Experts {
				for _, sub := range expertProjections(proj) {
					inputs[fmt.Sprintf("%s.experts.%d.%s", container, e, sub)] = amaxOf(q)
				}
			}
		case strings.HasSuffix(name, ".k_bmm_quantizer"):
			p.KV[strings.TrimSuffix(name, "k_bmm_quantizer")+"k_proj.k_scale"] = amaxOf(q)
		case strings.HasSuffix(name, ".v_bmm_quantizer"):
			p.KV[strings.TrimSuffix(name, "v_bmm_quantizer")+"v_proj.v_scale"] = amaxOf(q)
		default:
			Fail("a quantizer the export suite does not know: " + name)
		}
	}
	for m, a := range inputs {
		if q, ok := p.Modules[m]; ok {
			q.InputAmax = a
		}
	}
	return p
}

// expertProjections maps a fused experts projection to the per-expert
// modules the export splits it into (specs/modelopt.md §4.5).
func expertProjections(proj string) []string {
	if proj == "gate_up_proj" {
		return []string{"gate_proj", "up_proj"}
	}
	return []string{proj}
}

// fusionGroups are the dense sibling modules that read the same input and
// that the engines fuse; for formats other than per-tensor FP8 the export
// unifies their input amax and their per-tensor weight amax to the group
// maximum (specs/modelopt.md §4.4, preprocess_linear_fusion).
var fusionGroups = [][]string{
	{"q_proj", "k_proj", "v_proj"},
	{"gate_proj", "up_proj"},
	{"in_proj_qkv", "in_proj_z", "in_proj_b", "in_proj_a"},
}

// unified returns the weight and input amax the export uses for module q:
// its own for FP8 and for routed experts (whose gate and up share one
// quantizer already), else the maximum over its enabled fusion group.
func (p *plan) unified(q *quantized) (weight, input float64) {
	weight, input = q.WeightAmax, q.InputAmax
	if q.Format == "fp8" || strings.Contains(q.Module, ".mlp.experts.") {
		return
	}
	parent, leaf := q.Module[:strings.LastIndex(q.Module, ".")], q.Module[strings.LastIndex(q.Module, ".")+1:]
	for _, g := range fusionGroups {
		if !slices.Contains(g, leaf) {
			continue
		}
		for _, sib := range g {
			if s, ok := p.Modules[parent+"."+sib]; ok && s.Format == q.Format {
				weight = math.Max(weight, s.WeightAmax)
				if !math.IsNaN(s.InputAmax) {
					input = math.Max(input, s.InputAmax)
				}
			}
		}
	}
	return
}

// scaleTensors returns the tensors (besides .weight) the format stores for
// a quantized module, with dtype and shape, given the weight's [out, in].
func scaleTensors(q *quantized, out, in int64) map[string]tensor {
	s := map[string]tensor{}
	switch q.Format {
	case "fp8":
		s[".weight"] = tensor{DType: "F8_E4M3", Shape: []int64{out, in}}
		s[".weight_scale"] = tensor{DType: "F32", Shape: []int64{}}
	case "nvfp4":
		padded := (in + nvfp4Group - 1) / nvfp4Group * nvfp4Group
		s[".weight"] = tensor{DType: "U8", Shape: []int64{out, padded / 2}}
		s[".weight_scale"] = tensor{DType: "F8_E4M3", Shape: []int64{out, padded / nvfp4Group}}
		s[".weight_scale_2"] = tensor{DType: "F32", Shape: []int64{}}
	}
	if !math.IsNaN(q.InputAmax) {
		s[".input_scale"] = tensor{DType: "F32", Shape: []int64{}}
	}
	return s
}

// castE2M1 is ModelOpt's _cast_fp4 (specs/modelopt.md §4.3), written here
// from the spec: the code counts the grid boundaries below |x|, plus one
// where |x| is exactly 0.75, 1.75 or 3.5 (round half to even on the code
// grid), with the sign in bit 3 (a negative value that rounds to 0 is -0).
func castE2M1(x float32) uint8 {
	a := math.Abs(float64(x))
	var code uint8
	for _, b := range []float64{0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5} {
		if b < a {
			code++
		}
	}
	if a == 0.75 || a == 1.75 || a == 3.5 {
		code++
	}
	if x < 0 {
		code |= 8
	}
	return code
}
