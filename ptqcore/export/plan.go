package export

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/ptqgate/ptqgate/ptqcore/backend"
	"github.com/ptqgate/ptqgate/ptqcore/model"
	"github.com/ptqgate/ptqgate/ptqcore/numerics"
	"github.com/ptqgate/ptqgate/ptqcore/quant"
	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
	"github.com/ptqgate/ptqgate/reports"
)

// Quantizer is one quantizer as the exporter needs it: its identity and
// configuration after the recipe (quant.Quantizer) and its calibrated amax.
type Quantizer struct {
	quant.Quantizer
	// Amax is the calibrated per-tensor amax (one value); nil when the
	// quantizer was never calibrated. Under use_constant_amax the exporter
	// writes no scale, whatever Amax holds; under constant_amax Amax holds
	// the constant.
	Amax []float32
}

// Input is what an export is made from: the loaded model (its in-memory
// weights, its source checkpoint folder) and every quantizer of the model
// (quant.Enumerate's set) with its configuration and amax.
type Input struct {
	Model      *model.Model
	Quantizers []Quantizer
}

// Finding rule IDs of the export (stable: reports and suites key on them).
const (
	// RuleMissingTensor: an enabled quantizer's tensor is not in the export.
	RuleMissingTensor = "export.missing-tensor"
	// RuleTensorDType: an expected tensor has another dtype.
	RuleTensorDType = "export.tensor-dtype"
	// RuleTensorShape: an expected tensor has another shape.
	RuleTensorShape = "export.tensor-shape"
	// RuleInvalidScale: a scale is zero, negative or not finite.
	RuleInvalidScale = "export.invalid-scale"
	// RuleNaNWeight: FP8 weight codes hold NaN.
	RuleNaNWeight = "export.nan-weight"
	// RuleFusedExpertsLeft: a fused 3-D expert tensor sits beside the
	// per-expert ones of a quantized experts module.
	RuleFusedExpertsLeft = "export.fused-experts-left"
	// RuleInputOmitted (warning): an uncalibrated quantizer's scales were
	// omitted under --allow-uncalibrated, as the toolkit did.
	RuleInputOmitted = "export.input-scale-omitted"
	// RuleWeightFallback (warning): a weight quantizer without a valid amax
	// was exported with max|W| (the toolkit's fallback).
	RuleWeightFallback = "export.weight-amax-fallback"
	// RuleConstantAmax (info): use_constant_amax exports no scale.
	RuleConstantAmax = "export.constant-amax-no-scale"
	// RuleInputWithout (info): an enabled input quantizer of a module whose
	// weights are not quantized exports nothing.
	RuleInputWithout = "export.input-without-weight"
)

// Quantizer-name suffixes (ModelOpt's names, INTERFACES.md "Quantizer names").
const (
	suffixInput  = ".input_quantizer"
	suffixWeight = ".weight_quantizer"
)

// Fused-expert projections as written per expert.
const (
	projGate = "gate_proj"
	projUp   = "up_proj"
	projDown = "down_proj"
)

// layerConfig is one quantized module's per-layer format for
// hf_quant_config.json.
type layerConfig struct {
	Algo      string
	GroupSize int // 0: none (FP8)
}

// plan is everything an export writes, decided before any byte is written.
type plan struct {
	in   Input
	m    *model.Model
	opt  Options
	q    map[string]*Quantizer
	amax map[string]float32 // effective per-tensor amax after fallback and unification

	modelDType safetensors.DType // the in-memory weight dtype: FP8 quotients are computed in it
	outDType   safetensors.DType // unquantized tensors

	linearAlgo  map[string]string // Linear module → quant_algo ("" unquantized)
	expertsAlgo map[string]string // fused experts module → quant_algo
	kvAlgo      string            // "FP8" or ""

	quantized   []string // module names with a format, in module order
	layerCfg    map[string]layerConfig
	unquantized []string // modules for exclude_modules, in module order
	protected   []string // quantized names and their engine aliases

	findings []reports.Finding
	tensors  []safetensors.Source
	source   *safetensors.Checkpoint // opened for the Unused tensors
}

