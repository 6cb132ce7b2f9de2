package export

import (
	"fmt"
	"sort"
	"strings"
)

// SummarizeExclude returns the exclude_modules list for the unquantized
// modules: ModelOpt's _prefix_wildcard_summarize_exclude_modules
// (specs/modelopt.md §4.7), sorted, with one extra safety rule.
//
// ModelOpt's algorithm visits the unquantized names in order and, for each,
// tries the wildcard sets cut at dots from the shortest prefix on — first
// "prefix*", then the pair {"prefix", "prefix.*"} — and finally the name
// itself. A set is rejected when one of its members is a "negative"
// wildcard: a quantized module's name or any of its character prefixes
// followed by "*". A set whose members are all already in the summary means
// the name is covered; otherwise the first acceptable set is added.
//
// ModelOpt's negatives only guard fnmatch. The engines also match by
// substring (vLLM turns "foo*" into "foo" and "foo.*" and tests
// `entry in prefix`; SGLang matches regexes against the whole prefix or any
// one dot-separated component) and against their own fused names (qkv_proj,
// gate_up_proj, in_proj_qkvz, in_proj_ba). So a candidate is also rejected
// when its literal stem (the wildcard without its trailing "*") occurs
// anywhere inside a protected name; protected are the quantized names plus
// whatever aliases the caller adds (see EngineAliases). When even a name's
// exact form is rejected that way no safe entry exists: that is an error.
func SummarizeExclude(unquantized, protected []string) ([]string, error) {
	negative := map[string]bool{}
	for _, q := range protected {
		negative[q] = true
		for i := 0; i <= len(q); i++ {
			negative[q[:i]+"*"] = true
		}
	}
	unsafe := func(w string) bool {
		stem := strings.TrimSuffix(w, "*")
		for _, p := range protected {
			if strings.Contains(p, stem) {
				return true
			}
		}
		return false
	}
	summary := map[string]bool{}
	for _, name := range unquantized {
		var chosen []string
		found := false
		for _, cand := range prefixWildcards(name) {
			bad := false
			for _, w := range cand {
				if negative[w] || unsafe(w) {
					bad = true
					break
				}
			}
			if bad {
				continue
			}
			found = true
			for _, w := range cand {
				if !summary[w] {
					chosen = cand
					break
				}
			}
			break
		}
		if !found {
			return nil, fmt.Errorf("no exclude_modules entry can name unquantized module %q without also matching a quantized module under the engines' matching rules", name)
		}
		for _, w := range chosen {
			summary[w] = true
		}
	}
	out := make([]string, 0, len(summary))
	for w := range summary {
		out = append(out, w)
	}
	sort.Strings(out)
	return out, nil
}

// prefixWildcards lists ModelOpt's candidate wildcard sets for a name, in
// the order they are tried: at every dot, ["prefix*"] then ["prefix",
// "prefix.*"]; finally [name].
func prefixWildcards(name string) [][]string {
	var out [][]string
	for i := 0; i < len(name); i++ {
		if name[i] == '.' {
			out = append(out, []string{name[:i] + "*"}, []string{name[:i], name[:i] + ".*"})
		}
	}
	return append(out, []string{name})
}

// engineFused maps checkpoint projection names to the fused layer the
// engines build from them (vLLM's and SGLang's packed_modules_mapping for
// Qwen3-MoE and Qwen3.5-MoE).
var engineFused = map[string]string{
	"q_proj": "qkv_proj", "k_proj": "qkv_proj", "v_proj": "qkv_proj",
	"gate_proj": "gate_up_proj", "up_proj": "gate_up_proj",
	"in_proj_qkv": "in_proj_qkvz", "in_proj_z": "in_proj_qkvz",
	"in_proj_b": "in_proj_ba", "in_proj_a": "in_proj_ba",
}

// EngineAliases returns the names under which the engines may see a
// checkpoint module: the name itself, the fused layer it is loaded into
// (…self_attn.qkv_proj for …self_attn.q_proj, …mlp.gate_up_proj,
// …linear_attn.in_proj_qkvz, …in_proj_ba), and each of those with a
// vision-language prefix rewritten as vLLM's Qwen3.5 mapper does
// ("model.language_model." ↔ "language_model.model.") and with
// "language_model." removed, as both engines also try.
func EngineAliases(name string) []string {
	base := []string{name}
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		if f, ok := engineFused[name[i+1:]]; ok {
			base = append(base, name[:i+1]+f)
		}
	}
	seen := map[string]bool{}
	var out []string
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	for _, b := range base {
		add(b)
		if rest, ok := strings.CutPrefix(b, "model.language_model."); ok {
			add("language_model.model." + rest)
			add("model." + rest)
		}
		add(strings.Replace(b, "language_model.", "", 1))
	}
	return out
}
