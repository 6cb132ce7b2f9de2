package export

import (
	"encoding/binary"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/ptqgate/ptqgate/ptqcore/quant"
	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
	"github.com/ptqgate/ptqgate/reports"
)

// tensorKind says what an expected tensor holds, for the value checks.
type tensorKind int

const (
	kindFP8Weight   tensorKind = iota // F8_E4M3 codes: no NaN
	kindNVFP4Weight                   // packed E2M1: any byte is valid
	kindBlockScale                    // F8_E4M3 block scales: finite and > 0
	kindScalar                        // F32 0-d scale: finite and > 0
)

// expectation is one tensor an enabled quantizer must have produced.
type expectation struct {
	tensor    string
	dtype     safetensors.DType
	shape     []int64
	kind      tensorKind
	quantizer string
	module    string
}

// issue is one failed expectation.
type issue struct {
	rule, module, tensor, detail string
}

// Engine behaviour quoted in findings (specs/vllm.md §6, specs/sglang.md §3.3).
const (
	behaviorMissing = "vLLM and SGLang do not detect missing tensors of a quantized layer: the parameter keeps its " +
		"initial value (FP8 dense scales −3.4e38, FP8 MoE scales 1.0, NVFP4 scales uninitialised; a missing expert " +
		"input_scale gives an infinite global scale and NaN output, vllm#45212) and the layer computes garbage"
	behaviorDType = "the loaders copy by value (copy_), so a tensor of another dtype is silently value-cast into the " +
		"quantized parameter: garbage, no error"
	behaviorShape    = "vLLM raises AssertionError (dense) or RuntimeError (MoE) at load; SGLang raises RuntimeError from copy_"
	behaviorScale    = "no engine validates scales: a zero, negative or non-finite scale silently gives inf/NaN or wrong amplitudes"
	behaviorNaN      = "NaN weights propagate NaN through every token that reaches the layer"
	behaviorFusedMix = "vLLM's Qwen3.5 loader switches to the fused path after the first fused expert tensor and then drops every per-expert scale (specs/vllm.md §4.1)"
)

var ruleText = map[string]struct {
	severity reports.Severity
	what     string
	behavior string
	source   string
}{
	RuleMissingTensor:    {reports.SeverityError, "missing", behaviorMissing, "specs/modelopt.md §4.2, §4.5"},
	RuleTensorDType:      {reports.SeverityError, "with the wrong dtype", behaviorDType, "specs/modelopt.md §4.2"},
	RuleTensorShape:      {reports.SeverityError, "with the wrong shape", behaviorShape, "specs/modelopt.md §4.2, §4.5"},
	RuleInvalidScale:     {reports.SeverityError, "holding an invalid scale", behaviorScale, "specs/modelopt.md §4.3"},
	RuleNaNWeight:        {reports.SeverityError, "holding NaN codes", behaviorNaN, "specs/transformers.md §9"},
	RuleFusedExpertsLeft: {reports.SeverityError, "left fused next to per-expert tensors", behaviorFusedMix, "specs/modelopt.md §4.5"},
}

// weightExpectations lists the tensors of one quantized weight named
// prefix+".weight" of shape [rows, cols].
func weightExpectations(prefix, algo string, rows, cols int, quantizer, module string) []expectation {
	if algo == quant.AlgoFP8 {
		return []expectation{
			{prefix + ".weight", safetensors.F8E4M3, shape64(rows, cols), kindFP8Weight, quantizer, module},
			{prefix + ".weight_scale", safetensors.F32, []int64{}, kindScalar, quantizer, module},
		}
	}
	kp := PaddedCols(cols)
	return []expectation{
		{prefix + ".weight", safetensors.U8, shape64(rows, kp/2), kindNVFP4Weight, quantizer, module},
		{prefix + ".weight_scale", safetensors.F8E4M3, shape64(rows, kp/NVFP4Block), kindBlockScale, quantizer, module},
		{prefix + ".weight_scale_2", safetensors.F32, []int64{}, kindScalar, quantizer, module},
	}
}