// safetensorsDType maps a model dtype to its safetensors spelling.
func safetensorsDType(d backend.DType) safetensors.DType {
	switch d {
	case backend.BF16:
		return safetensors.BF16
	case backend.F16:
		return safetensors.F16
	}
	return safetensors.F32
}

// configDTypeName is the config.json spelling of an output dtype.
func configDTypeName(d safetensors.DType) string {
	if d == safetensors.F16 {
		return "float16"
	}
	return "bfloat16"
}

// newPlan checks the input and decides formats, scales and the tensors.
func newPlan(in Input, opt Options) (*plan, error) {
	m := in.Model
	if m == nil {
		return nil, fmt.Errorf("export: no model")
	}
	p := &plan{
		in: in, m: m, opt: opt,
		q:           map[string]*Quantizer{},
		amax:        map[string]float32{},
		modelDType:  safetensorsDType(m.DType),
		linearAlgo:  map[string]string{},
		expertsAlgo: map[string]string{},
		layerCfg:    map[string]layerConfig{},
	}
	switch opt.DType {
	case DTypeAuto, "":
		p.outDType = safetensors.BF16
		if m.DType == backend.F16 {
			p.outDType = safetensors.F16
		}
	case DTypeBF16:
		p.outDType = safetensors.BF16
	case DTypeF16:
		p.outDType = safetensors.F16
	default:
		return nil, &UsageError{Msg: fmt.Sprintf("--dtype %q (valid: auto, bf16, f16)", opt.DType)}
	}
	for i := range in.Quantizers {
		q := &in.Quantizers[i]
		if _, dup := p.q[q.Name]; dup {
			return nil, fmt.Errorf("export: quantizer %s listed twice", q.Name)
		}
		p.q[q.Name] = q
	}
	if err := p.checkCalibrated(); err != nil {
		return nil, err
	}
	if err := p.decideFormats(); err != nil {
		return nil, err
	}
	if err := p.unify(); err != nil {
		return nil, err
	}
	if err := p.exclusions(); err != nil {
		return nil, err
	}
	return p, nil
}

// quantizer returns the named quantizer or an error saying the quantizer
// set does not match the model.
func (p *plan) quantizer(name string) (*Quantizer, error) {
	q, ok := p.q[name]
	if !ok {
		return nil, fmt.Errorf("export: the model has no quantizer %s (the quantizer set does not match the model)", name)
	}
	return q, nil
}

// validAmax reports whether a quantizer holds one usable amax: present,
// finite and > 0.
func validAmax(q *Quantizer) bool {
	if len(q.Amax) != 1 {
		return false
	}
	a := q.Amax[0]
	return a > 0 && !math.IsInf(float64(a), 0)
}

// needsAmax reports whether an enabled quantizer needs a calibrated amax
// for the export (use_constant_amax quantizers export no scale).
func needsAmax(q *Quantizer) bool { return q.Config.Enable && !q.Config.UseConstantAmax }

// checkCalibrated refuses enabled quantizers without a valid amax unless
// --allow-uncalibrated, and quantizers whose amax is not per tensor.
func (p *plan) checkCalibrated() error {
	var bad []string
	for i := range p.in.Quantizers {
		q := &p.in.Quantizers[i]
		if !needsAmax(q) {
			continue
		}
		if len(q.Amax) > 1 {
			return &UnsupportedError{Subject: q.Name, Reason: fmt.Sprintf("amax has %d values; the exporter writes per-tensor scales only (FP8 per-tensor, NVFP4 global, FP8 KV)", len(q.Amax))}
		}
		if !validAmax(q) {
			bad = append(bad, q.Name)
		}
	}
	if len(bad) > 0 && !p.opt.AllowUncalibrated {
		return &UncalibratedError{Names: bad}
	}
	return nil
}

