package contracts

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ptqgate/ptqgate/reports"
)

func TestParseTarget(t *testing.T) {
	cases := []struct {
		in, want string
		bad      bool
	}{
		{in: "vllm", want: "vllm@main"},
		{in: "sglang", want: "sglang@main"},
		{in: "vllm@0.20", want: "vllm@0.20"},
		{in: "vllm@v0.27", want: "vllm@0.27"},
		{in: "VLLM@main", want: "vllm@main"},
		{in: "sglang@0.5.9", want: "sglang@0.5.9"},
		{in: "sglang@v0.5.17", want: "sglang@0.5.17"},
		{in: " sglang@0.5.10 ", want: "sglang@0.5.10"},
		{in: "sglang@0.5.18", bad: true},
		{in: "sglang@0.5.10.post1", bad: true},
		{in: "vllm@0.21", bad: true},
		{in: "trtllm", bad: true},
		{in: "vllm@", bad: true},
		{in: "", bad: true},
		{in: "vllm@vmain", bad: true},
	}
	for _, c := range cases {
		got, err := ParseTarget(c.in)
		if c.bad {
			var u *UnknownTargetError
			if !errors.As(err, &u) || u.ExitCode() != 2 || !strings.Contains(err.Error(), "sglang@0.5.17") {
				t.Errorf("ParseTarget(%q) = %v, %v; want an UnknownTargetError listing the known tokens", c.in, got, err)
			}
			continue
		}
		if err != nil || got.Token() != c.want {
			t.Errorf("ParseTarget(%q) = %q, %v; want %q", c.in, got.Token(), err, c.want)
		}
	}
}

func TestKnownTokensAndOrder(t *testing.T) {
	toks := KnownTokens()
	want := []string{"vllm@0.20", "vllm@0.27", "vllm@main", "sglang@0.5.9", "sglang@0.5.10", "sglang@0.5.11", "sglang@0.5.12",
		"sglang@0.5.13", "sglang@0.5.14", "sglang@0.5.15", "sglang@0.5.16", "sglang@0.5.17", "sglang@main"}
	if strings.Join(toks, ",") != strings.Join(want, ",") {
		t.Fatalf("KnownTokens = %v", toks)
	}
	ts, err := ParseTargets([]string{"sglang@main,vllm", "vllm@main", "sglang@0.5.9"})
	if err != nil {
		t.Fatal(err)
	}
	SortTargets(ts)
	var got []string
	for _, x := range ts {
		got = append(got, x.Token())
	}
	if strings.Join(got, ",") != "vllm@main,sglang@0.5.9,sglang@main" {
		t.Errorf("ParseTargets+SortTargets = %v", got)
	}
	s10 := MustTarget("sglang@0.5.10")
	for _, c := range []struct {
		from, to string
		want     bool
	}{{"0.5.10", "0.5.10", true}, {"0.5.11", "", false}, {"", "0.5.9", false}, {"0.5.9", "main", true}, {"", "", true}} {
		if got := s10.InRange(c.from, c.to); got != c.want {
			t.Errorf("sglang@0.5.10 InRange(%q,%q) = %v", c.from, c.to, got)
		}
	}
}