// expectations derives, from the quantizers alone (not from what the plan
// wrote), every tensor the export must contain, plus the findings for
// scales that are legitimately absent (use_constant_amax, uncalibrated
// under --allow-uncalibrated, inputs of unquantized modules).
func (p *plan) expectations() ([]expectation, []reports.Finding) {
	var exps []expectation
	var notes []reports.Finding
	noted := map[string]bool{}
	// inputScale expects <prefix>.input_scale for an enabled input
	// quantizer, or notes why there is none (once per quantizer).
	inputScale := func(prefix, qname, module string) {
		q := p.q[qname]
		if !q.Config.Enable {
			return
		}
		switch {
		case q.Config.UseConstantAmax:
			if !noted[qname] {
				noted[qname] = true
				notes = append(notes, reports.Finding{Rule: RuleConstantAmax, Severity: reports.SeverityInfo, Target: reports.TargetAny, Module: module,
					Message:        fmt.Sprintf("%s uses use_constant_amax: no %s is exported, as in the toolkit", qname, scaleLeaf(prefix)),
					EngineBehavior: "the engines use their default scale (1.0)", Source: "specs/modelopt.md §1.1, §1.4"})
			}
		case len(q.Amax) != 1:
			if !noted[qname] {
				noted[qname] = true
				notes = append(notes, reports.Finding{Rule: RuleInputOmitted, Severity: reports.SeverityWarning, Target: reports.TargetAny, Module: module, Tensor: prefix,
					Message:        fmt.Sprintf("%s was never calibrated: its %s tensors are omitted (--allow-uncalibrated), as the toolkit did", qname, scaleLeaf(prefix)),
					EngineBehavior: behaviorMissing, Source: "specs/modelopt.md §3.4"})
			}
		default:
			exps = append(exps, expectation{prefix, safetensors.F32, []int64{}, kindScalar, qname, module})
		}
	}
	inputWithoutWeight := func(qname, module string) {
		if q := p.q[qname]; q.Config.Enable {
			notes = append(notes, reports.Finding{Rule: RuleInputWithout, Severity: reports.SeverityInfo, Target: reports.TargetAny, Module: module,
				Message:        fmt.Sprintf("%s is enabled but the module's weights are not quantized: nothing is exported for it, as in the toolkit", qname),
				EngineBehavior: "the module loads unquantized", Source: "specs/modelopt.md §4.2"})
		}
	}
	for _, l := range p.m.Linears() {
		algo := p.linearAlgo[l.Name]
		if algo == "" {
			inputWithoutWeight(l.Name+suffixInput, l.Name)
			continue
		}
		exps = append(exps, weightExpectations(l.Name, algo, l.Out, l.In, l.Name+suffixWeight, l.Name)...)
		if algo != quant.AlgoW4A16NVFP4 {
			inputScale(l.Name+".input_scale", l.Name+suffixInput, l.Name)
		}
	}
	for _, b := range p.m.MoEBlocks() {
		ex := b.Experts
		algo := p.expertsAlgo[ex.Name]
		if algo == "" {
			inputWithoutWeight(quant.ExpertInputQuantizer(ex.Name, quant.ProjGateUp), ex.Name)
			inputWithoutWeight(quant.ExpertInputQuantizer(ex.Name, quant.ProjDown), ex.Name)
			continue
		}
		I, H := ex.Intermediate, ex.Hidden
		for e := 0; e < ex.NumExperts; e++ {
			base := ex.Name + "." + strconv.Itoa(e) + "."
			for _, pt := range []struct {
				proj, fused string
				rows, cols  int
			}{{projGate, quant.ProjGateUp, I, H}, {projUp, quant.ProjGateUp, I, H}, {projDown, quant.ProjDown, H, I}} {
				wq := quant.ExpertWeightQuantizer(ex.Name, pt.fused, e)
				exps = append(exps, weightExpectations(base+pt.proj, algo, pt.rows, pt.cols, wq, ex.Name)...)
				if algo != quant.AlgoW4A16NVFP4 {
					inputScale(base+pt.proj+".input_scale", quant.ExpertInputQuantizer(ex.Name, pt.fused), ex.Name)
				}
			}
		}
	}
	for _, mod := range p.m.Modules() {
		if mod.Kind != quant.KindAttention {
			continue
		}
		inputScale(mod.Name+".k_proj.k_scale", mod.Name+".k_bmm_quantizer", mod.Name)
		inputScale(mod.Name+".v_proj.v_scale", mod.Name+".v_bmm_quantizer", mod.Name)
	}
	return exps, notes
}

// scaleLeaf names the scale tensor kind of an expected tensor name.
func scaleLeaf(name string) string {
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		return name[i+1:]
	}
	return name
}

