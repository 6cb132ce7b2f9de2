package verifier

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
	"github.com/ptqgate/ptqgate/reports"
)

// spreadLimit is the max/median input-scale ratio across the experts of a
// layer above which values.input-scale-spread warns (specs/vllm.md §4.4).
const spreadLimit = 10

// paramOf returns a tensor name's last component.
func paramOf(name string) string { return name[strings.LastIndexByte(name, '.')+1:] }

// badValueBehavior says what the engines do with a non-finite or
// non-positive scale of the given parameter.
func badValueBehavior(param string, nonfinite bool) string {
	switch {
	case kvParams[param] && nonfinite:
		return "vLLM: NaN trips `assert k_all_pos` (AssertionError), Inf is accepted and corrupts the KV cache; SGLang: no check (garbage)"
	case kvParams[param]:
		return "vLLM: `assert k_all_pos` raises a bare AssertionError (0 or negative k_scale); SGLang: k ≤ 0 < v asserts, both ≤ 0 silently become 1.0"
	case param == pInput && nonfinite:
		return "no engine validates scales: the per-layer max over experts becomes Inf/NaN and every expert of the layer computes garbage (R14/R15)"
	case param == pInput:
		return "no engine validates scales: 1/input_scale = inf global scale → NaN for prompts that reach the module (vLLM #45212; fatal on per-expert backends, hidden by a global max only if another expert is larger)"
	}
	return "no engine validates weight scales: the module dequantizes to zero, negative or non-finite values, silently"
}

// checkValues checks every decoded scale and the scale relations the
// engines rely on.
func (v *run) checkValues() {
	v.evaluated("values.nonfinite", reports.TargetAny)
	v.evaluated("values.nonpositive", reports.TargetAny)
	var gs groups
	for _, t := range v.ck.list {
		if t.vals == nil {
			continue
		}
		n, vals := t.Name, t.vals
		var nonfinite, nonpos int
		var example float32
		for _, x := range vals {
			f := float64(x)
			switch {
			case math.IsNaN(f) || math.IsInf(f, 0):
				if nonfinite == 0 {
					example = x
				}
				nonfinite++
			case f <= 0:
				if nonpos == 0 && nonfinite == 0 {
					example = x
				}
				nonpos++
			}
		}
		if nonfinite == 0 && nonpos == 0 {
			continue
		}
		p := t.p
		param := paramOf(n)
		key, module, id := n, p.module, -1
		if p.kind == kindExpert || p.kind == kindExpertSwapped {
			if le := v.mods.experts[p.layer]; le != nil {
				key, module, id = le.prefix+"|"+p.proj+"|"+param, le.prefix, p.expert
			}
		}
		what := fmt.Sprintf("%s = %v", param, example)
		if len(vals) > 1 {
			what = fmt.Sprintf("%s has %d non-finite and %d non-positive values (e.g. %v)", param, nonfinite, nonpos, example)
		}
		rule := "values.nonpositive"
		if nonfinite > 0 {
			rule = "values.nonfinite"
		}
		msg := fmt.Sprintf("%s: %s", n, what)
		if id >= 0 {
			msg = fmt.Sprintf("%s.%s %s for experts %%s of %s", p.proj, param, describeBad(nonfinite > 0, example), module)
		}
		gs.add(rule+"|"+key, group{rule: rule, tok: reports.TargetAny, sev: reports.SeverityError, tensor: n, module: module, msg: msg,
			behavior: badValueBehavior(param, nonfinite > 0)}, id, n)
	}
	gs.flush(v)
	if !v.opt.SkipBlockScales {
		v.scanBlockScales()
	}
	v.checkUnitScales()
	for _, t := range v.targets {
		v.checkScaleRelations(t)
		v.checkSpread(t)
	}
}

// describeBad describes the first bad value.
func describeBad(nonfinite bool, x float32) string {
	if nonfinite {
		return fmt.Sprintf("is non-finite (%v)", x)
	}
	return fmt.Sprintf("is %v (not positive)", x)
}

// Byte masks for the SWAR block-scale scan.
const (
	lo8 = 0x0101010101010101
	hi8 = 0x8080808080808080
	nan = 0x7F7F7F7F7F7F7F7F
)

// hasZeroByte reports whether any byte of x is zero.
func hasZeroByte(x uint64) bool { return (x-lo8)&^x&hi8 != 0 }

// badBlockScales counts E4M3 block scales that are zero (0x00, 0x80),
// NaN (0x7F, 0xFF) or negative (sign bit set), eight bytes at a time.
func badBlockScales(b []byte) (zero, nanN, neg int) {
	i := 0
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		if x&hi8 == 0 && !hasZeroByte(x) && !hasZeroByte(x^nan) {
			continue
		}
		z, n, g := classifyBytes(b[i : i+8])
		zero, nanN, neg = zero+z, nanN+n, neg+g
	}
	z, n, g := classifyBytes(b[i:])
	return zero + z, nanN + n, neg + g
}

