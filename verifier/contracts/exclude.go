package contracts

import (
	"regexp"
	"strings"
)

// Exclusions emulates how one target matches a config's exclusion entries
// (exclude_modules or ignore) against its layer prefixes. Prefixes are
// given in Hugging Face checkpoint naming (the engines map entries and
// prefixes with the same hf_to_*_mapper, so matching in HF space gives the
// same decisions), with fused layers named as the engine builds them
// (…self_attn.qkv_proj, …mlp.gate_up_proj, …linear_attn.in_proj_qkvz,
// …linear_attn.in_proj_ba, …mlp.experts).
type Exclusions struct {
	target  Target
	family  Family
	entries []string
	// vllmEntries are the entries after apply_vllm_mapper's foo* splitting.
	vllmEntries []string
	vllmSet     map[string]bool
	// vllmGlobs are the fnmatch patterns of vllmEntries (nil entries never
	// match).
	vllmGlobs []*regexp.Regexp
	// sglangRegexps are the is_layer_excluded patterns (nil where Python's
	// re would not compile the pattern either); sglangLit[i] is the
	// literal text before the first metacharacter of entry i, and
	// sglangPlain[i] is true when the whole entry is literal.
	sglangRegexps []*regexp.Regexp
	sglangLit     []string
	sglangPlain   []bool
}

// Decision is the outcome of matching one layer prefix.
type Decision struct {
	// Excluded: the target builds the layer without the quant method.
	Excluded bool
	// Partial: some but not all shards of a fused layer are excluded (the
	// target raises "Detected some but not all shards …").
	Partial bool
	// ShardExcluded gives the exact-shard decision per shard (fused
	// layers only).
	ShardExcluded []bool
	// Via names the matcher and entry that excluded the layer.
	Via string
}

