package export

import (
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// The engines' exclusion rules, written from specs/vllm.md §1.3 and
// specs/sglang.md §1.4 independently of the exporter. Prefixes are the
// engines' module names: fused layers (qkv_proj, gate_up_proj,
// in_proj_qkvz, in_proj_ba) and the FusedMoE container (…mlp.experts).

// shards maps an engine fused layer to its checkpoint shards.
var shards = map[string][]string{
	"qkv_proj":     {"q_proj", "k_proj", "v_proj"},
	"gate_up_proj": {"gate_proj", "up_proj"},
	"in_proj_qkvz": {"in_proj_qkv", "in_proj_z"},
	"in_proj_ba":   {"in_proj_b", "in_proj_a"},
}

// shardPrefixes expands a fused engine prefix into its shard prefixes.
func shardPrefixes(prefix string) []string {
	i := strings.LastIndexByte(prefix, '.')
	if i < 0 {
		return nil
	}
	var out []string
	for _, s := range shards[prefix[i+1:]] {
		out = append(out, prefix[:i+1]+s)
	}
	return out
}

// reCache holds compiled patterns.
var reCache = map[string]*regexp.Regexp{}

func cachedRE(expr string) *regexp.Regexp {
	re, ok := reCache[expr]
	if !ok {
		re = regexp.MustCompile(expr)
		reCache[expr] = re
	}
	return re
}

// fnmatch is Python's fnmatch for the patterns exclusions use ('*' matches
// anything, dots included).
func fnmatch(name, pattern string) bool {
	return cachedRE("^" + strings.ReplaceAll(regexp.QuoteMeta(pattern), `\*`, ".*") + "$").MatchString(name)
}

// vllmExcluded is vLLM's ModelOptQuantConfigBase.is_layer_excluded after
// apply_vllm_mapper ("foo*" → "foo", "foo.*").
func vllmExcluded(prefix string, exclude []string) bool {
	var pats []string
	for _, e := range exclude {
		if strings.HasSuffix(e, "*") && !strings.HasSuffix(e, ".*") {
			stem := strings.TrimSuffix(e, "*")
			pats = append(pats, stem, stem+".*")
		} else {
			pats = append(pats, e)
		}
	}
	// 1. is_layer_skipped: exact shard names.
	for _, s := range append(shardPrefixes(prefix), prefix) {
		for _, p := range pats {
			if s == p {
				return true
			}
		}
	}
	stripped := strings.Replace(prefix, "language_model.", "", 1)
	for _, p := range pats {
		// 2. substring, also with language_model. stripped; 3. fnmatch.
		if strings.Contains(prefix, p) || strings.Contains(stripped, p) || fnmatch(prefix, p) {
			return true
		}
	}
	return false
}

// sglangExcluded is SGLang's is_layer_excluded (regex on the whole prefix
// or any component, also without a leading language_model.) or
// is_layer_skipped (path match of the prefix or its shards).
func sglangExcluded(prefix string, exclude []string) bool {
	cands := []string{prefix}
	if s, ok := strings.CutPrefix(prefix, "language_model."); ok {
		cands = append(cands, s)
	}
	for _, e := range exclude {
		re := cachedRE("^(?:" + strings.ReplaceAll(strings.ReplaceAll(e, ".", `\.`), "*", ".*") + ")$")
		for _, c := range cands {
			if re.MatchString(c) {
				return true
			}
			for _, comp := range strings.Split(c, ".") {
				if re.MatchString(comp) {
					return true
				}
			}
		}
		for _, s := range append(shardPrefixes(prefix), prefix) {
			if s == e || strings.HasPrefix(s, e+".") || strings.Contains("."+s+".", "."+e+".") {
				return true
			}
		}
	}
	return false
}

// enginePrefixes lists the names the engines may give a checkpoint module:
// its fused layer (or itself) and vLLM's VLM spelling.
func enginePrefixes(name string) []string {
	p := name
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		for fused, ss := range shards {
			for _, s := range ss {
				if name[i+1:] == s {
					p = name[:i+1] + fused
				}
			}
		}
	}
	out := []string{p}
	if rest, ok := strings.CutPrefix(p, "model.language_model."); ok {
		out = append(out, "language_model.model."+rest)
	}
	return out
}