// weightFormat returns a module's quant_algo from its weight and input
// quantizers ("" when the weight is not quantized) and checks that ptqgate
// can export it.
func weightFormat(module string, wq, iq *Quantizer) (string, error) {
	w, in := wq.Config, iq.Config
	algo := quant.ModuleFormat(w, in)
	ok := false
	switch algo {
	case "":
		return "", nil
	case quant.AlgoFP8:
		if w.IsFP8() && !in.IsFP8() {
			return "", &UnsupportedError{Subject: module, Reason: fmt.Sprintf("FP8 weights need an FP8 per-tensor input quantizer (input: %s)", in.Format())}
		}
		ok = w.IsFP8()
	case quant.AlgoNVFP4:
		ok = w.IsNVFP4() && in.IsNVFP4()
	case quant.AlgoW4A16NVFP4:
		ok = w.IsNVFP4()
	}
	if !ok {
		return "", &UnsupportedError{Subject: module, Reason: fmt.Sprintf("module format %s (weight %s, input %s) cannot be exported (FP8, NVFP4, W4A16_NVFP4)", algo, w.Format(), in.Format())}
	}
	if w.UseConstantAmax {
		return "", &UnsupportedError{Subject: wq.Name, Reason: "use_constant_amax on a weight quantizer: the toolkit exports no weight scale for it; use constant_amax or calibrate"}
	}
	return algo, nil
}

// decideFormats sets the per-module quant_algo of every Linear and fused
// experts module and the KV cache format.
func (p *plan) decideFormats() error {
	m := p.m
	for _, l := range m.Linears() {
		w, err := p.quantizer(l.Name + suffixWeight)
		if err != nil {
			return err
		}
		in, err := p.quantizer(l.Name + suffixInput)
		if err != nil {
			return err
		}
		algo, err := weightFormat(l.Name, w, in)
		if err != nil {
			return err
		}
		if algo != "" && l.Weight == m.Embed {
			return &UnsupportedError{Subject: l.Name, Reason: "lm_head is tied to the embeddings (tie_word_embeddings) and cannot be quantized separately; disable its quantizers"}
		}
		if algo != "" && l.In < 1 {
			return fmt.Errorf("export: %s: input size %d", l.Name, l.In)
		}
		p.linearAlgo[l.Name] = algo
	}
	for _, b := range m.MoEBlocks() {
		ex := b.Experts
		var algos [2]string
		for i, proj := range []string{quant.ProjGateUp, quant.ProjDown} {
			in, err := p.quantizer(quant.ExpertInputQuantizer(ex.Name, proj))
			if err != nil {
				return err
			}
			for e := 0; e < ex.NumExperts; e++ {
				w, err := p.quantizer(quant.ExpertWeightQuantizer(ex.Name, proj, e))
				if err != nil {
					return err
				}
				algo, err := weightFormat(ex.Name, w, in)
				if err != nil {
					return err
				}
				if e == 0 {
					algos[i] = algo
				} else if algo != algos[i] {
					return &UnsupportedError{Subject: ex.Name, Reason: fmt.Sprintf("experts 0 and %d of %s have different formats (%s, %s); one fused experts module needs one format", e, proj, algoName(algos[i]), algoName(algo))}
				}
			}
		}
		if algos[0] != algos[1] {
			return &UnsupportedError{Subject: ex.Name, Reason: fmt.Sprintf("gate_up_proj is %s but down_proj is %s; one fused experts module needs one format", algoName(algos[0]), algoName(algos[1]))}
		}
		p.expertsAlgo[ex.Name] = algos[0]
	}
	for _, mod := range m.Modules() {
		if mod.Kind != quant.KindAttention {
			continue
		}
		for _, role := range []string{".k_bmm_quantizer", ".v_bmm_quantizer"} {
			q, err := p.quantizer(mod.Name + role)
			if err != nil {
				return err
			}
			if !q.Config.Enable {
				continue
			}
			if !q.Config.IsFP8() {
				return &UnsupportedError{Subject: q.Name, Reason: fmt.Sprintf("KV cache format %s cannot be exported (FP8 only)", q.Config.Format())}
			}
			p.kvAlgo = quant.AlgoFP8
		}
	}
	return nil
}

func algoName(a string) string {
	if a == "" {
		return "unquantized"
	}
	return a
}

