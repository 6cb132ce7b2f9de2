package reports

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Changes a DiffEntry can record (DiffEntry.Change).
const (
	ChangeRegression  = "regression"  // worse in a way that fails `report diff`
	ChangeImprovement = "improvement" // a defect of the baseline is gone
	ChangeChanged     = "changed"     // different, neither better nor worse
	ChangeAdded       = "added"       // only in the new report
	ChangeRemoved     = "removed"     // only in the baseline
)

// What a DiffEntry compares (DiffEntry.What).
const (
	WhatModel                 = "model"
	WhatRecipe                = "recipe"
	WhatQuantizer             = "quantizer"
	WhatQuantizerAmax         = "quantizer.amax"
	WhatQuantizerEnabled      = "quantizer.enabled"
	WhatQuantizerFormat       = "quantizer.format"
	WhatQuantizerCalls        = "quantizer.calls"
	WhatQuantizerUncalibrated = "quantizer.uncalibrated"
	WhatExpert                = "expert"
	WhatExpertTokens          = "expert.tokens"
	WhatExpertGateUpCalls     = "expert.gate_up_calls"
	WhatExpertDownCalls       = "expert.down_calls"
	WhatFinding               = "finding"
	WhatDequantError          = "dequant_error"
)

var whatOrder = []string{WhatModel, WhatRecipe, WhatQuantizerAmax, WhatQuantizerUncalibrated, WhatExpertGateUpCalls,
	WhatExpertDownCalls, WhatFinding, WhatDequantError, WhatQuantizer, WhatQuantizerEnabled, WhatQuantizerFormat,
	WhatQuantizerCalls, WhatExpert, WhatExpertTokens}

func whatRank(w string) int {
	if i := slices.Index(whatOrder, w); i >= 0 {
		return i
	}
	return len(whatOrder)
}

// Rules of the error findings a diff report carries, one per regression.
const (
	RuleDiffAmaxLost        = "diff/amax-lost"
	RuleDiffAmaxInvalid     = "diff/amax-invalid"
	RuleDiffUncalibrated    = "diff/uncalibrated"
	RuleDiffExpertCallsLost = "diff/expert-calls-lost"
	RuleDiffNewError        = "diff/new-error"
	RuleDiffDequantGrew     = "diff/dequant-error-grew"
)

// Defaults of DiffOptions, also the defaults of `ptqgate report diff`.
const (
	DefaultDequantRatio  = 1.5
	DefaultDequantFloor  = 1e-3
	DefaultAmaxTolerance = 1e-6
)

// DiffOptions sets the thresholds of Diff.
type DiffOptions struct {
	// DequantRatio: a module's relative dequantization error regresses
	// when it grows past DequantRatio × the baseline's and past
	// DequantFloor. Values ≤ 1 mean DefaultDequantRatio.
	DequantRatio float64
	// DequantFloor is an absolute relative error at or below which a
	// dequantization error never regresses (noise on tiny errors).
	DequantFloor float64
	// AmaxTolerance is the relative amax change at or below which an amax
	// counts as unchanged; 0 compares exactly.
	AmaxTolerance float64
	// ToolVersion goes into the diff report's tool section; empty means
	// the new report's tool version.
	ToolVersion string
}

// DefaultDiffOptions returns the thresholds `ptqgate report diff` uses.
func DefaultDiffOptions() DiffOptions {
	return DiffOptions{DequantRatio: DefaultDequantRatio, DequantFloor: DefaultDequantFloor, AmaxTolerance: DefaultAmaxTolerance}
}

