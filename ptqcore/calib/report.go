package calib

import (
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/ptqgate/ptqgate/ptqcore/backend"
	"github.com/ptqgate/ptqgate/ptqcore/quant"
	"github.com/ptqgate/ptqgate/reports"
)

// buildReport fills res.Report (kind "calibration") from the result.
// extra are findings made before calibration; aborted says the forward
// did not run.
func buildReport(res *Result, st *state, be backend.Backend, extra []reports.Finding, aborted bool, weightTime time.Duration) {
	m, r := res.Model, res.Recipe
	rep := reports.New(reports.KindCalibration, res.Options.ToolVersion)
	rep.Model = &reports.Model{
		Path: m.Dir, Architecture: m.Architecture(), DType: m.DType.String(),
		Layers: len(m.Layers), Experts: m.NumExperts(), TopK: m.TopK(),
	}
	a := res.Applied
	// unmatched_patterns holds the coverage errors only: enabling patterns
	// that matched nothing. Disabling patterns that matched nothing are
	// info findings (INTERFACES.md, Recipes).
	rep.Recipe = &reports.Recipe{
		Name: r.Name, Source: r.Source, Algorithm: r.Algorithm.String(),
		UnmatchedPatterns: uniq(append([]string(nil), a.UnmatchedEnabling...)), Unconfigured: append([]string(nil), a.Unconfigured...),
	}
	for i := range res.Quantizers {
		q := &res.Quantizers[i]
		rq := reports.Quantizer{Name: q.Name, Enabled: q.Enabled, Format: q.Config.Format(), Calls: q.Calls, Axis: q.Config.Axis}
		if b := q.Config.BlockSizes; b != nil && b.LastDim > 0 {
			bs := b.LastDim
			rq.BlockSize = &bs
		}
		if q.Amax != nil {
			vals := make([]float64, len(q.Amax))
			for j, v := range q.Amax {
				vals[j] = float64(v)
			}
			if len(q.AmaxShape) == 0 {
				rq.Amax = reports.ScalarAmax(vals[0])
			} else {
				rq.Amax = reports.VectorAmax(vals)
			}
		}
		rep.Quantizers = append(rep.Quantizers, rq)
	}
	for _, e := range res.Experts {
		rep.Experts = append(rep.Experts, reports.Expert{
			Layer: e.Layer, Expert: e.Expert, Tokens: e.Tokens, GateUpCalls: e.GateUpCalls, DownCalls: e.DownCalls,
			AllExpertsRows: e.AllExpertsRows,
		})
		if e.Tokens == 0 {
			res.ExpertsWithoutTokens = append(res.ExpertsWithoutTokens, reports.ExpertRef{Layer: e.Layer, Expert: e.Expert, Name: e.Name})
		}
	}
	rep.PerExpertInputAmax = map[string]reports.Float{}
	for k, v := range res.PerExpertInputAmax {
		rep.PerExpertInputAmax[k] = reports.Float(v)
	}
	rep.Uncalibrated = append([]string(nil), res.Uncalibrated...)
	rep.ExpertsWithoutTokens = res.ExpertsWithoutTokens

	for _, f := range extra {
		rep.AddFinding(f)
	}
	addRecipeFindings(rep, r, a, res.Options.Faults.PluralMatch)
	if !aborted {
		addCalibrationFindings(rep, res, st)
	}
	rep.SortFindings()

	host, _ := os.Hostname()
	runExtra := map[string]any{
		"batches":                    res.Batches,
		"tokens":                     res.Tokens,
		"experts_impl":               res.Options.Experts.String(),
		"calib_all_experts":          res.Options.AllExperts,
		"layerwise":                  r.Algorithm.Layerwise,
		"forward_seconds":            res.ForwardDuration.Seconds(),
		"weight_calibration_seconds": weightTime.Seconds(),
	}
	if s := res.ForwardDuration.Seconds(); s > 0 {
		runExtra["tokens_per_second"] = float64(res.Tokens) / s
	}
	if f := res.Options.Faults.Names(); len(f) > 0 {
		runExtra["faults"] = f
	}
	rep.Run = &reports.Run{
		StartedAt:       time.Now().Add(-res.Duration).UTC().Format(time.RFC3339),
		DurationSeconds: res.Duration.Seconds(),
		Host:            host,
		Device:          be.Name(),
		Paths:           map[string]string{"model": m.Dir},
		Extra:           runExtra,
	}
	res.Report = rep
}

// severity is error, or warning when --allow-uncalibrated accepts it.
func severity(allow bool) reports.Severity {
	if allow {
		return reports.SeverityWarning
	}
	return reports.SeverityError
}

