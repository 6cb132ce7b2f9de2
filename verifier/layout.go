package verifier

import (
	"fmt"
	"strings"

	"github.com/ptqgate/ptqgate/verifier/contracts"
)

// quantizedByTarget reports whether target t builds group g with the
// quant method (not excluded, not forced unquantized).
func (v *run) quantizedByTarget(t *target, g *engGroup) bool {
	if q, ok := t.quant[g]; ok {
		return q
	}
	q := v.decideQuantized(t, g)
	if t.quant == nil {
		t.quant = map[*engGroup]bool{}
	}
	t.quant[g] = q
	return q
}

func (v *run) decideQuantized(t *target, g *engGroup) bool {
	if c := v.bf16OnlyCase(t, g); c != "" {
		if _, ok := v.lookup("census.bf16-only", c, t); ok {
			return false
		}
	}
	var d contracts.Decision
	if g.experts != nil {
		d = t.excl.MoE(g.prefix)
	} else {
		d = t.excl.Linear(g.prefix, g.shardNames)
	}
	if d.Excluded || d.Partial {
		return false
	}
	if t.cfg.algo == algoMixed {
		a, _ := mixedAlgo(t.cfg.layers, g.prefix, g.shardNames)
		return censusAlgos[a]
	}
	return true
}

// scaleShapeCase classifies a per-tensor scale's shape: "0d", "1", "3",
// "nd1" (one element, rank ≥ 2) or "other".
func scaleShapeCase(t *tensor) string {
	switch {
	case len(t.Shape) == 0:
		return "0d"
	case len(t.Shape) == 1 && t.Shape[0] == 1:
		return "1"
	case len(t.Shape) == 1 && t.Shape[0] == 3:
		return "3"
	case t.numel() == 1:
		return "nd1"
	}
	return "other"
}

// checkLayout covers the expert naming layout, fused layouts, the Qwen3.5
// packed GDN loader and per-tensor scale shapes, per target.
func (v *run) checkLayout() {
	layers := v.mods.expertLayers()
	var swapped []*module
	var fusedScale, fusedQuant, fusedAny []string
	perExpertScales := 0
	for _, l := range layers {
		le := v.mods.experts[l]
		swapped = append(swapped, le.swapped...)
		for _, t := range le.fused {
			p := t.p
			fusedAny = append(fusedAny, t.Name)
			if fusedScaleParam(p.param) {
				fusedScale = append(fusedScale, t.Name)
			} else if fusedWeightParam(p.param) && (t.DType == "F8_E4M3" || t.DType == "U8") {
				fusedQuant = append(fusedQuant, t.Name)
			}
		}
		for _, projs := range le.byID {
			for _, m := range projs {
				if m.scale != nil || m.input != nil || m.scale2 != nil {
					perExpertScales++
				}
			}
		}
	}
	for _, t := range v.targets {
		tok := t.Token()
		for _, r := range []string{"layout.expert-order", "layout.fused-experts", "layout.fused-on-disk", "shape.scale"} {
			v.evaluated(r, tok)
		}
		if len(swapped) > 0 {
			if f, ok := v.lookup("layout.expert-order", "proj-before-id", t); ok {
				v.add(f.Rule, f.Severity, tok, swapped[0].name+".weight", swapped[0].name,
					fmt.Sprintf("%d expert modules are named experts.<proj>.<e> (e.g. %s); %s maps experts.<e>.<proj> only", len(swapped), swapped[0].name, t.Engine),
					f.Behavior, f.Source)
			}
		}
		if len(fusedScale) > 0 {
			if f, ok := v.lookup("layout.fused-experts", "fused-scale-names", t); ok {
				p := v.ck.tensors[fusedScale[0]].p
				v.add(f.Rule, f.Severity, tok, fusedScale[0], p.module,
					fmt.Sprintf("%d scale tensors use fused expert names (e.g. %s): %s", len(fusedScale), fusedScale[0], listNames(fusedScale)),
					strings.NewReplacer("{layer}", itoaL(p.layer), "{tensor}", fusedScale[0]).Replace(f.Behavior), f.Source)
			}
		} else if len(fusedQuant) > 0 {
			if f, ok := v.lookup("layout.fused-experts", "fused-quantized-weights", t); ok {
				v.add(f.Rule, f.Severity, tok, fusedQuant[0], v.ck.tensors[fusedQuant[0]].p.module,
					fmt.Sprintf("%d quantized expert weights are stored fused 3-D (e.g. %s)", len(fusedQuant), fusedQuant[0]), f.Behavior, f.Source)
			}
		}
		if v.geo.family == contracts.FamilyQwen35MoE {
			v.evaluated("layout.fused-sticky", tok)
			if len(fusedAny) > 0 && perExpertScales > 0 {
				if f, ok := v.lookup("layout.fused-sticky", "fused-plus-per-expert", t); ok {
					v.add(f.Rule, f.Severity, tok, fusedAny[0], v.ck.tensors[fusedAny[0]].p.module,
						fmt.Sprintf("the checkpoint has fused expert tensors (e.g. %s) and %d per-expert modules with scale keys: every per-expert key after the first fused one is skipped", fusedAny[0], perExpertScales),
						f.Behavior, f.Source)
				}
			}
		}
		v.checkOnDisk(t)
		v.checkGDN(t)
		v.checkScaleShapes(t)
	}
}

func itoaL(l int) string { return fmt.Sprint(l) }