// Diff compares a new report against a baseline and returns a report of
// kind "diff". Regressions are flagged in its Diff entries and each is
// also an error finding (rules RuleDiff*), so Summary.Errors > 0 exactly
// when the comparison must fail:
//   - a quantizer that had a valid amax lost it (null) or got an invalid
//     one (non-finite or ≤ 0), or became listed as uncalibrated;
//   - an expert whose gate_up or down hook calls went from > 0 to 0;
//   - an error finding (same rule, target, tensor and module) that the
//     baseline did not have;
//   - a relative dequantization error that grew past the thresholds.
//
// Improvements and neutral changes are listed with Regression false.
// Sections are compared only when both reports have them. Nil reports
// count as empty. The result is deterministic.
func Diff(baseline, current *Report, opt DiffOptions) *Report {
	if baseline == nil {
		baseline = &Report{}
	}
	if current == nil {
		current = &Report{}
	}
	if opt.DequantRatio <= 1 {
		opt.DequantRatio = DefaultDequantRatio
	}
	opt.DequantFloor = math.Max(opt.DequantFloor, 0)
	opt.AmaxTolerance = math.Max(opt.AmaxTolerance, 0)
	version := opt.ToolVersion
	if version == "" {
		version = current.Tool.Version
	}
	d := &differ{out: New(KindDiff, version), opt: opt, names: newExpertNamer(baseline, current)}
	if current.Model != nil {
		m := *current.Model
		d.out.Model = &m
	}
	if current.Recipe != nil {
		rc := *current.Recipe
		d.out.Recipe = &rc
	}
	d.model(baseline.Model, current.Model)
	d.recipe(baseline.Recipe, current.Recipe)
	if len(baseline.Quantizers) > 0 && len(current.Quantizers) > 0 {
		d.quantizers(baseline, current)
	}
	if len(baseline.Experts) > 0 && len(current.Experts) > 0 {
		d.experts(baseline.Experts, current.Experts)
	}
	d.findings(baseline.Findings, current.Findings)
	if len(baseline.DequantError) > 0 && len(current.DequantError) > 0 {
		d.dequant(baseline.DequantError, current.DequantError)
	}
	d.out.Diff = sortedDiff(d.out.Diff)
	d.out.SortFindings()
	d.out.Summarize()
	return d.out
}

type differ struct {
	out   *Report
	opt   DiffOptions
	names expertNamer
}

func (d *differ) add(what, name string, baseline, current any, change string) {
	d.out.Diff = append(d.out.Diff, DiffEntry{What: what, Name: name, Baseline: baseline, New: current,
		Regression: change == ChangeRegression, Change: change})
}

func (d *differ) regress(what, name string, baseline, current any, f Finding) {
	d.add(what, name, baseline, current, ChangeRegression)
	f.Severity = SeverityError
	if f.Target == "" {
		f.Target = TargetAny
	}
	f.Source = "ptqgate report diff"
	d.out.Findings = append(d.out.Findings, f)
}

func (d *differ) check(rule, description string) {
	n := 0
	for _, f := range d.out.Findings {
		if f.Rule == rule {
			n++
		}
	}
	d.out.AddCheck(rule, TargetAny, description, n)
}

func (d *differ) model(b, c *Model) {
	if b == nil || c == nil {
		return
	}
	for _, f := range []struct {
		name string
		b, c any
	}{
		{"architecture", b.Architecture, c.Architecture}, {"dtype", b.DType, c.DType},
		{"layers", b.Layers, c.Layers}, {"experts", b.Experts, c.Experts}, {"top_k", b.TopK, c.TopK},
	} {
		if f.b != f.c {
			d.add(WhatModel, f.name, f.b, f.c, ChangeChanged)
		}
	}
}

func (d *differ) recipe(b, c *Recipe) {
	switch {
	case b == nil && c == nil:
	case b == nil:
		d.add(WhatRecipe, "name", nil, c.Name, ChangeAdded)
	case c == nil:
		d.add(WhatRecipe, "name", b.Name, nil, ChangeRemoved)
	default:
		if b.Name != c.Name {
			d.add(WhatRecipe, "name", b.Name, c.Name, ChangeChanged)
		}
		if b.Algorithm != c.Algorithm {
			d.add(WhatRecipe, "algorithm", b.Algorithm, c.Algorithm, ChangeChanged)
		}
	}
}