// selfCheck reads the written folder back: every expected tensor must be
// present with its dtype and shape, scales finite and positive, FP8 codes
// free of NaN, and no fused expert tensor may remain beside per-expert
// ones. It returns the findings (one per module and rule, naming the
// tensors), the round-trip dequantization error of every quantized module
// against the model's weights, and the written tensors for the report.
func (p *plan) selfCheck(dir string) ([]reports.Finding, []reports.DequantError, []reports.Tensor, error) {
	ck, err := safetensors.OpenCheckpoint(dir)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("export self-check: %w", err)
	}
	defer ck.Close()
	exps, findings := p.expectations()
	var issues []issue
	add := func(rule, module, tensor, detail string) {
		issues = append(issues, issue{rule, module, tensor, detail})
	}
	ok := map[string]bool{}
	for _, x := range exps {
		info, found := ck.Tensor(x.tensor)
		if !found {
			add(RuleMissingTensor, x.module, x.tensor, "for "+x.quantizer)
			continue
		}
		if info.DType != x.dtype {
			add(RuleTensorDType, x.module, x.tensor, fmt.Sprintf("%s, expected %s", info.DType, x.dtype))
			continue
		}
		if !slices.Equal(info.Shape, x.shape) {
			add(RuleTensorShape, x.module, x.tensor, fmt.Sprintf("%v, expected %v", info.Shape, x.shape))
			continue
		}
		raw, err := ck.ReadTensor(x.tensor)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("export self-check: %w", err)
		}
		switch x.kind {
		case kindScalar:
			v := math.Float32frombits(binary.LittleEndian.Uint32(raw))
			if !(v > 0) || math.IsInf(float64(v), 0) {
				add(RuleInvalidScale, x.module, x.tensor, fmt.Sprintf("value %g", v))
				continue
			}
		case kindBlockScale:
			if i := badBlockScale(raw); i >= 0 {
				add(RuleInvalidScale, x.module, x.tensor, fmt.Sprintf("block scale %d is 0x%02x", i, raw[i]))
				continue
			}
		case kindFP8Weight:
			if i := nanCode(raw); i >= 0 {
				add(RuleNaNWeight, x.module, x.tensor, fmt.Sprintf("element %d is NaN", i))
				continue
			}
		}
		ok[x.tensor] = true
	}
	for _, b := range p.m.MoEBlocks() {
		ex := b.Experts
		if p.expertsAlgo[ex.Name] == "" {
			continue
		}
		for _, n := range []string{ex.Name + ".gate_up_proj", ex.Name + ".down_proj"} {
			if _, found := ck.Tensor(n); found {
				add(RuleFusedExpertsLeft, ex.Name, n, "fused 3-D tensor")
			}
		}
	}
	findings = append(findings, issueFindings(issues)...)

	deq, err := p.dequantErrors(ck, ok)
	if err != nil {
		return nil, nil, nil, err
	}
	var tensors []reports.Tensor
	for _, t := range ck.Tensors() {
		tensors = append(tensors, reports.Tensor{Name: t.Name, DType: string(t.DType), Shape: append([]int64{}, t.Shape...), Bytes: t.Size, File: filepath.Base(t.File)})
	}
	sort.Slice(tensors, func(i, j int) bool { return tensors[i].Name < tensors[j].Name })
	return findings, deq, tensors, nil
}

// issueFindings turns issues into one finding per (module, rule), in
// first-seen order, naming up to three tensors and the count.
func issueFindings(issues []issue) []reports.Finding {
	type key struct{ module, rule string }
	groups := map[key][]issue{}
	var order []key
	for _, is := range issues {
		k := key{is.module, is.rule}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], is)
	}
	var out []reports.Finding
	for _, k := range order {
		g := groups[k]
		rt := ruleText[k.rule]
		var names []string
		for i, is := range g {
			if i == 3 {
				names = append(names, fmt.Sprintf("… %d more", len(g)-3))
				break
			}
			names = append(names, fmt.Sprintf("%s (%s)", is.tensor, is.detail))
		}
		out = append(out, reports.Finding{
			Rule: k.rule, Severity: rt.severity, Target: reports.TargetAny, Tensor: g[0].tensor, Module: k.module,
			Message:        fmt.Sprintf("export self-check: %d tensor(s) of enabled quantizers of %s %s: %s", len(g), k.module, rt.what, strings.Join(names, ", ")),
			EngineBehavior: rt.behavior, Source: rt.source,
		})
	}
	return out
}

// badBlockScale returns the index of the first E4M3 block scale that is
// zero (either sign) or NaN, or -1.
func badBlockScale(raw []byte) int {
	for i, b := range raw {
		if b&0x7F == 0 || b&0x7F == 0x7F || b&0x80 != 0 {
			return i
		}
	}
	return -1
}