func classifyBytes(b []byte) (zero, nanN, neg int) {
	for _, c := range b {
		switch {
		case c == 0x00 || c == 0x80:
			zero++
		case c == 0x7F || c == 0xFF:
			nanN++
		case c&0x80 != 0:
			neg++
		}
	}
	return
}

// scanBlockScales scans every NVFP4 E4M3 block scale (values.block-scale).
func (v *run) scanBlockScales() {
	v.evaluated("values.block-scale", reports.TargetAny)
	var ts []*tensor
	owner := map[*tensor]*module{}
	for _, m := range v.mods.list {
		if m.stored() == fmtNVFP4 && m.scale != nil && m.scale.DType == safetensors.F8E4M3 {
			ts = append(ts, m.scale)
			owner[m.scale] = m
		}
	}
	counts := map[*tensor][3]int{}
	v.scanTensors(ts, func(t *tensor, piece []byte, _ int64) {
		z, n, g := badBlockScales(piece)
		if z+n+g > 0 {
			c := counts[t]
			counts[t] = [3]int{c[0] + z, c[1] + n, c[2] + g}
		}
	})
	var gs groups
	for _, t := range ts {
		c, ok := counts[t]
		if !ok {
			continue
		}
		m := owner[t]
		desc := fmt.Sprintf("%d zero, %d NaN and %d negative E4M3 block scales", c[0], c[1], c[2])
		key, module, id := t.Name, m.name, -1
		msg := fmt.Sprintf("%s has %s (of %d)", t.Name, desc, t.numel())
		if m.kind == kindExpert || m.kind == kindExpertSwapped {
			if le := v.mods.experts[m.layer]; le != nil {
				key, module, id = le.prefix+"|"+m.proj, le.prefix, m.expert
				msg = fmt.Sprintf("%s.weight_scale has zero, NaN or negative E4M3 block scales (e.g. %s in %s) in experts %%s of %s", m.proj, desc, t.Name, module)
			}
		}
		gs.add(key, group{rule: "values.block-scale", tok: reports.TargetAny, sev: reports.SeverityError, tensor: t.Name, module: module, msg: msg,
			behavior: "no engine validates block scales: a zero scale zeroes its 16 weights, a NaN one poisons every output it touches, a negative one flips their sign"}, id, t.Name)
	}
	gs.flush(v)
}

// checkUnitScales warns when every weight and input scale is exactly 1.0.
func (v *run) checkUnitScales() {
	v.evaluated("values.unit-scales", reports.TargetAny)
	n := 0
	for _, m := range v.mods.list {
		for _, t := range v.perTensorScales(m) {
			x, ok := v.scalar(t)
			if !ok {
				continue
			}
			if x != 1 {
				return
			}
			n++
		}
	}
	if n >= 2 {
		v.addAny("values.unit-scales", reports.SeverityWarning, "", "",
			fmt.Sprintf("all %d per-tensor weight and input scales are exactly 1.0", n),
			"the engines use them as given: a checkpoint never calibrated (or exported with constant amax) quantizes with the wrong ranges")
	}
}

// bitsEqual compares two float32 scales bit for bit.
func bitsEqual(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) }

// checkScaleRelations checks fused shards and expert gate/up pairs.
func (v *run) checkScaleRelations(t *target) {
	tok := t.Token()
	for _, r := range []string{"values.gate-up-scale2", "values.fused-scale2", "values.fused-input-scale", "values.fp8-shard-scales"} {
		v.evaluated(r, tok)
	}
	var gs groups
	var fp8Differ []string
	for _, g := range v.groups {
		if !v.quantizedByTarget(t, g) {
			continue
		}
		if g.experts != nil {
			ids := make([]int, 0, len(g.experts.byID))
			for id := range g.experts.byID {
				ids = append(ids, id)
			}
			sort.Ints(ids)
			for _, id := range ids {
				gate, up := g.experts.byID[id]["gate_proj"], g.experts.byID[id]["up_proj"]
				if gate == nil || up == nil || gate.stored() != up.stored() {
					continue
				}
				v.pairRelations(t, &gs, &fp8Differ, g, []*module{gate, up}, id)
			}
			continue
		}
		if len(g.shards) < 2 {
			continue
		}
		v.pairRelations(t, &gs, &fp8Differ, g, g.shards, -1)
	}
	gs.flush(v)
	if len(fp8Differ) > 0 {
		if f, ok := v.lookup("values.fp8-shard-scales", "differ", t); ok {
			v.add(f.Rule, f.Severity, tok, "", fp8Differ[0],
				fmt.Sprintf("%d fused FP8 layers or expert gate/up pairs carry unequal per-shard weight scales (e.g. %s)", len(fp8Differ), fp8Differ[0]),
				f.Behavior, f.Source)
		}
	}
}