// amaxValue is what a diff entry shows of an amax: its largest value, or
// nil when never calibrated.
func amaxValue(a *Amax) any {
	if a == nil || len(a.Values) == 0 {
		return nil
	}
	return Float(a.Max())
}

func (d *differ) amaxEqual(a, b *Amax) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	if len(a.Values) != len(b.Values) {
		return false
	}
	for i := range a.Values {
		x, y := float64(a.Values[i]), float64(b.Values[i])
		if x == y || (math.IsNaN(x) && math.IsNaN(y)) {
			continue
		}
		if math.Abs(x-y) > d.opt.AmaxTolerance*math.Max(math.Abs(x), math.Abs(y)) {
			return false
		}
	}
	return true
}

func (d *differ) quantizers(baseline, current *Report) {
	base := map[string]Quantizer{}
	for _, q := range baseline.Quantizers {
		base[q.Name] = q
	}
	seen := map[string]bool{}
	flagged := map[string]bool{}
	for _, c := range current.Quantizers {
		if seen[c.Name] {
			continue
		}
		seen[c.Name] = true
		b, ok := base[c.Name]
		if !ok {
			d.add(WhatQuantizer, c.Name, nil, c.Format, ChangeAdded)
			continue
		}
		if b.Enabled != c.Enabled {
			d.add(WhatQuantizerEnabled, c.Name, b.Enabled, c.Enabled, ChangeChanged)
		}
		if b.Format != c.Format {
			d.add(WhatQuantizerFormat, c.Name, b.Format, c.Format, ChangeChanged)
		}
		switch {
		case !c.Enabled:
			// A disabled quantizer has no amax by design.
		case b.Enabled && b.Amax.Valid() && c.Amax == nil:
			flagged[c.Name] = true
			d.regress(WhatQuantizerAmax, c.Name, amaxValue(b.Amax), nil, Finding{Rule: RuleDiffAmaxLost, Tensor: c.Name,
				Message: fmt.Sprintf("amax was %s in the baseline and is null now: the quantizer was never calibrated", fmtAmax(b.Amax))})
		case b.Enabled && b.Amax.Valid() && !c.Amax.Valid():
			flagged[c.Name] = true
			d.regress(WhatQuantizerAmax, c.Name, amaxValue(b.Amax), amaxValue(c.Amax), Finding{Rule: RuleDiffAmaxInvalid, Tensor: c.Name,
				Message: fmt.Sprintf("amax was %s in the baseline and is %s now (not finite and > 0)", fmtAmax(b.Amax), fmtAmax(c.Amax))})
		case !b.Amax.Valid() && c.Amax.Valid():
			d.add(WhatQuantizerAmax, c.Name, amaxValue(b.Amax), amaxValue(c.Amax), ChangeImprovement)
		case !d.amaxEqual(b.Amax, c.Amax):
			d.add(WhatQuantizerAmax, c.Name, amaxValue(b.Amax), amaxValue(c.Amax), ChangeChanged)
		}
		if b.Calls != c.Calls {
			d.add(WhatQuantizerCalls, c.Name, b.Calls, c.Calls, ChangeChanged)
		}
	}
	for _, b := range baseline.Quantizers {
		if _, ok := seen[b.Name]; !ok {
			seen[b.Name] = true
			d.add(WhatQuantizer, b.Name, b.Format, nil, ChangeRemoved)
		}
	}

	wasUncal := map[string]bool{}
	for _, n := range baseline.Uncalibrated {
		wasUncal[n] = true
	}
	isUncal := map[string]bool{}
	for _, n := range current.Uncalibrated {
		isUncal[n] = true
		if !wasUncal[n] && !flagged[n] {
			flagged[n] = true
			d.regress(WhatQuantizerUncalibrated, n, false, true, Finding{Rule: RuleDiffUncalibrated, Tensor: n,
				Message: "listed as uncalibrated; the baseline calibrated it"})
		}
	}
	for _, n := range baseline.Uncalibrated {
		if !isUncal[n] {
			isUncal[n] = true // once
			d.add(WhatQuantizerUncalibrated, n, true, false, ChangeImprovement)
		}
	}
	d.check(RuleDiffAmaxLost, "no quantizer loses its amax")
	d.check(RuleDiffAmaxInvalid, "no quantizer's amax becomes non-finite or ≤ 0")
	d.check(RuleDiffUncalibrated, "no quantizer becomes uncalibrated")
}