// inputGroup returns the key of the Linears that read the same input tensor
// (ModelOpt finds them with a dummy forward, specs/modelopt.md §4.4): q/k/v
// of an attention block, gate/up of an MLP (a shared expert's
// shared_expert_gate reads the same input as its gate/up), and the input
// projections of a Gated DeltaNet block. "" for a Linear with its own input.
func inputGroup(name string) string {
	parent, leaf := name, name
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		parent, leaf = name[:i], name[i+1:]
	}
	switch leaf {
	case "q_proj", "k_proj", "v_proj":
		return parent + "#qkv"
	case "gate_proj", "up_proj":
		return parent + "#gate_up"
	case "shared_expert_gate":
		return parent + ".shared_expert#gate_up"
	case "in_proj_qkv", "in_proj_z", "in_proj_b", "in_proj_a", "in_proj_qkvz", "in_proj_ba":
		return parent + "#in_proj"
	}
	return ""
}

// engineLayer returns the fused layer the engines load a Linear into
// ("…self_attn.qkv_proj"), or "" when they load it on its own.
func engineLayer(name string) string {
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		if f, ok := engineFused[name[i+1:]]; ok {
			return name[:i+1] + f
		}
	}
	return ""
}

// unify applies the weight-amax fallback and ModelOpt's scale unification
// of Linears that share an input (specs/modelopt.md §4.4): skipped for
// per-tensor FP8; for NVFP4 and W4A16_NVFP4 the input amax and the
// (scalar) weight amax become the group's maximum, so q/k/v and gate/up get
// equal weight_scale_2 and input_scale. It also refuses groups the engines
// cannot load: Linears fused into one engine layer with different formats.
func (p *plan) unify() error {
	m := p.m
	// Weight amax with the toolkit's fallback.
	for _, l := range m.Linears() {
		if p.linearAlgo[l.Name] == "" {
			continue
		}
		p.weightAmax(l.Name+suffixWeight, l.Name, func() []float32 { return l.Weight.Data })
	}
	for _, b := range m.MoEBlocks() {
		ex := b.Experts
		if p.expertsAlgo[ex.Name] == "" || p.opt.FormatGate {
			continue
		}
		for e := 0; e < ex.NumExperts; e++ {
			p.weightAmax(quant.ExpertWeightQuantizer(ex.Name, quant.ProjGateUp, e), ex.ExpertName(e), func() []float32 { return ex.GateUpWeight(e) })
			p.weightAmax(quant.ExpertWeightQuantizer(ex.Name, quant.ProjDown, e), ex.ExpertName(e), func() []float32 { return ex.DownWeight(e) })
		}
	}
	// Engine-fused layers must have one format.
	fused := map[string][]string{}
	var fusedOrder []string
	for _, l := range m.Linears() {
		if f := engineLayer(l.Name); f != "" {
			if _, ok := fused[f]; !ok {
				fusedOrder = append(fusedOrder, f)
			}
			fused[f] = append(fused[f], l.Name)
		}
	}
	for _, f := range fusedOrder {
		names := fused[f]
		for _, n := range names[1:] {
			if p.linearAlgo[n] != p.linearAlgo[names[0]] {
				return &UnsupportedError{Subject: f, Reason: fmt.Sprintf("vLLM and SGLang load %s into one layer, but %s is %s and %s is %s; all shards of a fused layer need one format",
					strings.Join(names, ", "), names[0], algoName(p.linearAlgo[names[0]]), n, algoName(p.linearAlgo[n]))}
			}
		}
	}
	// Shared-input groups of Linears with an enabled quantizer.
	groups := map[string][]*model.Linear{}
	var order []string
	for _, l := range m.Linears() {
		key := inputGroup(l.Name)
		if key == "" {
			continue
		}
		w, in := p.q[l.Name+suffixWeight], p.q[l.Name+suffixInput]
		if !w.Config.Enable && !in.Config.Enable {
			continue
		}
		if _, ok := groups[key]; !ok {
			order = append(order, key)
		}
		groups[key] = append(groups[key], l)
	}
	for _, key := range order {
		g := groups[key]
		if len(g) < 2 {
			continue
		}
		algo := p.linearAlgo[g[0].Name]
		for _, l := range g[1:] {
			if p.linearAlgo[l.Name] != algo {
				return &UnsupportedError{Subject: g[0].Name, Reason: fmt.Sprintf("%s and %s read the same input but have different formats (%s, %s); ModelOpt's export refuses such groups (\"Modules have different quantization formats\")",
					g[0].Name, l.Name, algoName(algo), algoName(p.linearAlgo[l.Name]))}
			}
		}
		if algo == "" || algo == quant.AlgoFP8 {
			continue
		}
		p.unifyAmax(g, suffixInput)
		p.unifyAmax(g, suffixWeight)
	}
	return nil
}

