// Package contracts holds what the vLLM and SGLang loaders expect of a
// ModelOpt-format checkpoint, per engine and version, as data: the target
// tokens of INTERFACES.md, the verifier's rule table (ID, severity, scope,
// sources) and the facts each rule consults (engine, version range, model
// family, outcome, the engine's exact exception text or silent outcome,
// and the spec section it was read from).
//
// Everything here comes from the engine specs (specs/vllm.md,
// specs/sglang.md) and specs/modelopt.md, never from ptqgate's exporter.
package contracts

import (
	"fmt"
	"sort"
	"strings"
)

// Engine is a serving engine whose loader the verifier emulates.
type Engine string

// The engines.
const (
	VLLM   Engine = "vllm"
	SGLang Engine = "sglang"
)

// Main is the version name of each engine's newest reading.
const Main = "main"

// versions lists each engine's known versions, oldest first. vllm@0.20 is
// the "[old]" loader of specs/vllm.md (≤ v0.20, FusedMoE), vllm@main the
// "[new]" mid-2026 reading (RoutedExperts); vllm@0.27 follows [new] except
// where the spec dates a change after it (the Qwen3.5 KV-scale remap,
// #54623). The SGLang tags are those of specs/sglang.md §0; main is its
// MAIN commit (2026-08-16).
var versions = map[Engine][]string{
	VLLM:   {"0.20", "0.27", Main},
	SGLang: {"0.5.9", "0.5.10", "0.5.11", "0.5.12", "0.5.13", "0.5.14", "0.5.15", "0.5.16", "0.5.17", Main},
}

// engineOrder fixes the order of engines in listings.
var engineOrder = []Engine{VLLM, SGLang}

// Target is one engine at one version, e.g. vllm@0.27.
type Target struct {
	Engine  Engine
	Version string
	rank    int // index into versions[Engine]
}

// Token returns the canonical target token, e.g. "sglang@0.5.10"; it is
// what every finding names.
func (t Target) Token() string { return string(t.Engine) + "@" + t.Version }

// String returns the token.
func (t Target) String() string { return t.Token() }

// IsZero reports whether t is the zero Target.
func (t Target) IsZero() bool { return t.Engine == "" }

// rankOf returns the rank of version v of engine e, or -1.
func rankOf(e Engine, v string) int {
	for i, x := range versions[e] {
		if x == v {
			return i
		}
	}
	return -1
}

// InRange reports whether t's version lies in [from, to] (inclusive);
// an empty bound is open. Bounds must be versions of t's engine.
func (t Target) InRange(from, to string) bool {
	if from != "" {
		if r := rankOf(t.Engine, from); r < 0 || t.rank < r {
			return false
		}
	}
	if to != "" {
		if r := rankOf(t.Engine, to); r < 0 || t.rank > r {
			return false
		}
	}
	return true
}

// AtLeast reports whether t's version is v or newer.
func (t Target) AtLeast(v string) bool { return t.InRange(v, "") }

// AtMost reports whether t's version is v or older.
func (t Target) AtMost(v string) bool { return t.InRange("", v) }

// UnknownTargetError says a --target token names no known engine version.
// It is a usage error (exit 2) and lists the known tokens.
type UnknownTargetError struct {
	Token string
}

// Error names the token and lists the known ones.
func (e *UnknownTargetError) Error() string {
	return fmt.Sprintf("unknown target %q; known targets: %s (a bare engine name means @main; a leading v in the version is optional)",
		e.Token, strings.Join(KnownTokens(), ", "))
}

// ExitCode makes an unknown target a usage error.
func (e *UnknownTargetError) ExitCode() int { return 2 }

// ParseTarget parses ENGINE[@VERSION]: a bare engine means ENGINE@main and
// a leading "v" in the version is optional ("vllm@v0.27" = "vllm@0.27").
// An unknown engine or version is an *UnknownTargetError.
func ParseTarget(token string) (Target, error) {
	s := strings.TrimSpace(token)
	eng, ver, hasVer := strings.Cut(s, "@")
	e := Engine(strings.ToLower(eng))
	if _, ok := versions[e]; !ok {
		return Target{}, &UnknownTargetError{Token: token}
	}
	if !hasVer {
		ver = Main
	}
	if len(ver) > 1 && (ver[0] == 'v' || ver[0] == 'V') && ver[1] >= '0' && ver[1] <= '9' {
		ver = ver[1:]
	}
	r := rankOf(e, ver)
	if r < 0 {
		return Target{}, &UnknownTargetError{Token: token}
	}
	return Target{Engine: e, Version: ver, rank: r}, nil
}

// MustTarget parses a token known to be valid (tables and tests); it
// panics on an unknown token, which is a programming error.
func MustTarget(token string) Target {
	t, err := ParseTarget(token)
	if err != nil {
		panic(err)
	}
	return t
}

// KnownTokens returns every known target token, engines in a fixed order
// and versions oldest first.
func KnownTokens() []string {
	var out []string
	for _, e := range engineOrder {
		for _, v := range versions[e] {
			out = append(out, string(e)+"@"+v)
		}
	}
	return out
}

// AllTargets returns every known target in the order of KnownTokens.
func AllTargets() []Target {
	var out []Target
	for _, tok := range KnownTokens() {
		out = append(out, MustTarget(tok))
	}
	return out
}

// DefaultTargets are the targets verified when none is named: vllm and
// sglang, i.e. vllm@main and sglang@main.
func DefaultTargets() []Target {
	return []Target{MustTarget("vllm"), MustTarget("sglang")}
}

// ParseTargets parses a list of tokens, dropping duplicates (after
// normalisation) and keeping the first occurrence's order.
func ParseTargets(tokens []string) ([]Target, error) {
	var out []Target
	seen := map[string]bool{}
	for _, tok := range tokens {
		for _, part := range strings.Split(tok, ",") {
			if strings.TrimSpace(part) == "" {
				continue
			}
			t, err := ParseTarget(part)
			if err != nil {
				return nil, err
			}
			if !seen[t.Token()] {
				seen[t.Token()] = true
				out = append(out, t)
			}
		}
	}
	return out, nil
}

// SortTargets orders targets as KnownTokens does.
func SortTargets(ts []Target) {
	pos := map[Engine]int{}
	for i, e := range engineOrder {
		pos[e] = i
	}
	sort.SliceStable(ts, func(i, j int) bool {
		if ts[i].Engine != ts[j].Engine {
			return pos[ts[i].Engine] < pos[ts[j].Engine]
		}
		return ts[i].rank < ts[j].rank
	})
}
