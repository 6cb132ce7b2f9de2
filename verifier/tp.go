package verifier

import (
	"fmt"
	"strings"

	"github.com/ptqgate/ptqgate/reports"
	"github.com/ptqgate/ptqgate/verifier/contracts"
)

// rowParallel are the projections split along their input (K) dimension.
var rowParallel = map[string]bool{"o_proj": true, "down_proj": true, "out_proj": true}

// checkTP checks per-rank dimensions for --tp against head counts, group
// and block sizes (R27).
func (v *run) checkTP() {
	tp := v.opt.TP
	if tp < 1 {
		tp = 1
	}
	for _, t := range v.targets {
		v.checkTPTarget(t, tp)
	}
}

func (v *run) checkTPTarget(t *target, tp int) {
	tok := t.Token()
	for _, r := range []string{"tp.divisible", "tp.nvfp4-k", "tp.moe-intermediate"} {
		v.evaluated(r, tok)
	}
	if t.Engine == contracts.VLLM {
		v.evaluated("tp.fp8-align", tok)
	}
	var gs groups
	add := func(rule, kase string, m *module, detail, dimKey string) {
		f, ok := v.lookup(rule, kase, t)
		if !ok {
			return
		}
		gs.add(tok+"|"+rule+"|"+m.proj+"|"+dimKey, group{rule: rule, tok: tok, sev: f.Severity, tensor: m.weight.Name, module: m.name,
			msg:      fmt.Sprintf("%%d %s modules at tp=%d: %s (e.g. %s)", m.proj, tp, detail, m.name),
			behavior: strings.NewReplacer("{dim}", dimKey, "{tp}", fmt.Sprint(tp)).Replace(f.Behavior), source: f.Source}, -1, m.name)
	}
	if g := v.geo; tp > 1 && g.knownFamily() && g.nh > 0 {
		if g.nh%tp != 0 {
			v.add("tp.divisible", v.lookupSev("tp.divisible", "split", t), tok, "", "", fmt.Sprintf("num_attention_heads %d is not divisible by tp=%d", g.nh, tp),
				v.lookupBehavior("tp.divisible", "split", t, fmt.Sprint(g.nh), fmt.Sprint(tp)), "")
		}
		if g.nkv > 0 && ((g.nkv >= tp && g.nkv%tp != 0) || (g.nkv < tp && tp%g.nkv != 0)) {
			v.add("tp.divisible", v.lookupSev("tp.divisible", "split", t), tok, "", "", fmt.Sprintf("num_key_value_heads %d cannot be split or replicated over tp=%d", g.nkv, tp),
				v.lookupBehavior("tp.divisible", "split", t, fmt.Sprint(g.nkv), fmt.Sprint(tp)), "")
		}
	}
	for _, g := range v.groups {
		switch g.kind {
		case kindRouter, kindSharedGate, kindVision, kindLMHead:
			continue
		}
		quant := v.quantizedByTarget(t, g)
		mods := g.shards
		if g.experts != nil {
			mods = g.expertModules()
		}
		for _, m := range mods {
			if m == nil || m.weight == nil || len(m.weight.Shape) != 2 {
				continue
			}
			f := m.stored()
			out, in := int(m.weight.Shape[0]), int(m.weight.Shape[1])
			if f == fmtNVFP4 {
				in *= 2
			}
			row := rowParallel[m.proj]
			// q/k/v are split by heads (checked above); the rest by features.
			if tp > 1 && (m.kind != kindAttn || m.proj == "o_proj") {
				if row && in%tp != 0 {
					add("tp.divisible", "split", m, fmt.Sprintf("input features %d are not divisible by tp", in), fmt.Sprint(in))
				} else if !row && out%tp != 0 {
					add("tp.divisible", "split", m, fmt.Sprintf("output features %d are not divisible by tp", out), fmt.Sprint(out))
				}
			}
			if !quant {
				continue
			}
			kPer := in
			if row && in%tp == 0 {
				kPer = in / tp
			}
			switch f {
			case fmtNVFP4:
				if g.experts != nil {
					if m.proj == "down_proj" && kPer%16 != 0 {
						add("tp.moe-intermediate", "nvfp4", m, fmt.Sprintf("moe_intermediate_size %d / tp = %d per rank is not a multiple of 16 (block-scale groups per rank %d/16)", in, kPer, kPer), fmt.Sprint(in))
					}
					continue
				}
				if kPer%16 != 0 {
					kase := "nvfp4"
					if t.cfg.algo == algoW4A16 && t.Engine == contracts.VLLM {
						kase = "w4a16"
					}
					add("tp.nvfp4-k", kase, m, fmt.Sprintf("input features per rank %d are not a multiple of 16", kPer), fmt.Sprint(kPer))
				}
			case fmtFP8:
				if g.experts != nil || t.Engine != contracts.VLLM {
					continue
				}
				nPer := out
				if !row && out%tp == 0 {
					nPer = out / tp
				}
				if nPer%16 != 0 || kPer%16 != 0 {
					add("tp.fp8-align", "fp8", m, fmt.Sprintf("per-rank GEMM N=%d, K=%d are not both multiples of 16", nPer, kPer), fmt.Sprintf("%dx%d", nPer, kPer))
				}
			}
		}
	}
	gs.flush(v)
}

// lookupSev returns a fact's severity ("" when none applies).
func (v *run) lookupSev(rule, kase string, t *target) reports.Severity {
	f, _ := v.lookup(rule, kase, t)
	return f.Severity
}

// lookupBehavior returns a fact's behaviour with {dim} and {tp} filled.
func (v *run) lookupBehavior(rule, kase string, t *target, dim, tp string) string {
	f, _ := v.lookup(rule, kase, t)
	return strings.NewReplacer("{dim}", dim, "{tp}", tp).Replace(f.Behavior)
}
