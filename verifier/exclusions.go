package verifier

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/ptqgate/ptqgate/reports"
	"github.com/ptqgate/ptqgate/verifier/contracts"
)

// engGroup is one layer as the engines build it: a fused Linear
// (q/k/v → qkv_proj, gate/up → gate_up_proj, in_proj_qkv/z → in_proj_qkvz,
// in_proj_b/a → in_proj_ba), an unfused Linear, a MoE layer, or a module
// the engines never quantize (router, shared_expert_gate, vision).
type engGroup struct {
	prefix     string    // engine layer prefix, in checkpoint naming
	shardNames []string  // checkpoint names of the shards (nil: unfused)
	shards     []*module // stored modules per shard (nil where absent); for unfused: the module
	kind       modKind
	layer      int
	experts    *layerExperts
	onDisk     bool // a fused layer stored pre-fused
}

// fusions maps a shard projection to its fused engine layer and the shard
// order.
var fusions = map[string]struct {
	fused  string
	shards []string
}{
	"q_proj":      {"qkv_proj", []string{"q_proj", "k_proj", "v_proj"}},
	"k_proj":      {"qkv_proj", []string{"q_proj", "k_proj", "v_proj"}},
	"v_proj":      {"qkv_proj", []string{"q_proj", "k_proj", "v_proj"}},
	"gate_proj":   {"gate_up_proj", []string{"gate_proj", "up_proj"}},
	"up_proj":     {"gate_up_proj", []string{"gate_proj", "up_proj"}},
	"in_proj_qkv": {"in_proj_qkvz", []string{"in_proj_qkv", "in_proj_z"}},
	"in_proj_z":   {"in_proj_qkvz", []string{"in_proj_qkv", "in_proj_z"}},
	"in_proj_b":   {"in_proj_ba", []string{"in_proj_b", "in_proj_a"}},
	"in_proj_a":   {"in_proj_ba", []string{"in_proj_b", "in_proj_a"}},
}

// onDiskFused are fused names stored as such in a checkpoint.
var onDiskFused = map[string]bool{"qkv_proj": true, "gate_up_proj": true, "in_proj_qkvz": true, "in_proj_ba": true}

// engineGroups builds the engine layers from the checkpoint modules.
func (v *run) engineGroups() []*engGroup {
	var out []*engGroup
	byPrefix := map[string]*engGroup{}
	for _, m := range v.mods.list {
		switch m.kind {
		case kindAttn, kindLinAttn, kindDense, kindShared, kindLMHead:
		case kindRouter, kindSharedGate:
		case kindVision:
			if m.weight == nil || len(m.weight.Shape) != 2 {
				continue
			}
		default:
			continue
		}
		if m.weight == nil && m.scale == nil && m.input == nil && m.scale2 == nil {
			continue
		}
		parent := m.name
		if i := strings.LastIndexByte(m.name, '.'); i >= 0 {
			parent = m.name[:i]
		}
		fu, fused := fusions[m.proj]
		if m.kind == kindLMHead || m.kind == kindRouter || m.kind == kindSharedGate || m.kind == kindVision {
			fused = false
		}
		if !fused {
			g := &engGroup{prefix: m.name, shards: []*module{m}, kind: m.kind, layer: m.layer, onDisk: onDiskFused[m.proj]}
			out = append(out, g)
			continue
		}
		prefix := parent + "." + fu.fused
		g := byPrefix[prefix]
		if g == nil {
			g = &engGroup{prefix: prefix, kind: m.kind, layer: m.layer, shards: make([]*module, len(fu.shards))}
			for _, s := range fu.shards {
				g.shardNames = append(g.shardNames, parent+"."+s)
			}
			byPrefix[prefix] = g
			out = append(out, g)
		}
		for i, s := range fu.shards {
			if s == m.proj {
				g.shards[i] = m
			}
		}
	}
	for _, l := range v.mods.expertLayers() {
		le := v.mods.experts[l]
		out = append(out, &engGroup{prefix: le.prefix, kind: kindExpert, layer: l, experts: le})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].prefix < out[j].prefix })
	return out
}