// mapPatterns applies vLLM's Qwen3.5 hf_to_vllm_mapper to the patterns.
func mapPatterns(ex []string) []string {
	out := append([]string(nil), ex...)
	for _, e := range ex {
		if rest, ok := strings.CutPrefix(e, "model.language_model."); ok {
			out = append(out, "language_model.model."+rest)
		}
	}
	return out
}

func TestSummarizeExcludeModelOptExample(t *testing.T) {
	// specs/modelopt.md §4.7: an experts-only NVFP4 Qwen MoE layer.
	unq := []string{
		"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj", "model.layers.0.self_attn.v_proj", "model.layers.0.self_attn.o_proj",
		"model.layers.0.mlp.gate", "model.layers.0.mlp.shared_expert.gate_proj", "model.layers.0.mlp.shared_expert.up_proj",
		"model.layers.0.mlp.shared_expert.down_proj", "model.layers.0.mlp.shared_expert_gate", "lm_head",
	}
	got, err := SummarizeExclude(unq, EngineAliases("model.layers.0.mlp.experts"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"lm_head", "model.layers.0.mlp.gate", "model.layers.0.mlp.shared_expert*", "model.layers.0.mlp.shared_expert_gate", "model.layers.0.self_attn*"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

// layerNames lists the checkpoint modules of a Qwen3.5-like layer.
func layerNames(prefix string, l int, full bool) (attn, linearAttn, mlp []string) {
	b := fmt.Sprintf("%s.layers.%d.", prefix, l)
	for _, p := range []string{"q_proj", "k_proj", "v_proj", "o_proj"} {
		attn = append(attn, b+"self_attn."+p)
	}
	for _, p := range []string{"in_proj_qkv", "in_proj_z", "in_proj_b", "in_proj_a", "out_proj", "conv1d"} {
		linearAttn = append(linearAttn, b+"linear_attn."+p)
	}
	if !full {
		attn = nil
	} else {
		linearAttn = nil
	}
	return attn, linearAttn, []string{b + "mlp.shared_expert.gate_proj", b + "mlp.shared_expert.up_proj", b + "mlp.shared_expert.down_proj"}
}

// TestSummarizeExcludeEngineSafe checks, under vLLM's and SGLang's matching
// rules, that every unquantized module is excluded and no quantized one is,
// for recipes whose exclusions tempt short wildcards: layer 1 entirely
// unquantized next to quantized layers 10-12 ("model.layers.1" is a
// substring of "model.layers.11"), routers next to quantized gate/up, a
// VLM prefix and a vision tower.
func TestSummarizeExcludeEngineSafe(t *testing.T) {
	for _, prefix := range []string{"model", "model.language_model"} {
		for _, recipe := range []string{"experts-only", "mlp-only", "all-but-layer-1", "attention-only"} {
			t.Run(prefix+"/"+recipe, func(t *testing.T) {
				var quantized, unquantized []string
				add := func(q bool, names ...string) {
					if q {
						quantized = append(quantized, names...)
					} else {
						unquantized = append(unquantized, names...)
					}
				}
				for l := 0; l < 13; l++ {
					full := l%4 == 3
					attn, la, shared := layerNames(prefix, l, full)
					experts := fmt.Sprintf("%s.layers.%d.mlp.experts", prefix, l)
					router := fmt.Sprintf("%s.layers.%d.mlp.gate", prefix, l)
					sgate := fmt.Sprintf("%s.layers.%d.mlp.shared_expert_gate", prefix, l)
					switch recipe {
					case "experts-only":
						add(l != 1, experts)
						add(false, attn...)
						add(false, la...)
						add(false, shared...)
						if l == 1 {
							add(false, experts)
						}
					case "mlp-only":
						add(true, experts)
						add(true, shared...)
						add(false, attn...)
						add(false, la...)
					case "all-but-layer-1":
						add(l != 1, experts)
						add(l != 1, attn...)
						if len(la) > 0 {
							add(l != 1, la[:4]...)
							add(false, la[4:]...)
						}
						add(l != 1, shared...)
					case "attention-only":
						add(true, attn...)
						add(false, la...)
						add(false, experts)
						add(false, shared...)
					}
					add(false, router, sgate)
				}
				add(false, "lm_head", "model.visual.blocks.0.attn.qkv", "model.visual.merger.linear_fc1", "mtp.layers.0.mlp.experts.0.gate_proj")
				var protected []string
				for _, q := range quantized {
					protected = append(protected, EngineAliases(q)...)
				}
				ex, err := SummarizeExclude(unquantized, protected)
				if err != nil {
					t.Fatal(err)
				}
				vex := mapPatterns(ex)
				for _, q := range quantized {
					for _, pfx := range enginePrefixes(q) {
						if vllmExcluded(pfx, vex) {
							t.Errorf("vLLM excludes quantized %s (as %s) with %q", q, pfx, ex)
						}
						if sglangExcluded(pfx, ex) {
							t.Errorf("SGLang excludes quantized %s (as %s) with %q", q, pfx, ex)
						}
						for _, e := range ex {
							if fnmatch(pfx, e) {
								t.Errorf("fnmatch(%s, %s)", pfx, e)
							}
						}
					}
				}
				for _, u := range unquantized {
					if !vllmExcluded(u, vex) || !sglangExcluded(u, ex) {
						t.Errorf("unquantized %s is not excluded by %q", u, ex)
					}
					matched := false
					for _, e := range ex {
						matched = matched || fnmatch(u, e)
					}
					if !matched {
						t.Errorf("no entry of %q matches %s", ex, u)
					}
				}
				if len(ex) > len(unquantized) {
					t.Errorf("%d entries for %d modules", len(ex), len(unquantized))
				}
			})
		}
	}
}

// TestSummarizeExcludeSubstringGuard pins the case ModelOpt's fnmatch-only
// negatives get wrong: with layer 1 unquantized and layer 11 quantized,
// ModelOpt would emit {"model.layers.1", "model.layers.1.*"}, and vLLM's
// substring rule would then exclude model.layers.11.
func TestSummarizeExcludeSubstringGuard(t *testing.T) {
	unq := []string{"model.layers.1.self_attn.q_proj", "model.layers.1.mlp.experts"}
	ex, err := SummarizeExclude(unq, EngineAliases("model.layers.11.mlp.experts"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"model.layers.1.mlp*", "model.layers.1.self_attn*"}
	if !reflect.DeepEqual(ex, want) {
		t.Errorf("got %q, want %q", ex, want)
	}
	for _, e := range ex {
		if strings.Contains("model.layers.11.mlp.experts", strings.TrimSuffix(e, "*")) {
			t.Errorf("%s matches layer 11 by substring", e)
		}
	}
}

func TestSummarizeExcludeNoSafeEntry(t *testing.T) {
	// An unquantized name that is a substring of a quantized one cannot be
	// excluded safely under vLLM's substring rule.
	if _, err := SummarizeExclude([]string{"model.layers.0.mlp.gate"}, EngineAliases("model.layers.0.mlp.gate_proj")); err == nil {
		t.Error("no error")
	}
}

func TestEngineAliases(t *testing.T) {
	got := EngineAliases("model.language_model.layers.3.self_attn.q_proj")
	want := []string{
		"model.language_model.layers.3.self_attn.q_proj", "language_model.model.layers.3.self_attn.q_proj", "model.layers.3.self_attn.q_proj",
		"model.language_model.layers.3.self_attn.qkv_proj", "language_model.model.layers.3.self_attn.qkv_proj", "model.layers.3.self_attn.qkv_proj",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
	if got := EngineAliases("lm_head"); !reflect.DeepEqual(got, []string{"lm_head"}) {
		t.Errorf("lm_head: %q", got)
	}
}