func (d *differ) experts(baseline, current []Expert) {
	type key [2]int
	base := map[key]Expert{}
	for _, e := range baseline {
		base[key{e.Layer, e.Expert}] = e
	}
	seen := map[key]bool{}
	for _, c := range current {
		k := key{c.Layer, c.Expert}
		if seen[k] {
			continue
		}
		seen[k] = true
		name := d.names.name(c.Layer, c.Expert)
		b, ok := base[k]
		if !ok {
			d.add(WhatExpert, name, nil, c.Tokens, ChangeAdded)
			continue
		}
		for _, m := range []struct {
			what, proj string
			b, c       int64
		}{{WhatExpertGateUpCalls, "gate_up", b.GateUpCalls, c.GateUpCalls}, {WhatExpertDownCalls, "down", b.DownCalls, c.DownCalls}} {
			switch {
			case m.b == m.c:
			case m.b > 0 && m.c == 0:
				d.regress(m.what, name, m.b, m.c, Finding{Rule: RuleDiffExpertCallsLost, Module: name,
					Message: fmt.Sprintf("%s hook calls dropped from %d to 0 (the expert received %d tokens, %d in the baseline)", m.proj, m.b, c.Tokens, b.Tokens)})
			case m.b == 0 && c.Tokens > 0:
				d.add(m.what, name, m.b, m.c, ChangeImprovement)
			default:
				d.add(m.what, name, m.b, m.c, ChangeChanged)
			}
		}
		if b.Tokens != c.Tokens {
			d.add(WhatExpertTokens, name, b.Tokens, c.Tokens, ChangeChanged)
		}
	}
	for _, b := range baseline {
		k := key{b.Layer, b.Expert}
		if !seen[k] {
			seen[k] = true
			d.add(WhatExpert, d.names.name(b.Layer, b.Expert), b.Tokens, nil, ChangeRemoved)
		}
	}
	d.check(RuleDiffExpertCallsLost, "no expert's hook calls drop from > 0 to 0")
}

func findingKey(f Finding) string {
	return strings.Join([]string{string(f.Severity), f.Rule, f.Target, f.Tensor, f.Module}, "\x00")
}

func findingName(f Finding) string {
	s := f.Rule + " [" + f.Target + "]"
	if w := f.where(); w != "" {
		s += " " + w
	}
	return s
}