// unifyAmax sets the effective amax of the group's quantizers named
// <linear><suffix> that have one (amaxOf: enabled, without
// use_constant_amax) to the group's largest.
func (p *plan) unifyAmax(g []*model.Linear, suffix string) {
	best, found := float32(0), false
	for _, l := range g {
		if a, ok := p.amaxOf(l.Name + suffix); ok && a > best {
			best, found = a, true
		}
	}
	if !found {
		return
	}
	for _, l := range g {
		if _, ok := p.amaxOf(l.Name + suffix); ok {
			p.amax[l.Name+suffix] = best
		}
	}
}

// amaxOf returns a quantizer's effective amax: the unified or fallback
// value if set, else its calibrated value (present, even if not valid).
func (p *plan) amaxOf(name string) (float32, bool) {
	if a, ok := p.amax[name]; ok {
		return a, true
	}
	q := p.q[name]
	if q == nil || len(q.Amax) != 1 || !q.Config.Enable || q.Config.UseConstantAmax {
		return 0, false
	}
	return q.Amax[0], true
}

// weightAmax sets the effective amax of a weight quantizer: its calibrated
// value, or — when missing, zero or not finite (only reachable with
// --allow-uncalibrated) — max|W| of the weights it quantizes, with a
// warning. For fused experts the weights are the whole gate_up_proj[e]
// (ModelOpt #1411), so gate and up keep one shared scale.
func (p *plan) weightAmax(name, module string, weights func() []float32) {
	q := p.q[name]
	if validAmax(q) {
		p.amax[name] = q.Amax[0]
		return
	}
	var a float32
	for _, v := range weights() {
		a = max(a, float32(math.Abs(float64(v))))
	}
	p.amax[name] = a
	p.findings = append(p.findings, reports.Finding{
		Rule: RuleWeightFallback, Severity: reports.SeverityWarning, Target: reports.TargetAny, Module: module,
		Message:        fmt.Sprintf("weight quantizer %s has no valid amax (%s); the export uses max|W| = %g of its weights, as the toolkit's fallback does", name, describeAmax(q.Amax), a),
		EngineBehavior: "none: the scales are consistent with the weights",
		Source:         "specs/modelopt.md §4.5 (#1411)",
	})
}

func describeAmax(a []float32) string {
	if len(a) == 0 {
		return "never calibrated"
	}
	return fmt.Sprintf("amax %g", a[0])
}

// paramOwners maps the parameters that quantized modules own: a Linear's
// weight to the Linear, a fused experts module's gate_up_proj to the module
// and its down_proj to nil (the module is handled once, at gate_up_proj).
func paramOwners(m *model.Model) (map[*model.Param]*model.Linear, map[*model.Param]*model.FusedExperts) {
	linearByWeight := map[*model.Param]*model.Linear{}
	for _, l := range m.Linears() {
		linearByWeight[l.Weight] = l
	}
	expertsByParam := map[*model.Param]*model.FusedExperts{}
	for _, b := range m.MoEBlocks() {
		expertsByParam[b.Experts.GateUp] = b.Experts
		expertsByParam[b.Experts.Down] = nil
	}
	return linearByWeight, expertsByParam
}