// NewExclusions prepares the matcher of target t for a model family.
func NewExclusions(t Target, fam Family, entries []string) *Exclusions {
	x := &Exclusions{target: t, family: fam, entries: entries, vllmSet: map[string]bool{}}
	// vllm.md §1.3: apply_vllm_mapper rewrites every foo* (trailing *
	// not preceded by '.') into foo and foo.*.
	for _, e := range entries {
		if strings.HasSuffix(e, "*") && !strings.HasSuffix(e, ".*") {
			base := strings.TrimSuffix(e, "*")
			x.vllmEntries = append(x.vllmEntries, base, base+".*")
		} else {
			x.vllmEntries = append(x.vllmEntries, e)
		}
	}
	for _, e := range x.vllmEntries {
		x.vllmSet[e] = true
		x.vllmGlobs = append(x.vllmGlobs, fnmatchRegexp(e))
	}
	// sglang.md §1.4: escape '.', '*' → '.*', other metacharacters kept.
	for _, e := range entries {
		re := strings.ReplaceAll(e, ".", `\.`)
		re = strings.ReplaceAll(re, "*", ".*")
		c, err := regexp.Compile("^(?:" + re + ")$")
		if err != nil {
			c = nil
		}
		x.sglangRegexps = append(x.sglangRegexps, c)
		lit := e
		if i := strings.IndexAny(e, `*+?()[]{}|^$\`); i >= 0 {
			lit = e[:i]
		}
		x.sglangLit = append(x.sglangLit, lit)
		x.sglangPlain = append(x.sglangPlain, lit == e)
	}
	return x
}

// Entries returns the raw entries.
func (x *Exclusions) Entries() []string { return x.entries }

// languageModelVariants returns the prefix and, for VLM names, the variant
// without the language-model level, which both engines also try
// (vLLM strips "language_model." for the substring test; SGLang strips a
// leading "language_model." and its Qwen3.5 loaders drop
// "model.language_model." → "model.").
func languageModelVariants(prefix string) []string {
	out := []string{prefix}
	if strings.HasPrefix(prefix, "model.language_model.") {
		out = append(out, "model."+strings.TrimPrefix(prefix, "model.language_model."))
	}
	if strings.HasPrefix(prefix, "language_model.") {
		out = append(out, strings.TrimPrefix(prefix, "language_model."))
	}
	return out
}

// Linear decides a Linear (or LM head) layer. shards are the checkpoint
// names of the fused layer's shards (nil for an unfused layer).
func (x *Exclusions) Linear(prefix string, shards []string) Decision {
	if x.target.Engine == VLLM {
		return x.vllmDecide(prefix, shards)
	}
	return x.sglangLinear(prefix, shards)
}

// MoE decides a FusedMoE / RoutedExperts layer (prefix …mlp.experts).
func (x *Exclusions) MoE(prefix string) Decision {
	if x.target.Engine == VLLM {
		return x.vllmDecide(prefix, nil)
	}
	for _, p := range languageModelVariants(prefix) {
		if ok, via := x.sglangExcluded(p); ok {
			return Decision{Excluded: true, Via: via}
		}
	}
	return Decision{}
}

// vllmDecide is ModelOptQuantConfigBase.is_layer_excluded (vllm.md §1.3):
// is_layer_skipped with exact shard names (partial → ValueError), then the
// legacy substring test, then fnmatch.
func (x *Exclusions) vllmDecide(prefix string, shards []string) Decision {
	var d Decision
	if len(shards) > 0 {
		n := 0
		for _, s := range shards {
			ex := x.vllmSet[s]
			d.ShardExcluded = append(d.ShardExcluded, ex)
			if ex {
				n++
			}
		}
		if n > 0 && n < len(shards) {
			d.Partial = true
			return d
		}
		if n == len(shards) {
			d.Excluded = true
			d.Via = "exact shard names"
			return d
		}
	} else if x.vllmSet[prefix] {
		d.Excluded = true
		d.Via = "exact name " + prefix
		return d
	}
	for _, p := range languageModelVariants(prefix) {
		for _, e := range x.vllmEntries {
			if e != "" && strings.Contains(p, e) {
				d.Excluded = true
				d.Via = "legacy substring match of entry " + quote(e)
				return d
			}
		}
	}
	for k, re := range x.vllmGlobs {
		if re != nil && re.MatchString(prefix) {
			d.Excluded = true
			d.Via = "fnmatch of entry " + quote(x.vllmEntries[k])
			return d
		}
	}
	return d
}

// fnmatchRegexp translates a Python fnmatch pattern ('*' matches
// anything, dots included; '?' one character; '[…]' and '[!…]' classes)
// into an anchored regexp. It returns nil for a pattern that cannot match
// anything sensible (an unparsable class).
func fnmatchRegexp(pattern string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^(?s:")
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		switch c {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		case '[':
			j := strings.IndexByte(pattern[i+1:], ']')
			if j < 0 {
				b.WriteString(`\[`)
				continue
			}
			class := pattern[i+1 : i+1+j]
			if strings.HasPrefix(class, "!") {
				class = "^" + class[1:]
			}
			b.WriteString("[" + strings.ReplaceAll(class, `\`, `\\`) + "]")
			i += j + 1
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString(")$")
	re, err := regexp.Compile(b.String())
	if err != nil {
		return nil
	}
	return re
}

// sglangLinear is is_layer_skipped || is_layer_excluded (sglang.md §1.4).
func (x *Exclusions) sglangLinear(prefix string, shards []string) Decision {
	var best Decision
	for _, p := range languageModelVariants(prefix) {
		var sh []string
		for _, s := range shards {
			if p != prefix {
				s = strings.Replace(s, "model.language_model.", "model.", 1)
			}
			sh = append(sh, s)
		}
		d := x.sglangSkipped(p, sh)
		if d.Partial {
			return d
		}
		if d.Excluded {
			return d
		}
		if ok, via := x.sglangExcluded(p); ok {
			return Decision{Excluded: true, Via: via, ShardExcluded: d.ShardExcluded}
		}
		if best.ShardExcluded == nil {
			best = d
		}
	}
	return best
}

// sglangPacked reports whether the target's packed_modules_mapping expands
// the fused layer named by the prefix's last component.
func (x *Exclusions) sglangPacked(proj string) bool {
	switch proj {
	case "qkv_proj", "gate_up_proj":
		return true
	case "in_proj_qkvz", "in_proj_ba":
		// Qwen3.5's mapping has them on all platforms since v0.5.11 (#23471);
		// before, only on gfx95/NPU (not CUDA).
		return x.family == FamilyQwen35MoE && x.target.AtLeast("0.5.11")
	}
	return false
}

// sglangSkipped is is_layer_skipped: no wildcards; fused layers expanded
// through packed_modules_mapping, all shards must agree.
func (x *Exclusions) sglangSkipped(prefix string, shards []string) Decision {
	proj := prefix[strings.LastIndexByte(prefix, '.')+1:]
	if len(shards) > 0 && x.sglangPacked(proj) {
		var d Decision
		n := 0
		for _, s := range shards {
			ex := x.sglangPathMatchAny(s)
			d.ShardExcluded = append(d.ShardExcluded, ex != "")
			if ex != "" {
				n++
				d.Via = "is_layer_skipped entry " + quote(ex)
			}
		}
		if n > 0 && n < len(shards) {
			d.Partial = true
			d.Via = ""
			return d
		}
		d.Excluded = n == len(shards)
		if !d.Excluded {
			d.Via = ""
		}
		return d
	}
	if ex := x.sglangPathMatchAny(prefix); ex != "" {
		return Decision{Excluded: true, Via: "is_layer_skipped entry " + quote(ex)}
	}
	return Decision{}
}

// sglangPathMatchAny returns the first entry that _module_path_match-es
// the prefix (≥ v0.5.11: equal, dotted prefix, or dotted component run;
// before: plain substring, #23467).
func (x *Exclusions) sglangPathMatchAny(prefix string) string {
	for _, e := range x.entries {
		if e == "" {
			continue
		}
		if x.target.AtLeast("0.5.11") {
			if e == prefix || strings.HasPrefix(prefix, e+".") || strings.Contains("."+prefix+".", "."+e+".") {
				return e
			}
		} else if strings.Contains(prefix, e) {
			return e
		}
	}
	return ""
}

// deepseekSuffixes get substring matching on the last component
// (is_layer_excluded special case).
var deepseekSuffixes = map[string]bool{"q_a_proj": true, "q_b_proj": true, "kv_a_proj_with_mqa": true, "kv_b_proj": true}

// sglangExcluded is is_layer_excluded: regex fullmatch of the whole prefix
// or of any single dot-separated component.
func (x *Exclusions) sglangExcluded(prefix string) (bool, string) {
	comps := strings.Split(prefix, ".")
	last := comps[len(comps)-1]
	for k, re := range x.sglangRegexps {
		e := x.entries[k]
		pcomps := strings.Split(e, ".")
		if pl := pcomps[len(pcomps)-1]; deepseekSuffixes[pl] && strings.Contains(last, pl) {
			return true, "is_layer_excluded entry " + quote(e)
		}
		if re == nil {
			continue
		}
		// Fast paths: a literal entry matches only itself; a pattern can
		// only match what starts with its literal head; an entry with a
		// dot cannot match a single component.
		lit, plain := x.sglangLit[k], x.sglangPlain[k]
		if plain && prefix == e || !plain && strings.HasPrefix(prefix, lit) && re.MatchString(prefix) {
			return true, "is_layer_excluded entry " + quote(e)
		}
		if strings.Contains(lit, ".") {
			continue
		}
		for _, c := range comps {
			if plain && c == e || !plain && strings.HasPrefix(c, lit) && re.MatchString(c) {
				return true, "is_layer_excluded entry " + quote(e) + " (matches component " + quote(c) + ")"
			}
		}
	}
	return false, ""
}

func quote(s string) string { return "\"" + s + "\"" }