// pairRelations compares the scales of the shards of one fused layer (or
// one expert's gate/up pair, id ≥ 0).
func (v *run) pairRelations(t *target, gs *groups, fp8Differ *[]string, g *engGroup, shards []*module, id int) {
	for _, m := range shards {
		if m == nil || !m.stored().quantized() {
			return
		}
	}
	f := shards[0].stored()
	for _, m := range shards[1:] {
		if m.stored() != f {
			return
		}
	}
	differ := func(get func(*module) *tensor) (bool, []string) {
		var vals []string
		var first float32
		diff := false
		for i, m := range shards {
			x, ok := v.scalar(get(m))
			if !ok {
				return false, nil
			}
			vals = append(vals, fmt.Sprintf("%s=%v", m.proj, x))
			if i == 0 {
				first = x
			} else if !bitsEqual(first, x) {
				diff = true
			}
		}
		return diff, vals
	}
	where := g.prefix
	if id >= 0 {
		where = fmt.Sprintf("%s.%d", g.prefix, id)
	}
	tok := t.Token()
	if f == fmtNVFP4 {
		if d, vals := differ(func(m *module) *tensor { return m.scale2 }); d {
			rule, kase := "values.fused-scale2", "differ"
			if id >= 0 {
				rule = "values.gate-up-scale2"
			}
			if fact, ok := v.lookup(rule, kase, t); ok {
				msg := fmt.Sprintf("%s: weight_scale_2 differs across the shards (%s)", where, strings.Join(vals, ", "))
				key := tok + "|" + rule + "|" + g.prefix
				if id >= 0 {
					msg = fmt.Sprintf("gate and up weight_scale_2 differ for experts %%s of %s (e.g. expert %d: %s)", g.prefix, id, strings.Join(vals, ", "))
				}
				gs.add(key, group{rule: rule, tok: tok, sev: fact.Severity, tensor: shards[len(shards)-1].scale2.Name, module: g.prefix, msg: msg,
					behavior: fact.Behavior, source: fact.Source}, id, "")
			}
		}
	}
	if f == fmtFP8 {
		if d, _ := differ(func(m *module) *tensor { return m.scale }); d {
			*fp8Differ = append(*fp8Differ, where)
		}
	}
	if d, vals := differ(func(m *module) *tensor { return m.input }); d {
		kase := "dense"
		if id >= 0 {
			kase = "expert"
		}
		if fact, ok := v.lookup("values.fused-input-scale", kase, t); ok {
			msg := fmt.Sprintf("%s: input_scale differs across shards that share one input (%s)", where, strings.Join(vals, ", "))
			if id >= 0 {
				msg = fmt.Sprintf("gate and up input_scale differ for experts %%s of %s (e.g. expert %d: %s)", g.prefix, id, strings.Join(vals, ", "))
			}
			gs.add(tok+"|input|"+g.prefix, group{rule: fact.Rule, tok: tok, sev: fact.Severity, tensor: shards[0].input.Name, module: g.prefix, msg: msg,
				behavior: fact.Behavior, source: fact.Source}, id, "")
		}
	}
}

// checkSpread warns about a wide input-scale spread across the experts of
// a layer (max/median > spreadLimit).
func (v *run) checkSpread(t *target) {
	v.evaluated("values.input-scale-spread", t.Token())
	for _, g := range v.groups {
		if g.experts == nil || !v.quantizedByTarget(t, g) {
			continue
		}
		for _, proj := range []string{"gate_up", "down_proj"} {
			var vals []float64
			maxID, maxV := -1, 0.0
			var f storedFmt
			for id, projs := range g.experts.byID {
				var ms []*module
				if proj == "gate_up" {
					ms = []*module{projs["gate_proj"], projs["up_proj"], projs["gate_up_proj"]}
				} else {
					ms = []*module{projs["down_proj"]}
				}
				best := -1.0
				for _, m := range ms {
					if m == nil {
						continue
					}
					if x, ok := v.scalar(m.input); ok && x > 0 && !math.IsInf(float64(x), 0) && !math.IsNaN(float64(x)) {
						best = math.Max(best, float64(x))
						f = m.stored()
					}
				}
				if best > 0 {
					vals = append(vals, best)
					if best > maxV || (best == maxV && id < maxID) {
						maxV, maxID = best, id
					}
				}
			}
			if len(vals) < 3 {
				continue
			}
			sort.Float64s(vals)
			med := vals[len(vals)/2]
			if len(vals)%2 == 0 {
				med = (vals[len(vals)/2-1] + vals[len(vals)/2]) / 2
			}
			if med <= 0 || maxV/med <= spreadLimit {
				continue
			}
			kase := "fp8"
			if f == fmtNVFP4 {
				kase = "nvfp4"
			}
			if fact, ok := v.lookup("values.input-scale-spread", kase, t); ok {
				p := proj
				if p == "gate_up" {
					p = "gate_proj/up_proj"
				}
				v.add(fact.Rule, fact.Severity, t.Token(), fmt.Sprintf("%s.%d.%s.input_scale", g.prefix, maxID, strings.Split(p, "/")[0]), g.prefix,
					fmt.Sprintf("%s %s input_scale max/median = %.3g over %d experts (max %.6g at expert %d, median %.6g)", g.prefix, p, maxV/med, len(vals), maxV, maxID, med),
					fact.Behavior, fact.Source)
			}
		}
	}
}
