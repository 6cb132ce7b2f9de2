// Package verifier checks a quantized checkpoint directory statically
// against what the vLLM and SGLang loaders expect, per engine version
// (package contracts holds those expectations as data). It reads headers
// and scale tensors only, never the full weights (except with a reference
// checkpoint), and turns every problem into a finding with a stable rule
// ID, a severity, the target it concerns, what the engine does with it and
// the spec section it comes from.
//
// The verifier is independent of ptqgate's exporter: it shares only the
// safetensors container, the numeric codecs and the report model.
package verifier

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ptqgate/ptqgate/reports"
	"github.com/ptqgate/ptqgate/verifier/contracts"
)

// Options control one verification.
type Options struct {
	// Targets are the engine versions to verify against; empty means the
	// default targets (vllm@main and sglang@main).
	Targets []contracts.Target
	// Explicit says the targets were named by the user (--target): a
	// target that cannot load the quant_algo at all is then an error
	// rather than an info.
	Explicit bool
	// TP is the tensor-parallel size to check divisibility for (0 or 1:
	// no split; the unsplit constraints are still checked).
	TP int
	// Reference is an unquantized checkpoint directory to compare the
	// dequantized weights against ("" = none).
	Reference string
	// SkipBlockScales skips the scan of NVFP4 E4M3 block scales (the one
	// check whose cost grows with the weight size); benchmarks use it to
	// time the rest separately.
	SkipBlockScales bool
	// ToolVersion goes into the report's tool section.
	ToolVersion string
}

// UnsupportedError says the checkpoint is a well-formed request ptqgate
// does not support (a quantization method or algorithm it has no contract
// tables for). It is exit 2.
type UnsupportedError struct{ Msg string }

// Error returns the message.
func (e *UnsupportedError) Error() string { return e.Msg }

// ExitCode makes an unsupported checkpoint format a usage-class error.
func (e *UnsupportedError) ExitCode() int { return 2 }

// target is one target of a run with what it resolved.
type target struct {
	contracts.Target
	cfg  *engineConfig
	excl *contracts.Exclusions
	// quant caches quantizedByTarget per engine layer.
	quant map[*engGroup]bool
}

// run is the state of one verification.
type run struct {
	opt     Options
	rep     *reports.Report
	ck      *checkpoint
	cfgs    *configs
	geo     *geometry
	mods    *moduleIndex
	groups  []*engGroup
	targets []*target // targets still evaluated (not skipped)
	// checks counts findings per evaluated (rule, target).
	checks map[[2]string]int
}

// Verify checks the checkpoint in dir and returns the report (kind
// "verify"). Problems with the checkpoint are findings in the report
// (Report.Clean says whether there is none of severity error). The error
// is non-nil only when the report could not be produced: dir or the
// reference folder does not exist (wrapping fs.ErrNotExist, exit 2) or the
// checkpoint is in a quantization format ptqgate has no contracts for
// (*UnsupportedError, exit 2).
func Verify(dir string, opt Options) (rep *reports.Report, err error) {
	started := time.Now()
	v := &run{opt: opt, rep: reports.New(reports.KindVerify, opt.ToolVersion), checks: map[[2]string]int{}}
	ts := opt.Targets
	if len(ts) == 0 {
		ts = contracts.DefaultTargets()
		v.opt.Explicit = false
	}
	for _, t := range ts {
		v.targets = append(v.targets, &target{Target: t})
	}
	ck, err := v.openCheckpoint(dir)
	if err != nil {
		return nil, err
	}
	defer ck.close()
	v.ck = ck
	v.rep.Run = &reports.Run{StartedAt: started.UTC().Format(time.RFC3339), Paths: map[string]string{"checkpoint": dir}}
	if err := v.verify(dir); err != nil {
		return nil, err
	}
	v.finish()
	v.rep.Run.DurationSeconds = time.Since(started).Seconds()
	return v.rep, nil
}