func TestRuleTable(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range Rules() {
		if seen[r.ID] {
			t.Errorf("duplicate rule %s", r.ID)
		}
		seen[r.ID] = true
		if r.Title == "" || r.Doc == "" || len(r.Sources) == 0 {
			t.Errorf("rule %s lacks title, doc or sources", r.ID)
		}
		switch r.Severity {
		case reports.SeverityError, reports.SeverityWarning, reports.SeverityInfo:
		default:
			t.Errorf("rule %s severity %q", r.ID, r.Severity)
		}
		if r.Scope != ScopeAny && r.Scope != ScopeTarget {
			t.Errorf("rule %s scope %q", r.ID, r.Scope)
		}
	}
	for _, f := range Facts() {
		r, ok := LookupRule(f.Rule)
		if !ok {
			t.Errorf("fact for unknown rule %s", f.Rule)
			continue
		}
		if r.Scope != ScopeTarget {
			t.Errorf("fact for rule %s, which is not per target", f.Rule)
		}
		if f.Behavior == "" || !strings.HasPrefix(f.Source, "specs/") {
			t.Errorf("fact %s/%s/%s lacks behaviour or a specs/ source", f.Rule, f.Case, f.Engine)
		}
		for _, v := range []string{f.From, f.To} {
			if v != "" && rankOf(f.Engine, v) < 0 {
				t.Errorf("fact %s/%s: %s has no version %s", f.Rule, f.Case, f.Engine, v)
			}
		}
	}
}

func TestLookupVersionsAndFamilies(t *testing.T) {
	cases := []struct {
		rule, kase, target string
		fam                Family
		want               reports.Severity // "" = no fact
		contains           string
	}{
		{"layout.gdn-packed-scale", "0d", "sglang@0.5.10", FamilyQwen35MoE, reports.SeverityError, "Unexpected scalar for tuple shard load: loaded_shard_id=(0, 1, 2), split_sizes=[1, 1, 1]"},
		{"layout.gdn-packed-scale", "0d", "sglang@0.5.9", FamilyQwen35MoE, "", ""},
		{"layout.gdn-packed-scale", "0d", "sglang@0.5.11", FamilyQwen35MoE, "", ""},
		{"layout.gdn-packed-scale", "0d", "sglang@0.5.10", FamilyQwen3MoE, "", ""},
		{"layout.gdn-packed-scale", "3", "vllm@main", FamilyQwen35MoE, reports.SeverityError, "shape[0] == 1"},
		{"layout.gdn-packed-scale", "3", "sglang@0.5.10", FamilyQwen35MoE, "", ""},
		{"layout.fused-on-disk", "nvfp4-scalar", "sglang@0.5.15", FamilyQwen3MoE, reports.SeverityError, "slot 0"},
		{"layout.fused-on-disk", "nvfp4-scalar", "sglang@0.5.16", FamilyQwen3MoE, "", ""},
		{"layout.fused-on-disk", "nvfp4-scalar", "vllm@0.27", FamilyQwen3MoE, "", ""},
		{"census.bf16-only", "router", "vllm@main", FamilyQwen35MoE, "", ""},
		{"census.bf16-only", "router", "vllm@main", FamilyQwen3MoE, reports.SeverityError, "quant_config=None"},
		{"census.bf16-only", "qwen35-fp4-attention", "sglang@0.5.16", FamilyQwen35MoE, reports.SeverityError, "#19587"},
		{"census.bf16-only", "qwen35-fp4-attention", "sglang@0.5.17", FamilyQwen35MoE, "", ""},
		{"kv.dropped", "dropped", "sglang@0.5.17", FamilyQwen35MoE, reports.SeverityWarning, "QWEN3_5_KV_SCALE_MAPPER"},
		{"kv.dropped", "dropped", "vllm@0.27", FamilyQwen35MoE, reports.SeverityWarning, "#54623"},
		{"kv.dropped", "dropped", "vllm@main", FamilyQwen35MoE, reports.SeverityWarning, "not loaded"},
		{"shape.scale", "moe-1", "vllm@0.20", FamilyQwen3MoE, reports.SeverityError, "broadcast shape [1]"},
		{"shape.scale", "moe-1", "vllm@0.27", FamilyQwen3MoE, "", ""},
	}
	for _, c := range cases {
		f, ok := Lookup(c.rule, c.kase, MustTarget(c.target), c.fam)
		if c.want == "" {
			if ok && f.Severity != "" {
				t.Errorf("%s/%s on %s (%s): unexpected fact %+v", c.rule, c.kase, c.target, c.fam, f)
			}
			continue
		}
		if !ok || f.Severity != c.want || !strings.Contains(f.Behavior, c.contains) {
			t.Errorf("%s/%s on %s (%s) = %+v, %v; want %s containing %q", c.rule, c.kase, c.target, c.fam, f, ok, c.want, c.contains)
		}
	}
}