// expertModules returns every stored expert module of a MoE group.
func (g *engGroup) expertModules() []*module {
	var out []*module
	ids := make([]int, 0, len(g.experts.byID))
	for id := range g.experts.byID {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	for _, id := range ids {
		projs := g.experts.byID[id]
		names := make([]string, 0, len(projs))
		for p := range projs {
			names = append(names, p)
		}
		sort.Strings(names)
		for _, p := range names {
			out = append(out, projs[p])
		}
	}
	return out
}

// storedSplit returns the group's stored modules split by precision.
func (g *engGroup) storedSplit() (quantized, unquantized []*module) {
	mods := g.shards
	if g.experts != nil {
		mods = g.expertModules()
	}
	for _, m := range mods {
		if m == nil {
			continue
		}
		switch f := m.stored(); {
		case f.quantized():
			quantized = append(quantized, m)
		case f == fmtBF16:
			unquantized = append(unquantized, m)
		}
	}
	if g.experts != nil {
		for _, t := range g.experts.fused {
			if strings.HasSuffix(t.Name, "scale") || strings.HasSuffix(t.Name, "scale_2") {
				continue
			}
			pm := &module{parsedName: &parsedName{name: t.Name, layer: g.layer, expert: -1, kind: kindFusedExperts}, weight: t}
			if pm.stored().quantized() {
				quantized = append(quantized, pm)
			} else if pm.stored() == fmtBF16 {
				unquantized = append(unquantized, pm)
			}
		}
	}
	return quantized, unquantized
}

// names lists module names.
func names(ms []*module) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.name
	}
	return out
}

// expertIDs lists the expert ids of expert modules (deduplicated).
func expertIDs(ms []*module) []int {
	seen := map[int]bool{}
	var out []int
	for _, m := range ms {
		if m.expert >= 0 && !seen[m.expert] {
			seen[m.expert] = true
			out = append(out, m.expert)
		}
	}
	sort.Ints(out)
	return out
}

// bf16OnlyCase says whether target t always builds group g unquantized,
// and the fact case that explains it.
func (v *run) bf16OnlyCase(t *target, g *engGroup) string {
	switch g.kind {
	case kindRouter:
		return "router"
	case kindSharedGate:
		return "shared-expert-gate"
	case kindVision:
		return "vision"
	case kindAttn, kindLinAttn:
		if v.geo.family == contracts.FamilyQwen35MoE && t.cfg.algo == algoNVFP4 {
			return "qwen35-fp4-attention"
		}
	}
	return ""
}

// perExpertEntry matches exclusion entries that name one routed expert.
var perExpertEntry = regexp.MustCompile(`(^|\.)experts\.\d+(\.|$)`)