// addRecipeFindings reports recipe coverage: an enabling pattern that
// matched nothing is an error, a disabling one information.
func addRecipeFindings(rep *reports.Report, recipe *quant.Recipe, a *quant.Applied, raw bool) {
	for i, p := range a.UnmatchedEnabling {
		origin := ""
		if i < len(a.UnmatchedEnablingEntries) {
			origin = " " + a.UnmatchedEnablingEntries[i].Describe()
		}
		rep.AddFinding(reports.Finding{
			Rule: RuleUnmatchedPattern, Severity: reports.SeverityError, Target: reports.TargetAny, Module: p,
			Message:        fmt.Sprintf("enabling recipe pattern %q matched no quantizer%s: the quantizers it was written for stay unquantized", p, origin),
			EngineBehavior: "the matching modules are exported unquantized (e.g. expert weights left in BF16)",
			Source:         "specs/modelopt.md §1.3",
		})
	}
	for _, e := range recipe.Entries {
		if e.Enable || entryMatches(e, a.Quantizers, raw) {
			continue
		}
		rep.AddFinding(reports.Finding{
			Rule: RuleUnmatchedPattern, Severity: reports.SeverityInfo, Target: reports.TargetAny, Module: e.QuantizerName,
			Message: fmt.Sprintf("disabling recipe entry %s matched no quantizer (nothing of that kind in this model)", e.Describe()),
			Source:  "INTERFACES.md Recipes",
		})
	}
	for _, m := range a.InputWithoutWeight {
		rep.AddFinding(reports.Finding{
			Rule: RuleInputWithoutWeight, Severity: reports.SeverityInfo, Target: reports.TargetAny, Module: m,
			Message: fmt.Sprintf("%s: input quantizer enabled while its weights are unquantized: calibrated, but an export writes no scale for it", m),
			Source:  "specs/modelopt.md §4.2",
		})
	}
}

// addCalibrationFindings reports uncalibrated quantizers, invalid amax,
// hooks that missed routed experts and experts without tokens.
func addCalibrationFindings(rep *reports.Report, res *Result, st *state) {
	allow := res.Options.AllowUncalibrated
	for i := range res.Quantizers {
		q := &res.Quantizers[i]
		if !q.Enabled || q.Calibrated() {
			continue
		}
		if q.Amax == nil {
			rep.AddFinding(reports.Finding{
				Rule: RuleUncalibrated, Severity: severity(allow), Target: reports.TargetAny, Module: q.Name,
				Message:        fmt.Sprintf("%s is enabled (%s) but was never calibrated: its hook saw no input (%d calls)", q.Name, q.Config.Format(), q.Calls),
				EngineBehavior: uncalibratedBehavior(q),
				Source:         "INTERFACES.md Counting; specs/modelopt.md §2.2",
			})
			continue
		}
		rep.AddFinding(reports.Finding{
			Rule: RuleInvalidAmax, Severity: severity(allow), Target: reports.TargetAny, Module: q.Name,
			Message:        fmt.Sprintf("%s has amax %s: an amax must be finite and > 0", q.Name, describeAmax(q.Amax)),
			EngineBehavior: "a zero, negative or non-finite amax gives an unusable scale (the toolkit silently replaces it)",
			Source:         "INTERFACES.md Recipes (behaviour baseline)",
		})
	}
	for _, es := range st.order {
		for p, proj := range []string{quant.ProjGateUp, quant.ProjDown} {
			var missed []int
			var tokens int64
			for e := range es.tokens {
				if es.tokens[e] > 0 && es.calls[p][e] == 0 {
					missed = append(missed, e)
					tokens += es.tokens[e]
				}
			}
			if len(missed) == 0 {
				continue
			}
			rep.AddFinding(reports.Finding{
				Rule: RuleExpertHookMissed, Severity: severity(allow), Target: reports.TargetAny,
				Module: es.f.Name + "." + proj,
				Message: fmt.Sprintf("%s: expert(s) %s received %d routed token(s) but their %s input never reached the quantizer hook (0 calls): the expert execution bypassed the hooks",
					es.f.Name, intRanges(missed), tokens, proj),
				EngineBehavior: "without expert input amax no input_scale is exported; vLLM then loads zeros → inf scale → NaN output (token salad)",
				Source:         "specs/modelopt.md §3.4",
			})
		}
	}
	for _, e := range res.ExpertsWithoutTokens {
		rep.AddFinding(reports.Finding{
			Rule: RuleExpertWithoutTokens, Severity: reports.SeverityWarning, Target: reports.TargetAny, Module: e.Name,
			Message: fmt.Sprintf("expert %d of layer %d (%s) received no tokens in %d batches: its weight amax come from the weights, its inputs only from the shared input quantizer",
				e.Expert, e.Layer, e.Name, res.Batches),
			Source: "specs/modelopt.md §3.5",
		})
	}
}