// exclusions builds the quantized and unquantized module lists (in module
// order) and the protected names.
func (p *plan) exclusions() error {
	m := p.m
	linearByWeight, expertsByParam := paramOwners(m)
	seen := map[string]bool{}
	addLinear := func(l *model.Linear) {
		if seen[l.Name] {
			return
		}
		seen[l.Name] = true
		if algo := p.linearAlgo[l.Name]; algo != "" {
			p.addQuantized(l.Name, algo, p.q[l.Name+suffixWeight].Config)
		} else {
			p.unquantized = append(p.unquantized, l.Name)
		}
	}
	for _, prm := range m.Params() {
		if l, ok := linearByWeight[prm]; ok {
			addLinear(l)
			continue
		}
		if ex, ok := expertsByParam[prm]; ok {
			if ex == nil {
				continue
			}
			algo := p.expertsAlgo[ex.Name]
			switch {
			case p.opt.FormatGate:
				// The PR-state exporter saw no format on the container: not listed.
			case algo != "":
				p.addQuantized(ex.Name, algo, p.q[quant.ExpertWeightQuantizer(ex.Name, quant.ProjGateUp, 0)].Config)
			default:
				p.unquantized = append(p.unquantized, ex.Name)
			}
			continue
		}
		if mod, ok := linearLike(prm.Name, len(prm.Shape)); ok && !seen[mod] {
			seen[mod] = true
			p.unquantized = append(p.unquantized, mod)
		}
	}
	for _, l := range m.Linears() { // a tied lm_head has no parameter of its own
		addLinear(l)
	}
	if len(m.Unused) > 0 {
		ck, err := safetensors.OpenCheckpoint(m.Dir)
		if err != nil {
			return err
		}
		defer ck.Close()
		for _, n := range m.Unused {
			info, _ := ck.Tensor(n)
			if mod, ok := linearLike(n, len(info.Shape)); ok && !seen[mod] {
				seen[mod] = true
				p.unquantized = append(p.unquantized, mod)
			}
		}
	}
	return nil
}

// addQuantized records a quantized module and its layer config.
func (p *plan) addQuantized(name, algo string, w quant.Config) {
	p.quantized = append(p.quantized, name)
	lc := layerConfig{Algo: algo}
	if algo != quant.AlgoFP8 && w.BlockSizes != nil {
		lc.GroupSize = w.BlockSizes.LastDim
	}
	p.layerCfg[name] = lc
	p.protected = append(p.protected, EngineAliases(name)...)
}

// linearLike reports whether a tensor is the weight of a module the
// engines build as a (possibly quantizable) linear-like layer — a ".weight"
// of two or more dimensions that is not an embedding table — and returns
// the module name. Routers (mlp.gate), convolutions and vision or MTP
// projections qualify; norms (1-D) and embeddings do not.
func linearLike(tensor string, ndim int) (string, bool) {
	mod, ok := strings.CutSuffix(tensor, ".weight")
	if !ok || ndim < 2 {
		return "", false
	}
	leaf := mod
	if i := strings.LastIndexByte(mod, '.'); i >= 0 {
		leaf = mod[i+1:]
	}
	if strings.Contains(leaf, "embed") || leaf == "wte" || leaf == "wpe" {
		return "", false
	}
	return mod, true
}

// scalarF32 is a 0-d float32 tensor.
func scalarF32(name string, v float32) safetensors.Source {
	b := make([]byte, 4)
	binary.LittleEndian.PutUint32(b, math.Float32bits(v))
	return safetensors.Source{Name: name, DType: safetensors.F32, Shape: []int64{}, Data: b}
}

// lazy is a tensor whose bytes are produced while the file is written.
func lazy(name string, dt safetensors.DType, shape []int64, gen func() ([]byte, error)) (safetensors.Source, error) {
	n, err := safetensors.NumElements(shape)
	if err != nil {
		return safetensors.Source{}, fmt.Errorf("export: tensor %q: %w", name, err)
	}
	size, err := dt.ByteSize(n)
	if err != nil {
		return safetensors.Source{}, fmt.Errorf("export: tensor %q: %w", name, err)
	}
	return safetensors.Source{Name: name, DType: dt, Shape: shape, Size: size, WriteTo: func(w io.Writer) error {
		b, err := gen()
		if err != nil {
			return err
		}
		if int64(len(b)) != size {
			return fmt.Errorf("produced %d bytes, want %d", len(b), size)
		}
		_, err = w.Write(b)
		return err
	}}, nil
}

func shape64(dims ...int) []int64 {
	out := make([]int64, len(dims))
	for i, d := range dims {
		out[i] = int64(d)
	}
	return out
}

// plainTensor is an unquantized tensor in the output dtype.
func (p *plan) plainTensor(name string, shape []int, data []float32) (safetensors.Source, error) {
	return lazy(name, p.outDType, shape64(shape...), func() ([]byte, error) {
		return numerics.EncodeFloats(string(p.outDType), data)
	})
}