func (d *differ) findings(baseline, current []Finding) {
	base := map[string]int{}
	for _, f := range baseline {
		base[findingKey(f)]++
	}
	cur := map[string]int{}
	for _, f := range sortedFindings(current) {
		k := findingKey(f)
		cur[k]++
		if cur[k] <= base[k] {
			continue
		}
		val := string(f.Severity) + ": " + f.Message
		switch f.Severity {
		case SeverityError:
			d.regress(WhatFinding, findingName(f), nil, val, Finding{Rule: RuleDiffNewError, Tensor: f.Tensor, Module: f.Module,
				Message:        fmt.Sprintf("new error %s [%s]: %s", f.Rule, f.Target, f.Message),
				EngineBehavior: f.EngineBehavior})
		default:
			d.add(WhatFinding, findingName(f), nil, val, ChangeAdded)
		}
	}
	left := map[string]int{}
	for _, f := range sortedFindings(baseline) {
		k := findingKey(f)
		left[k]++
		if left[k] <= cur[k] {
			continue
		}
		change := ChangeImprovement
		if f.Severity == SeverityInfo {
			change = ChangeRemoved
		}
		d.add(WhatFinding, findingName(f), string(f.Severity)+": "+f.Message, nil, change)
	}
	d.check(RuleDiffNewError, "no error finding that the baseline did not have")
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

func (d *differ) dequant(baseline, current []DequantError) {
	base := map[string]DequantError{}
	for _, e := range baseline {
		if _, ok := base[e.Module]; !ok {
			base[e.Module] = e
		}
	}
	seen := map[string]bool{}
	for _, c := range current {
		if seen[c.Module] {
			continue
		}
		seen[c.Module] = true
		b, ok := base[c.Module]
		if !ok {
			d.add(WhatDequantError, c.Module, nil, c.RelativeError, ChangeAdded)
			continue
		}
		bv, cv := float64(b.RelativeError), float64(c.RelativeError)
		switch {
		case bv == cv || (math.IsNaN(bv) && math.IsNaN(cv)):
		case finite(bv) && !finite(cv):
			d.regress(WhatDequantError, c.Module, b.RelativeError, c.RelativeError, Finding{Rule: RuleDiffDequantGrew, Module: c.Module,
				Message: fmt.Sprintf("relative dequantization error is %s now, %s in the baseline", fmtFloat(cv), fmtFloat(bv))})
		case finite(bv) && cv > bv*d.opt.DequantRatio && cv > d.opt.DequantFloor:
			d.regress(WhatDequantError, c.Module, b.RelativeError, c.RelativeError, Finding{Rule: RuleDiffDequantGrew, Module: c.Module,
				Message: fmt.Sprintf("relative dequantization error grew from %s to %s (%s×; threshold %s× and %s)", fmtFloat(bv), fmtFloat(cv),
					ratioString(cv, bv), fmtFloat(d.opt.DequantRatio), fmtFloat(d.opt.DequantFloor))})
		case !finite(bv) && finite(cv), bv > cv*d.opt.DequantRatio && bv > d.opt.DequantFloor:
			d.add(WhatDequantError, c.Module, b.RelativeError, c.RelativeError, ChangeImprovement)
		default:
			d.add(WhatDequantError, c.Module, b.RelativeError, c.RelativeError, ChangeChanged)
		}
	}
	for _, b := range baseline {
		if !seen[b.Module] {
			seen[b.Module] = true
			d.add(WhatDequantError, b.Module, b.RelativeError, nil, ChangeRemoved)
		}
	}
	d.check(RuleDiffDequantGrew, "no module's relative dequantization error grows past the threshold")
}

func ratioString(a, b float64) string {
	if b == 0 {
		return "+Inf"
	}
	return strconv.FormatFloat(a/b, 'f', 1, 64)
}

// expertNamer names experts the way the report does
// ("model.layers.3.mlp.experts.17"), from the prefixes found in either
// report; "layer 3 expert 17" when no name shows the prefix.
type expertNamer map[int]string

func newExpertNamer(rs ...*Report) expertNamer {
	n := expertNamer{}
	add := func(layer int, prefix string) {
		if _, ok := n[layer]; !ok && layer >= 0 {
			n[layer] = prefix
		}
	}
	for _, r := range rs {
		for _, e := range r.ExpertsWithoutTokens {
			if i := strings.LastIndexByte(e.Name, '.'); i > 0 && e.Name[i+1:] == strconv.Itoa(e.Expert) {
				add(e.Layer, e.Name[:i])
			}
		}
		for _, q := range r.Quantizers {
			if i := strings.Index(q.Name, ".mlp.experts."); i > 0 {
				add(LayerOf(q.Name), q.Name[:i+len(".mlp.experts")])
			}
		}
	}
	return n
}

func (n expertNamer) name(layer, expert int) string {
	if p, ok := n[layer]; ok {
		return p + "." + strconv.Itoa(expert)
	}
	return fmt.Sprintf("layer %d expert %d", layer, expert)
}