// verify runs the checks in order; each stage may stop the rest when what
// it found makes them meaningless.
func (v *run) verify(dir string) error {
	cfgs, ok := v.loadConfigs(dir)
	v.cfgs = cfgs
	if !ok {
		return nil
	}
	v.geo = v.newGeometry()
	v.rep.Model = v.geo.reportModel(dir)
	v.mods = indexModules(v.ck, v.geo)
	if err := v.resolveTargets(); err != nil {
		return err
	}
	if v.quantSourceMissing() {
		return nil
	}
	v.readScales()
	v.checkNames()
	v.checkCensus()
	v.checkExclusions()
	v.checkLayout()
	v.checkValues()
	v.checkKV()
	v.checkTP()
	v.checkReport(dir)
	if v.opt.Reference != "" {
		if err := v.checkReference(v.opt.Reference); err != nil {
			return err
		}
	}
	return nil
}

// finish records the evaluated checks and orders the report.
func (v *run) finish() {
	keys := make([][2]string, 0, len(v.checks))
	for k := range v.checks {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i][0] != keys[j][0] {
			return keys[i][0] < keys[j][0]
		}
		return keys[i][1] < keys[j][1]
	})
	for _, k := range keys {
		r, _ := contracts.LookupRule(k[0])
		v.rep.AddCheck(k[0], k[1], r.Title, v.checks[k])
	}
	v.rep.SortFindings()
	v.rep.Summarize()
}

// evaluated records that rule ran for target (token or "any").
func (v *run) evaluated(rule, tok string) {
	k := [2]string{rule, tok}
	if _, ok := v.checks[k]; !ok {
		v.checks[k] = 0
	}
}

// evaluatedAll records that rule ran for every active target.
func (v *run) evaluatedAll(rule string) {
	for _, t := range v.targets {
		v.evaluated(rule, t.Token())
	}
}

// ruleSource returns the rule's sources joined.
func ruleSource(rule string) string {
	r, ok := contracts.LookupRule(rule)
	if !ok {
		return ""
	}
	return strings.Join(r.Sources, "; ")
}

// add appends a finding. source "" means the rule's sources.
func (v *run) add(rule string, sev reports.Severity, tok, tensor, module, msg, behavior, source string) {
	if source == "" {
		source = ruleSource(rule)
	}
	v.rep.AddFinding(reports.Finding{Rule: rule, Severity: sev, Target: tok, Tensor: tensor, Module: module,
		Message: msg, EngineBehavior: behavior, Source: source})
	v.checks[[2]string{rule, tok}]++
}

// addAny appends a target-independent finding.
func (v *run) addAny(rule string, sev reports.Severity, tensor, module, msg, behavior string) {
	v.add(rule, sev, reports.TargetAny, tensor, module, msg, behavior, "")
}

// addFact appends a per-target finding whose severity and behaviour come
// from a contract fact. sev overrides the fact's severity when non-empty.
func (v *run) addFact(f contracts.Fact, t *target, sev reports.Severity, tensor, module, msg string) {
	if sev == "" {
		sev = f.Severity
	}
	v.add(f.Rule, sev, t.Token(), tensor, module, msg, f.Behavior, f.Source)
}

// lookup is contracts.Lookup for a run target and the checkpoint's family.
func (v *run) lookup(rule, kase string, t *target) (contracts.Fact, bool) {
	f, ok := contracts.Lookup(rule, kase, t.Target, v.geo.family)
	if !ok || f.Severity == "" {
		return contracts.Fact{}, false
	}
	return f, true
}

// errUnsupported builds the exit-2 error for an unsupported format.
func errUnsupported(format string, args ...any) error {
	return &UnsupportedError{Msg: fmt.Sprintf(format, args...)}
}

// IsUnsupported reports whether err is an *UnsupportedError.
func IsUnsupported(err error) bool {
	var u *UnsupportedError
	return errors.As(err, &u)
}