// quantizedWeight adds the tensors of one quantized weight [rows, cols]
// named prefix+".weight": FP8 (weight, weight_scale) or NVFP4 (weight,
// weight_scale, weight_scale_2) from the weight amax, and input_scale from
// the input quantizer when it exports one.
func (p *plan) quantizedWeight(prefix, algo string, data []float32, rows, cols int, wAmax float32, input string) error {
	switch algo {
	case quant.AlgoFP8:
		scale := FP8WeightScale(wAmax)
		t, err := lazy(prefix+".weight", safetensors.F8E4M3, shape64(rows, cols), func() ([]byte, error) {
			return QuantizeFP8(prefix+".weight", data, scale, p.modelDType)
		})
		if err != nil {
			return err
		}
		p.tensors = append(p.tensors, t, scalarF32(prefix+".weight_scale", scale))
	case quant.AlgoNVFP4, quant.AlgoW4A16NVFP4:
		s2 := NVFP4WeightScale2(wAmax)
		kp := PaddedCols(cols)
		t, err := lazy(prefix+".weight", safetensors.U8, shape64(rows, kp/2), func() ([]byte, error) {
			packed, _ := QuantizeNVFP4(data, rows, cols, s2)
			return packed, nil
		})
		if err != nil {
			return err
		}
		bs, err := lazy(prefix+".weight_scale", safetensors.F8E4M3, shape64(rows, kp/NVFP4Block), func() ([]byte, error) {
			return NVFP4BlockScales(data, rows, cols, s2), nil
		})
		if err != nil {
			return err
		}
		p.tensors = append(p.tensors, t, bs, scalarF32(prefix+".weight_scale_2", s2))
	default:
		return fmt.Errorf("export: %s: no quantized layout for %q", prefix, algo)
	}
	if input == "" || algo == quant.AlgoW4A16NVFP4 {
		return nil
	}
	q := p.q[input]
	if !q.Config.Enable || q.Config.UseConstantAmax {
		return nil
	}
	a, ok := p.amaxOf(input)
	if !ok {
		return nil // uncalibrated under --allow-uncalibrated: omitted, as the toolkit did
	}
	if algo == quant.AlgoFP8 {
		p.tensors = append(p.tensors, scalarF32(prefix+".input_scale", FP8InputScale(a)))
	} else {
		p.tensors = append(p.tensors, scalarF32(prefix+".input_scale", NVFP4InputScale(a)))
	}
	return nil
}

// buildTensors lists every tensor of the output in model order: the text
// model's parameters (quantized Linears and per-expert projections
// replaced by their quantized tensors), then the KV scales, then the
// checkpoint tensors the text model does not use (vision tower, MTP),
// converted to the output dtype.
func (p *plan) buildTensors() error {
	m := p.m
	linearByWeight, expertsByParam := paramOwners(m)
	covered := map[string]bool{}
	for _, prm := range m.Params() {
		for _, s := range prm.Sources {
			covered[s] = true
		}
		if l, ok := linearByWeight[prm]; ok {
			if algo := p.linearAlgo[l.Name]; algo != "" {
				if err := p.quantizedWeight(l.Name, algo, l.Weight.Data, l.Out, l.In, p.amax[l.Name+suffixWeight], l.Name+suffixInput); err != nil {
					return err
				}
				continue
			}
		}
		if ex, ok := expertsByParam[prm]; ok {
			if ex != nil {
				if err := p.expertTensors(ex); err != nil {
					return err
				}
			}
			continue
		}
		if len(prm.Shape) == 0 {
			return fmt.Errorf("export: parameter %s has no shape", prm.Name)
		}
		t, err := p.plainTensor(prm.Name, prm.Shape, prm.Data)
		if err != nil {
			return err
		}
		p.tensors = append(p.tensors, t)
	}
	for _, mod := range m.Modules() {
		if mod.Kind != quant.KindAttention {
			continue
		}
		for _, kv := range []struct{ quantizer, tensor string }{{".k_bmm_quantizer", ".k_proj.k_scale"}, {".v_bmm_quantizer", ".v_proj.v_scale"}} {
			q := p.q[mod.Name+kv.quantizer]
			if !q.Config.Enable || q.Config.UseConstantAmax || len(q.Amax) != 1 {
				continue
			}
			p.tensors = append(p.tensors, scalarF32(mod.Name+kv.tensor, KVScale(q.Amax[0])))
		}
	}
	if len(m.Unused) > 0 {
		ck, err := safetensors.OpenCheckpoint(m.Dir)
		if err != nil {
			return err
		}
		p.source = ck
		for _, n := range m.Unused {
			covered[n] = true
			t, err := p.unusedTensor(ck, n)
			if err != nil {
				return err
			}
			p.tensors = append(p.tensors, t)
		}
	}
	// Every tensor of the source checkpoint must be accounted for.
	if p.source == nil {
		ck, err := safetensors.OpenCheckpoint(m.Dir)
		if err != nil {
			return err
		}
		defer ck.Close()
		return checkCovered(ck, covered)
	}
	return checkCovered(p.source, covered)
}