// checkOnDisk flags pre-fused dense layers whose per-tensor scales the
// target loads into slot 0 only (R18).
func (v *run) checkOnDisk(t *target) {
	var gs groups
	for _, g := range v.groups {
		if !g.onDisk || len(g.shards) != 1 || g.shards[0] == nil || !v.quantizedByTarget(t, g) {
			continue
		}
		m := g.shards[0]
		f := m.stored()
		for _, s := range []*tensor{m.scale2, m.input, m.scale} {
			if s == nil || (s == m.scale && f != fmtFP8) {
				continue
			}
			kase := "multi-scale"
			if s.numel() == 1 {
				if f != fmtNVFP4 {
					continue // FP8: the −3.4e38 init keeps the max right
				}
				kase = "nvfp4-scalar"
			}
			if fact, ok := v.lookup("layout.fused-on-disk", kase, t); ok {
				gs.add(t.Token()+"|"+kase, group{rule: fact.Rule, tok: t.Token(), sev: fact.Severity, tensor: s.Name, module: m.name,
					msg:      fmt.Sprintf("%%d per-tensor scales of pre-fused layers (e.g. %s, shape %v): %%s", s.Name, s.Shape),
					behavior: strings.ReplaceAll(fact.Behavior, "{shape}", fmt.Sprint(s.Shape)), source: fact.Source}, -1, s.Name)
			}
		}
	}
	gs.flush(v)
}

// checkGDN checks Qwen3.5 linear_attn.in_proj_qkv per-tensor scales
// against the target's packed loader (R5, R19).
func (v *run) checkGDN(t *target) {
	if v.geo.family != contracts.FamilyQwen35MoE {
		return
	}
	v.evaluated("layout.gdn-packed-scale", t.Token())
	var gs groups
	for _, g := range v.groups {
		if g.kind != kindLinAttn || !strings.HasSuffix(g.prefix, ".in_proj_qkvz") || g.onDisk || len(g.shards) == 0 || g.shards[0] == nil {
			continue
		}
		m := g.shards[0] // in_proj_qkv
		f := m.stored()
		if !f.quantized() || !v.quantizedByTarget(t, g) {
			continue
		}
		for _, s := range []*tensor{m.scale, m.input} {
			if s == nil || (s == m.scale && f != fmtFP8) {
				continue
			}
			kase := scaleShapeCase(s)
			if fact, ok := v.lookup("layout.gdn-packed-scale", kase, t); ok {
				gs.add(t.Token()+"|"+kase, group{rule: fact.Rule, tok: t.Token(), sev: fact.Severity, tensor: s.Name, module: m.name,
					msg:      fmt.Sprintf("%%d in_proj_qkv per-tensor scales of shape %v (e.g. %s) reach the packed in_proj_qkvz loader with tuple shard (0, 1, 2): %%s", s.Shape, s.Name),
					behavior: strings.ReplaceAll(fact.Behavior, "{numel}", fmt.Sprint(s.numel())), source: fact.Source}, -1, s.Name)
			}
		}
	}
	gs.flush(v)
}

// checkScaleShapes checks per-tensor scale shapes against the target's
// dense and MoE loaders.
func (v *run) checkScaleShapes(t *target) {
	var gs groups
	for _, g := range v.groups {
		if g.onDisk || g.experts != nil || !v.quantizedByTarget(t, g) {
			continue
		}
		for i, m := range g.shards {
			if m == nil || !m.stored().quantized() {
				continue
			}
			if v.geo.family == contracts.FamilyQwen35MoE && strings.HasSuffix(g.prefix, ".in_proj_qkvz") && i == 0 {
				continue // layout.gdn-packed-scale
			}
			for _, s := range v.perTensorScales(m) {
				kase := ""
				switch c := scaleShapeCase(s); c {
				case "nd1":
					kase = "dense-nd1"
				case "3", "other":
					kase = "dense-multi"
				}
				v.addScaleShape(&gs, t, kase, s, m)
			}
		}
	}
	for _, g := range v.groups {
		if g.experts == nil || !v.quantizedByTarget(t, g) {
			continue
		}
		for _, m := range g.expertModules() {
			if !m.stored().quantized() {
				continue
			}
			for _, s := range v.perTensorScales(m) {
				kase := ""
				switch c := scaleShapeCase(s); c {
				case "1":
					kase = "moe-1"
				case "nd1":
					kase = "moe-nd1"
				case "3", "other":
					kase = "moe-multi"
				}
				v.addScaleShape(&gs, t, kase, s, m)
			}
		}
	}
	gs.flush(v)
}

// perTensorScales returns a quantized module's per-tensor scales.
func (v *run) perTensorScales(m *module) []*tensor {
	var out []*tensor
	if m.stored() == fmtFP8 && m.scale != nil {
		out = append(out, m.scale)
	}
	for _, s := range []*tensor{m.scale2, m.input} {
		if s != nil {
			out = append(out, s)
		}
	}
	return out
}

func (v *run) addScaleShape(gs *groups, t *target, kase string, s *tensor, m *module) {
	if kase == "" {
		return
	}
	fact, ok := v.lookup("shape.scale", kase, t)
	if !ok {
		return
	}
	gs.add(t.Token()+"|"+kase, group{rule: fact.Rule, tok: t.Token(), sev: fact.Severity, tensor: s.Name, module: m.name,
		msg:      fmt.Sprintf("%%d per-tensor scales have shape %v (e.g. %s); emit them as 0-d: %%s", s.Shape, s.Name),
		behavior: strings.ReplaceAll(fact.Behavior, "{numel}", fmt.Sprint(s.numel())), source: fact.Source}, -1, s.Name)
}