// uncalibratedBehavior says what an export and the engines make of a
// quantizer without amax.
func uncalibratedBehavior(q *QuantizerResult) string {
	switch {
	case q.Proj != "" && q.Role == quant.RoleInput:
		return "no input_scale is exported for these experts; vLLM loads the missing per-expert input_scale as 0 → 1/0 = inf global scale → NaN output"
	case q.Role == quant.RoleKBMM || q.Role == quant.RoleVBMM:
		return "no k_scale/v_scale is exported; engines fall back to 1.0"
	case q.Role == quant.RoleInput:
		return "no input_scale is exported for this module; the engines reject the checkpoint or run with an uninitialized scale"
	}
	return "the weight cannot be quantized without an amax"
}

// describeAmax prints the offending values of an invalid amax.
func describeAmax(a []float32) string {
	if len(a) == 1 {
		return formatAmax(a[0])
	}
	bad := 0
	first := -1
	for i, v := range a {
		if !(v > 0) || math.IsInf(float64(v), 0) {
			bad++
			if first < 0 {
				first = i
			}
		}
	}
	return fmt.Sprintf("%s at index %d (%d of %d values invalid)", formatAmax(a[first]), first, bad, len(a))
}

func formatAmax(v float32) string {
	switch {
	case v != v:
		return "NaN"
	case math.IsInf(float64(v), 1):
		return "+Inf"
	case math.IsInf(float64(v), -1):
		return "-Inf"
	}
	return fmt.Sprintf("%g", v)
}

// intRanges writes sorted ints as "0-3, 5, 7-9".
func intRanges(xs []int) string {
	xs = append([]int(nil), xs...)
	sort.Ints(xs)
	var parts []string
	for i := 0; i < len(xs); {
		j := i
		for j+1 < len(xs) && xs[j+1] == xs[j]+1 {
			j++
		}
		if j > i {
			parts = append(parts, fmt.Sprintf("%d-%d", xs[i], xs[j]))
		} else {
			parts = append(parts, fmt.Sprint(xs[i]))
		}
		i = j + 1
	}
	return strings.Join(parts, ", ")
}

// pluralFindings compares the recipe as applied with ModelOpt HEAD's
// matching (singular-name normalization, #1340): an enabling pattern that
// reaches a per-expert quantizer only through its singular name left that
// quantizer disabled when the normalization is off (the plural-match
// fault). One error finding per such pattern.
func pluralFindings(r *quant.Recipe, qs []quant.Quantizer, applied *quant.Applied) []reports.Finding {
	ref, _ := r.Apply(qs, quant.ApplyOptions{})
	missed := map[string][]string{}
	var patterns []string
	for i, q := range applied.Quantizers {
		if q.Config.Enable || !ref.Quantizers[i].Config.Enable {
			continue
		}
		singular := quant.Singular(q.Name)
		for _, e := range r.Entries {
			if !e.Enable || quant.Match(e.QuantizerName, q.Name) || !quant.Match(e.QuantizerName, singular) {
				continue
			}
			if missed[e.QuantizerName] == nil {
				patterns = append(patterns, e.QuantizerName)
			}
			missed[e.QuantizerName] = append(missed[e.QuantizerName], q.Name)
		}
	}
	var out []reports.Finding
	for _, p := range patterns {
		names := missed[p]
		out = append(out, reports.Finding{
			Rule: RulePluralUnmatched, Severity: reports.SeverityError, Target: reports.TargetAny, Module: p,
			Message: fmt.Sprintf("enabling recipe pattern %q does not match %d per-expert quantizer(s) by their plural names (e.g. %s), which ModelOpt matches through their singular form: they stay disabled and those expert weights are exported unquantized",
				p, len(names), names[0]),
			EngineBehavior: "the experts are served in BF16 while the recipe asked for quantized experts",
			Source:         "specs/modelopt.md §1.3 (bug #2 of #1340)",
		})
	}
	return out
}

// uniq returns xs without repeats, in first-seen order.
func uniq(xs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// entryMatches reports whether a recipe entry matches any quantizer, as
// quant.Apply matches (raw names only when raw).
func entryMatches(e quant.Entry, qs []quant.Quantizer, raw bool) bool {
	for _, q := range qs {
		if e.ParentClass != "" && e.ParentClass != q.ParentClass {
			continue
		}
		if quant.Match(e.QuantizerName, q.Name) || (!raw && quant.Match(e.QuantizerName, quant.Singular(q.Name))) {
			return true
		}
	}
	return false
}