func TestExclusions(t *testing.T) {
	const L = "model.layers.0"
	qkv := []string{L + ".self_attn.q_proj", L + ".self_attn.k_proj", L + ".self_attn.v_proj"}
	type want struct{ excluded, partial bool }
	cases := []struct {
		name    string
		target  string
		fam     Family
		entries []string
		prefix  string
		shards  []string
		moe     bool
		want    want
	}{
		{"vllm exact shards", "vllm", FamilyQwen3MoE, qkv, L + ".self_attn.qkv_proj", qkv, false, want{true, false}},
		{"vllm partial shards", "vllm", FamilyQwen3MoE, qkv[:1], L + ".self_attn.qkv_proj", qkv, false, want{false, true}},
		{"vllm foo* split then substring", "vllm", FamilyQwen3MoE, []string{L + ".self_attn*"}, L + ".self_attn.qkv_proj", qkv, false, want{true, false}},
		{"vllm legacy substring: mlp.gate excludes mlp.gate_up_proj", "vllm", FamilyQwen3MoE, []string{L + ".mlp.gate"}, L + ".mlp.gate_up_proj",
			[]string{L + ".mlp.gate_proj", L + ".mlp.up_proj"}, false, want{true, false}},
		{"vllm fnmatch", "vllm", FamilyQwen3MoE, []string{"*.mlp.experts"}, L + ".mlp.experts", nil, true, want{true, false}},
		{"vllm per-expert entries do not exclude the MoE layer", "vllm", FamilyQwen3MoE, []string{L + ".mlp.experts.0.gate_proj", L + ".mlp.experts.1.up_proj"},
			L + ".mlp.experts", nil, true, want{false, false}},
		{"vllm lm_head", "vllm", FamilyQwen3MoE, []string{"lm_head"}, "lm_head", nil, false, want{true, false}},
		{"vllm VLM prefix stripped for substring", "vllm", FamilyQwen35MoE, []string{"model.layers.3.mlp.gate"}, "model.language_model.layers.3.mlp.gate", nil, false, want{true, false}},
		{"sglang component match", "sglang", FamilyQwen3MoE, []string{"experts"}, L + ".mlp.experts", nil, true, want{true, false}},
		{"sglang component match excludes all layers", "sglang", FamilyQwen3MoE, []string{"self_attn"}, "model.layers.7.self_attn.o_proj", nil, false, want{true, false}},
		{"sglang wildcard fullmatch", "sglang", FamilyQwen3MoE, []string{"model.layers.*.mlp.experts"}, L + ".mlp.experts", nil, true, want{true, false}},
		{"sglang per-expert entries do not exclude", "sglang", FamilyQwen3MoE, []string{L + ".mlp.experts.0.gate_proj"}, L + ".mlp.experts", nil, true, want{false, false}},
		{"sglang partial shards", "sglang", FamilyQwen3MoE, qkv[1:2], L + ".self_attn.qkv_proj", qkv, false, want{false, true}},
		{"sglang dotted prefix entry", "sglang", FamilyQwen3MoE, []string{L + ".self_attn"}, L + ".self_attn.qkv_proj", qkv, false, want{true, false}},
		{"sglang 0.5.11 in_proj_qkv only is partial", "sglang@0.5.11", FamilyQwen35MoE, []string{L + ".linear_attn.in_proj_qkv"}, L + ".linear_attn.in_proj_qkvz",
			[]string{L + ".linear_attn.in_proj_qkv", L + ".linear_attn.in_proj_z"}, false, want{false, true}},
		{"sglang 0.5.10 substring: in_proj_qkv excludes in_proj_qkvz", "sglang@0.5.10", FamilyQwen35MoE, []string{L + ".linear_attn.in_proj_qkv"}, L + ".linear_attn.in_proj_qkvz",
			[]string{L + ".linear_attn.in_proj_qkv", L + ".linear_attn.in_proj_z"}, false, want{true, false}},
		{"sglang VLM names", "sglang", FamilyQwen35MoE, []string{"model.language_model.layers.3.self_attn*"}, "model.language_model.layers.3.self_attn.qkv_proj",
			[]string{"model.language_model.layers.3.self_attn.q_proj", "model.language_model.layers.3.self_attn.k_proj", "model.language_model.layers.3.self_attn.v_proj"}, false, want{true, false}},
		{"nothing matches", "sglang", FamilyQwen3MoE, []string{"lm_head"}, L + ".self_attn.o_proj", nil, false, want{false, false}},
	}
	for _, c := range cases {
		x := NewExclusions(MustTarget(c.target), c.fam, c.entries)
		var d Decision
		if c.moe {
			d = x.MoE(c.prefix)
		} else {
			d = x.Linear(c.prefix, c.shards)
		}
		if d.Excluded != c.want.excluded || d.Partial != c.want.partial {
			t.Errorf("%s: %+v, want excluded=%v partial=%v", c.name, d, c.want.excluded, c.want.partial)
		}
	}
}

