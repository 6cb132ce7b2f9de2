package verifier

import (
	"fmt"
	"sort"
	"strings"

	"github.com/ptqgate/ptqgate/reports"
	"github.com/ptqgate/ptqgate/verifier/contracts"
)

// kvEntry is one KV-cache scale tensor of the checkpoint.
type kvEntry struct {
	t     *tensor
	kind  contracts.KVKind
	layer int
	// attention says the tensor sits on a layer with full attention.
	attention bool
}

// kvEntries collects the checkpoint's KV scales.
func (v *run) kvEntries() []kvEntry {
	var out []kvEntry
	for _, t := range v.mods.kv {
		p := t.p
		_, kind, ok := contracts.KVScaleName(t.Name)
		if !ok || p.layer < 0 || p.prefix != v.geo.textPrefix {
			continue
		}
		e := kvEntry{t: t, kind: kind, layer: p.layer, attention: true}
		if v.geo.knownFamily() {
			e.attention = v.geo.layer(p.layer) && v.geo.full[p.layer] && len(p.sub) > 0 && p.sub[0] == "self_attn"
		}
		out = append(out, e)
	}
	return out
}

// attentionLayers lists the layers that own a softmax-attention KV cache.
func (v *run) attentionLayers() []int {
	var out []int
	if v.geo.knownFamily() {
		for l := range v.geo.full {
			if v.geo.full[l] {
				out = append(out, l)
			}
		}
		return out
	}
	seen := map[int]bool{}
	for _, m := range v.mods.list {
		if m.kind == kindAttn && m.prefix == v.geo.textPrefix && !seen[m.layer] {
			seen[m.layer] = true
			out = append(out, m.layer)
		}
	}
	sort.Ints(out)
	return out
}

// checkKV checks the KV-cache scales per target (specs/vllm.md §5,
// specs/sglang.md §5).
func (v *run) checkKV() {
	entries := v.kvEntries()
	v.checkKVUnit(entries)
	attn := v.attentionLayers()
	for _, t := range v.targets {
		tok := t.Token()
		for _, r := range []string{"kv.dropped", "kv.pair", "kv.missing", "kv.unused", "kv.shape"} {
			v.evaluated(r, tok)
		}
		if !t.cfg.kvFP8 {
			if len(entries) > 0 {
				if f, ok := v.lookup("kv.unused", "not-quantized", t); ok {
					v.addFact(f, t, "", entries[0].t.Name, "",
						fmt.Sprintf("the checkpoint has %d KV scales but %s's config gives no FP8 KV cache algo (%s)", len(entries), tok, kvText(t.cfg)))
				}
			}
			continue
		}
		loadedK, loadedV, present := map[int]bool{}, map[int]bool{}, map[int]bool{}
		var dropped []kvEntry
		var shapes groups
		maxDropped := float32(0)
		for _, e := range entries {
			if e.kind == contracts.KVQuery {
				continue
			}
			present[e.layer] = true
			if e.t.numel() != 1 {
				if f, ok := v.lookup("kv.shape", "multi", t); ok {
					shapes.add(tok+"|shape", group{rule: f.Rule, tok: tok, sev: f.Severity, tensor: e.t.Name, module: "",
						msg:      fmt.Sprintf("%%d KV scales are not single elements (e.g. %s, shape %v): %%s", e.t.Name, e.t.Shape),
						behavior: strings.ReplaceAll(f.Behavior, "{shape}", fmt.Sprint(e.t.Shape)), source: f.Source}, -1, e.t.Name)
				}
				continue
			}
			loaded := false
			if e.attention {
				loaded, _ = contracts.KVScaleLoaded(t.Target, v.geo.family, e.t.Name)
			}
			if !loaded {
				dropped = append(dropped, e)
				if x, ok := v.scalar(e.t); ok && x > maxDropped {
					maxDropped = x
				}
				continue
			}
			switch e.kind {
			case contracts.KVKey:
				loadedK[e.layer] = true
			case contracts.KVValue:
				loadedV[e.layer] = true
			case contracts.KVBoth:
				loadedK[e.layer], loadedV[e.layer] = true, true
			}
		}
		shapes.flush(v)
		if len(dropped) > 0 {
			if f, ok := v.lookup("kv.dropped", "dropped", t); ok {
				sev := f.Severity
				risk := "the checkpoint's scales are ≤ 1.0, so running at 1.0 costs range precision only"
				if maxDropped > 1 {
					sev = reports.SeverityError
					risk = fmt.Sprintf("the checkpoint's largest dropped scale is %v (amax %.4g > 448): K/V values above 448 overflow FP8 at scale 1.0", maxDropped, float64(maxDropped)*448)
				}
				_, expected := contracts.KVScaleLoaded(t.Target, v.geo.family, dropped[0].t.Name)
				var names []string
				for _, e := range dropped {
					names = append(names, e.t.Name)
				}
				v.add(f.Rule, sev, tok, dropped[0].t.Name, "",
					fmt.Sprintf("%s drops %d of the checkpoint's KV scales (%s) and runs the FP8 KV cache at 1.0; %s", tok, len(dropped), listNames(names), risk),
					strings.NewReplacer("{tensor}", dropped[0].t.Name, "{expected}", expected).Replace(f.Behavior), f.Source)
			}
		}
		var missing []int
		for _, l := range attn {
			k, vv := loadedK[l], loadedV[l]
			switch {
			case k && !vv:
				if f, ok := v.lookup("kv.pair", "v-missing", t); ok {
					v.add(f.Rule, f.Severity, tok, "", v.geo.layerPrefix(l)+".self_attn", fmt.Sprintf("layer %d has a k_scale that %s loads but no v_scale", l, tok), f.Behavior, f.Source)
				}
			case vv && !k:
				if f, ok := v.lookup("kv.pair", "k-missing", t); ok {
					v.add(f.Rule, f.Severity, tok, "", v.geo.layerPrefix(l)+".self_attn", fmt.Sprintf("layer %d has a v_scale that %s loads but no k_scale", l, tok), f.Behavior, f.Source)
				}
			case !k && !vv && !present[l]:
				missing = append(missing, l)
			}
		}
		if len(missing) > 0 {
			if f, ok := v.lookup("kv.missing", "absent", t); ok {
				msg := fmt.Sprintf("the config enables an FP8 KV cache but attention layers %s carry no KV scales", idRanges(missing))
				if len(entries) == 0 {
					msg = "the config enables an FP8 KV cache but the checkpoint carries no KV scales at all (ModelOpt's default fp8_cast KV mode writes none)"
				}
				v.add(f.Rule, f.Severity, tok, "", v.geo.layerPrefix(missing[0])+".self_attn", msg, f.Behavior, f.Source)
			}
		}
	}
}

// checkKVUnit warns when every KV scale is exactly 1.0 (R11).
func (v *run) checkKVUnit(entries []kvEntry) {
	v.evaluated("kv.unit", reports.TargetAny)
	n := 0
	for _, e := range entries {
		for _, x := range e.t.vals {
			if x != 1 {
				return
			}
			n++
		}
	}
	if n >= 2 {
		v.addAny("kv.unit", reports.SeverityWarning, entries[0].t.Name, "",
			fmt.Sprintf("all %d KV scales are exactly 1.0: the KV quantizers were never calibrated, or an old exporter clamped them to max(amax/448, 1.0)", n),
			"the engines use 1.0 as given: K/V values above 448 overflow and small ones lose precision")
	}
}
