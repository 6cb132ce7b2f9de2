package contracts

import (
	"fmt"
	"strings"
)

// versionRange formats a fact's version range for one engine.
func versionRange(f Fact) string {
	all := versions[f.Engine]
	from, to := f.From, f.To
	if from == "" {
		from = all[0]
	}
	if to == "" {
		to = all[len(all)-1]
	}
	switch {
	case f.From == "" && f.To == "":
		return "all"
	case from == to:
		return from
	}
	return from + " … " + to
}

// mdCell escapes a table cell.
func mdCell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}

// RulesMarkdown renders the rule table and its loader facts as the
// Markdown document verifier/RULES.md (kept in step by a test).
func RulesMarkdown() string {
	var b strings.Builder
	b.WriteString("# Verifier rules\n\n")
	b.WriteString("Generated from `verifier/contracts` (`rules.go`, `facts.go`) by `go test ./verifier/contracts -run TestRulesDoc -update`; do not edit by hand.\n\n")
	b.WriteString("Every finding of `ptqgate verify` carries one of these rule IDs, a severity, the target it concerns (an exact token of ")
	b.WriteString("`" + strings.Join(KnownTokens(), "`, `") + "`, or `any` for checkpoint defects independent of the engine), ")
	b.WriteString("what the engine does with the problem (`engine_behavior`) and the spec section it comes from (`source`). ")
	b.WriteString("Per-target rules take their severity and behaviour from the loader facts listed under each rule (engine, version range, model family); ")
	b.WriteString("a target that no fact covers loads the case correctly.\n\n")
	b.WriteString("## Summary\n\n| rule | severity | targets | what it checks | sources |\n|---|---|---|---|---|\n")
	for _, r := range Rules() {
		tg := "any"
		if r.Scope == ScopeTarget {
			tg = "per target"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", r.ID, r.Severity, tg, mdCell(r.Title), mdCell(strings.Join(r.Sources, "; ")))
	}
	b.WriteString("\n## Rules\n")
	for _, r := range Rules() {
		fmt.Fprintf(&b, "\n### `%s`\n\n%s.\n\n", r.ID, strings.TrimSuffix(r.Title, "."))
		fmt.Fprintf(&b, "- severity: %s; target: %s\n", r.Severity, map[Scope]string{ScopeAny: "`any`", ScopeTarget: "each target token"}[r.Scope])
		fmt.Fprintf(&b, "- sources: %s\n", strings.Join(r.Sources, "; "))
		if len(r.Catalogue) > 0 {
			fmt.Fprintf(&b, "- catalogue: %s\n", strings.Join(r.Catalogue, ", "))
		}
		fmt.Fprintf(&b, "\n%s\n", r.Doc)
		var rows []Fact
		for _, f := range facts {
			if f.Rule == r.ID {
				rows = append(rows, f)
			}
		}
		if len(rows) == 0 {
			continue
		}
		b.WriteString("\n| case | engine | versions | family | severity | engine behaviour | source |\n|---|---|---|---|---|---|---|\n")
		for _, f := range rows {
			fam := string(f.Family)
			if fam == "" {
				fam = "any"
			}
			sev := string(f.Severity)
			if sev == "" {
				sev = "loads"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", f.Case, f.Engine, versionRange(f), fam, sev, mdCell(f.Behavior), mdCell(f.Source))
		}
	}
	return b.String()
}