func TestKVScaleLoaded(t *testing.T) {
	const mo = "model.layers.3.self_attn.k_proj.k_scale"
	const ct = "model.layers.3.self_attn.k_scale"
	const eng = "model.layers.3.self_attn.attn.v_scale"
	cases := []struct {
		target string
		fam    Family
		name   string
		want   bool
	}{
		{"vllm@main", FamilyQwen3MoE, mo, true},
		{"vllm@0.27", FamilyQwen3MoE, mo, true},
		{"vllm@0.20", FamilyQwen3MoE, mo, false},
		{"vllm@0.27", FamilyQwen35MoE, mo, false},
		{"vllm@0.27", FamilyQwen35MoE, eng, true},
		{"vllm@main", FamilyQwen35MoE, mo, true},
		{"vllm@main", FamilyQwen35MoE, ct, true},
		{"vllm@main", FamilyAny, "model.layers.3.self_attn.kv_scale", true},
		{"vllm@main", FamilyAny, "model.layers.3.self_attn.k_proj.v_scale", false},
		{"sglang@main", FamilyQwen3MoE, mo, false},
		{"sglang@0.5.16", FamilyQwen35MoE, mo, false},
		{"sglang@0.5.17", FamilyQwen35MoE, mo, true},
		{"sglang@main", FamilyQwen35MoE, ct, false},
		{"sglang@main", FamilyAny, ct, true},
	}
	for _, c := range cases {
		got, exp := KVScaleLoaded(MustTarget(c.target), c.fam, c.name)
		if got != c.want || !strings.HasPrefix(exp, "model.layers.3.self_attn.attn.") {
			t.Errorf("KVScaleLoaded(%s, %q, %s) = %v, %q; want %v", c.target, c.fam, c.name, got, exp, c.want)
		}
	}
	if _, _, ok := KVScaleName("model.layers.0.mlp.experts.0.gate_proj.input_scale"); ok {
		t.Error("input_scale recognised as a KV scale")
	}
}

var update = flag.Bool("update", false, "rewrite verifier/RULES.md")

// TestRulesDoc keeps verifier/RULES.md equal to RulesMarkdown.
func TestRulesDoc(t *testing.T) {
	path := filepath.Join("..", "RULES.md")
	want := RulesMarkdown()
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("%s is out of date: run go test ./verifier/contracts -run TestRulesDoc -update", path)
	}
	for _, r := range Rules() {
		if !strings.Contains(want, "### `"+r.ID+"`") {
			t.Errorf("RULES.md lacks %s", r.ID)
		}
	}
}