// nanCode returns the index of the first E4M3 NaN code, or -1.
func nanCode(raw []byte) int {
	for i, b := range raw {
		if b&0x7F == 0x7F {
			return i
		}
	}
	return -1
}

// readF32 reads a 0-d F32 tensor.
func readF32(ck *safetensors.Checkpoint, name string) (float32, error) {
	raw, err := ck.ReadTensor(name)
	if err != nil {
		return 0, err
	}
	return math.Float32frombits(binary.LittleEndian.Uint32(raw)), nil
}

// dequantize reads one quantized weight back from the folder and returns
// its dequantized values [rows, cols].
func dequantize(ck *safetensors.Checkpoint, prefix, algo string, rows, cols int) ([]float32, error) {
	w, err := ck.ReadTensor(prefix + ".weight")
	if err != nil {
		return nil, err
	}
	if algo == quant.AlgoFP8 {
		s, err := readF32(ck, prefix+".weight_scale")
		if err != nil {
			return nil, err
		}
		return DequantizeFP8(w, s), nil
	}
	bs, err := ck.ReadTensor(prefix + ".weight_scale")
	if err != nil {
		return nil, err
	}
	s2, err := readF32(ck, prefix+".weight_scale_2")
	if err != nil {
		return nil, err
	}
	return DequantizeNVFP4(w, bs, rows, cols, s2), nil
}

// errAcc accumulates a relative error over several tensors.
type errAcc struct{ num, den, maxAbs float64 }

func (a *errAcc) add(ref, got []float32) {
	for i := range ref {
		d := float64(ref[i]) - float64(got[i])
		a.num += d * d
		a.den += float64(ref[i]) * float64(ref[i])
		if ad := math.Abs(d); ad > a.maxAbs || ad != ad {
			a.maxAbs = ad
		}
	}
}

func (a *errAcc) result(module string) reports.DequantError {
	rel := 0.0
	switch {
	case a.den > 0:
		rel = math.Sqrt(a.num / a.den)
	case a.num > 0:
		rel = math.Inf(1)
	}
	return reports.DequantError{Module: module, RelativeError: reports.Float(rel), MaxAbsError: reports.Float(a.maxAbs)}
}

// dequantErrors compares every quantized module read back from the folder
// with the model's weights: ‖W−Ŵ‖/‖W‖ and max|W−Ŵ| per Linear, and over
// all experts and projections per fused experts module. Modules whose
// tensors failed the checks are skipped.
func (p *plan) dequantErrors(ck *safetensors.Checkpoint, ok map[string]bool) ([]reports.DequantError, error) {
	var out []reports.DequantError
	valid := func(prefix, algo string) bool {
		if !ok[prefix+".weight"] || !ok[prefix+".weight_scale"] {
			return false
		}
		return algo == quant.AlgoFP8 || ok[prefix+".weight_scale_2"]
	}
	for _, l := range p.m.Linears() {
		algo := p.linearAlgo[l.Name]
		if algo == "" || !valid(l.Name, algo) {
			continue
		}
		got, err := dequantize(ck, l.Name, algo, l.Out, l.In)
		if err != nil {
			return nil, fmt.Errorf("export self-check: %w", err)
		}
		var acc errAcc
		acc.add(l.Weight.Data, got)
		out = append(out, acc.result(l.Name))
	}
	for _, b := range p.m.MoEBlocks() {
		ex := b.Experts
		algo := p.expertsAlgo[ex.Name]
		if algo == "" {
			continue
		}
		var acc errAcc
		complete := true
		I, H := ex.Intermediate, ex.Hidden
		for e := 0; e < ex.NumExperts && complete; e++ {
			base := ex.Name + "." + strconv.Itoa(e) + "."
			gu := ex.GateUpWeight(e)
			for _, pt := range []struct {
				proj       string
				ref        []float32
				rows, cols int
			}{{projGate, gu[:I*H], I, H}, {projUp, gu[I*H:], I, H}, {projDown, ex.DownWeight(e), H, I}} {
				if !valid(base+pt.proj, algo) {
					complete = false
					break
				}
				got, err := dequantize(ck, base+pt.proj, algo, pt.rows, pt.cols)
				if err != nil {
					return nil, fmt.Errorf("export self-check: %w", err)
				}
				acc.add(pt.ref, got)
			}
		}
		if complete {
			out = append(out, acc.result(ex.Name))
		}
	}
	return out, nil
}