func checkCovered(ck *safetensors.Checkpoint, covered map[string]bool) error {
	for _, n := range ck.Names() {
		if !covered[n] {
			return fmt.Errorf("export: tensor %q of %s is neither a model parameter nor listed as unused: it would be lost", n, ck.Dir())
		}
	}
	return nil
}

// unusedTensor copies a checkpoint tensor the text model does not use:
// floating-point tensors (F32, F16, BF16) are converted to the output
// dtype, anything else is copied as is.
func (p *plan) unusedTensor(ck *safetensors.Checkpoint, name string) (safetensors.Source, error) {
	info, ok := ck.Tensor(name)
	if !ok {
		return safetensors.Source{}, fmt.Errorf("export: unused tensor %q is not in %s", name, ck.Dir())
	}
	switch info.DType {
	case safetensors.F32, safetensors.F16, safetensors.BF16:
		return lazy(name, p.outDType, info.Shape, func() ([]byte, error) {
			raw, err := ck.ReadTensor(name)
			if err != nil {
				return nil, err
			}
			vals, err := numerics.DecodeFloats(string(info.DType), raw)
			if err != nil {
				return nil, fmt.Errorf("tensor %q: %w", name, err)
			}
			return numerics.EncodeFloats(string(p.outDType), vals)
		})
	}
	return lazy(name, info.DType, info.Shape, func() ([]byte, error) { return ck.ReadTensor(name) })
}

// expertTensors writes one fused experts module as per-expert
// <experts>.<e>.{gate_proj,up_proj,down_proj}.* for every expert. Quantized:
// gate and up share the gate_up weight amax (one weight_scale_2 / FP8
// weight_scale) and every expert shares the layer's input scales. Under
// the format-gate fault, or when unquantized, the weights are written in
// the output dtype.
func (p *plan) expertTensors(ex *model.FusedExperts) error {
	I, H := ex.Intermediate, ex.Hidden
	algo := p.expertsAlgo[ex.Name]
	if p.opt.FormatGate {
		algo = ""
	}
	for e := 0; e < ex.NumExperts; e++ {
		base := ex.Name + "." + strconv.Itoa(e) + "."
		gu, down := ex.GateUpWeight(e), ex.DownWeight(e)
		parts := []struct {
			proj, fused string
			data        []float32
			rows, cols  int
		}{
			{projGate, quant.ProjGateUp, gu[:I*H], I, H},
			{projUp, quant.ProjGateUp, gu[I*H:], I, H},
			{projDown, quant.ProjDown, down, H, I},
		}
		for _, pt := range parts {
			if algo == "" {
				t, err := p.plainTensor(base+pt.proj+".weight", []int{pt.rows, pt.cols}, pt.data)
				if err != nil {
					return err
				}
				p.tensors = append(p.tensors, t)
				continue
			}
			wAmax := p.amax[quant.ExpertWeightQuantizer(ex.Name, pt.fused, e)]
			if err := p.quantizedWeight(base+pt.proj, algo, pt.data, pt.rows, pt.cols, wAmax, quant.ExpertInputQuantizer(ex.Name, pt.fused)); err != nil {
				return err
			}
		}
	}
	return nil
}