// checkExclusions compares every engine layer's exclusion decision with
// how the checkpoint stores it, per target.
func (v *run) checkExclusions() {
	groupsList := v.engineGroups()
	v.groups = groupsList
	v.checkMissingShards(groupsList)
	for _, t := range v.targets {
		for _, r := range []string{"census.excluded-quantized", "census.unexcluded-unquantized", "census.bf16-only", "exclude.partial-fused", "exclude.per-expert"} {
			v.evaluated(r, t.Token())
		}
		var gs groups
		perExpert := map[int][]string{}
		for _, e := range t.cfg.exclude {
			if perExpertEntry.MatchString(e) {
				if p := parseName(e + ".weight"); p.layer >= 0 {
					perExpert[p.layer] = append(perExpert[p.layer], e)
				}
			}
		}
		for _, g := range groupsList {
			q, u := g.storedSplit()
			if c := v.bf16OnlyCase(t, g); c != "" {
				if f, ok := v.lookup("census.bf16-only", c, t); ok {
					// The target always builds this module unquantized.
					if len(q) > 0 {
						gs.add(t.Token()+"|bf16|"+c, group{rule: f.Rule, tok: t.Token(), sev: f.Severity, tensor: q[0].weight.Name, module: q[0].name,
							msg:      fmt.Sprintf("%%d modules that %s always builds unquantized (%s) are stored quantized: %%s", t.Token(), c),
							behavior: f.Behavior, source: f.Source}, -1, q[0].name)
					}
					continue
				}
				if (c == "router" && !v.geo.knownFamily()) || c == "vision" {
					continue // no fact for this loader: no claim about how it builds the module
				}
			}
			var d contracts.Decision
			if g.experts != nil {
				d = t.excl.MoE(g.prefix)
			} else {
				d = t.excl.Linear(g.prefix, g.shardNames)
			}
			algo := t.cfg.algo
			if algo == algoMixed {
				a, conflict := mixedAlgo(t.cfg.layers, g.prefix, g.shardNames)
				if len(conflict) > 1 {
					if f, ok := v.lookup("config.invalid", "mixed-fused", t); ok {
						v.add(f.Rule, f.Severity, t.Token(), "", g.prefix, fmt.Sprintf("quantized_layers gives the shards of %s different algos: %s", g.prefix, strings.Join(conflict, ", ")),
							strings.NewReplacer("{prefix}", g.prefix, "{algos}", strings.Join(conflict, ", ")).Replace(f.Behavior), f.Source)
					}
					continue
				}
				if !censusAlgos[a] {
					d.Excluded = true
					d.Via = "not in quantized_layers"
				}
			}
			if d.Partial {
				if f, ok := v.lookup("exclude.partial-fused", "shards-disagree", t); ok {
					var ex, in []string
					for i, s := range g.shardNames {
						if i < len(d.ShardExcluded) && d.ShardExcluded[i] {
							ex = append(ex, s[strings.LastIndexByte(s, '.')+1:])
						} else {
							in = append(in, s[strings.LastIndexByte(s, '.')+1:])
						}
					}
					v.add(f.Rule, f.Severity, t.Token(), "", g.prefix,
						fmt.Sprintf("%s: the exclusions name %s but not %s", g.prefix, strings.Join(ex, ", "), strings.Join(in, ", ")),
						strings.ReplaceAll(f.Behavior, "{prefix}", g.prefix), f.Source)
				}
				continue
			}
			kase := "linear"
			if g.experts != nil {
				kase = "experts"
			}
			if d.Excluded && len(q) > 0 {
				c := kase
				if g.kind == kindLMHead && t.Engine == contracts.VLLM {
					c = "lm_head"
				}
				if f, ok := v.lookup("census.excluded-quantized", c, t); ok {
					tensorName := q[0].name
					if q[0].input != nil {
						tensorName = q[0].input.Name
					} else if q[0].weight != nil {
						tensorName = q[0].weight.Name
					}
					msg := fmt.Sprintf("%s is excluded for %s (%s) but %d of its modules are stored quantized: %s", g.prefix, t.Token(), d.Via, len(q), listNames(names(q)))
					if g.experts != nil {
						msg = fmt.Sprintf("%s is excluded for %s (%s) but experts %s are stored quantized", g.prefix, t.Token(), d.Via, idRanges(expertIDs(q)))
					}
					v.add(f.Rule, f.Severity, t.Token(), tensorName, g.prefix, msg,
						strings.NewReplacer("{tensor}", tensorName, "{Class}", v.geo.arch).Replace(f.Behavior), f.Source)
				}
			}
			if !d.Excluded && len(u) > 0 {
				if f, ok := v.lookup("census.unexcluded-unquantized", kase, t); ok {
					msg := fmt.Sprintf("%s is quantized by %s (%s, not excluded) but %d of its modules are stored unquantized: %s", g.prefix, t.Token(), algo, len(u), listNames(names(u)))
					if g.experts != nil {
						ids := expertIDs(u)
						msg = fmt.Sprintf("%s is quantized by %s (%s, not excluded) but experts %s are stored unquantized", g.prefix, t.Token(), algo, idRanges(ids))
						if len(ids) == 0 {
							msg = fmt.Sprintf("%s is quantized by %s (%s, not excluded) but its fused expert tensors are stored unquantized", g.prefix, t.Token(), algo)
						}
					}
					tensorName := ""
					if u[0].weight != nil {
						tensorName = u[0].weight.Name
					}
					v.add(f.Rule, f.Severity, t.Token(), tensorName, g.prefix, msg, f.Behavior, f.Source)
				}
			}
			if g.experts != nil && len(perExpert[g.layer]) > 0 && !d.Excluded {
				c := "experts-quantized"
				if len(u) > 0 {
					c = "experts-bf16"
				}
				if f, ok := v.lookup("exclude.per-expert", c, t); ok {
					v.add(f.Rule, f.Severity, t.Token(), "", g.prefix,
						fmt.Sprintf("%d exclusion entries name individual experts of %s (e.g. %s); %s decides the whole MoE layer by its prefix, so they exclude nothing (%d of %d experts named)",
							len(perExpert[g.layer]), g.prefix, perExpert[g.layer][0], t.Engine, countExperts(perExpert[g.layer]), v.geo.experts),
						f.Behavior, f.Source)
				}
			}
		}
		gs.flush(v)
	}
}

// countExperts counts the distinct expert ids named by exclusion entries.
func countExperts(entries []string) int {
	seen := map[int]bool{}
	for _, e := range entries {
		if p := parseName(e + ".weight"); p.expert >= 0 {
			seen[p.expert] = true
		}
	}
	return len(seen)
}

// checkMissingShards reports fused layers with a shard absent from the
// checkpoint (its part of the fused parameter is never loaded).
func (v *run) checkMissingShards(gs []*engGroup) {
	for _, g := range gs {
		if g.shardNames == nil {
			continue
		}
		var present, missing []string
		for i, m := range g.shards {
			if m == nil || m.weight == nil {
				missing = append(missing, g.shardNames[i])
			} else {
				present = append(present, g.shardNames[i])
			}
		}
		if len(missing) > 0 && len(present) > 0 {
			v.addAny("census.missing-tensor", reports.SeverityError, missing[0]+".weight", g.prefix,
				fmt.Sprintf("%s has %s but no weight for %s", g.prefix, strings.Join(present, ", "), strings.Join(missing, ", ")),
				"the engines fuse the shards into one parameter: the missing shard's rows are never loaded (uninitialised)")
		}
	}
}
