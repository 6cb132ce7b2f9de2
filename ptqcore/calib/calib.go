// Package calib runs ModelOpt's max calibration over a model with full
// per-expert hook accounting (INTERFACES.md "Counting",
// specs/modelopt.md §2, §3): every quantizer input reaches one hook point
// (model.Observer), which counts the calls and accumulates amax; weight
// amax come from the weights of every expert, routed or not. Both expert
// execution modes (eager and grouped) give identical amax and counts; the
// fault injections of INTERFACES.md reproduce the toolkit bugs so the
// harness can be shown to catch them.
package calib

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/ptqgate/ptqgate/ptqcore/backend"
	"github.com/ptqgate/ptqgate/ptqcore/model"
	"github.com/ptqgate/ptqgate/ptqcore/quant"
	"github.com/ptqgate/ptqgate/reports"
)

// Fault names of --inject-fault that act on calibration.
const (
	// FaultHookBypass: grouped expert execution skips the expert quantizer
	// hooks (specs/modelopt.md §3.4).
	FaultHookBypass = "hook-bypass"
	// FaultPluralMatch: recipe matching without the singular-name
	// normalization, so "*weight_quantizer" misses "…_weight_quantizers.<e>".
	FaultPluralMatch = "plural-match"
	// FaultVLMLayers: layerwise discovery only looks for model.layers.
	FaultVLMLayers = "vlm-layers"
)

// Faults selects the injected calibration faults.
type Faults struct {
	HookBypass  bool
	PluralMatch bool
	VLMLayers   bool
}

// Names lists the enabled faults.
func (f Faults) Names() []string {
	var out []string
	for _, x := range []struct {
		on   bool
		name string
	}{{f.HookBypass, FaultHookBypass}, {f.PluralMatch, FaultPluralMatch}, {f.VLMLayers, FaultVLMLayers}} {
		if x.on {
			out = append(out, x.name)
		}
	}
	return out
}

// Finding rule IDs (stable: reports and suites key on them).
const (
	RuleUncalibrated        = "calib.uncalibrated"
	RuleInvalidAmax         = "calib.invalid-amax"
	RuleUnmatchedPattern    = "calib.unmatched-pattern"
	RuleExpertWithoutTokens = "calib.expert-without-tokens"
	RuleExpertHookMissed    = "calib.expert-hook-missed"
	RuleNoDecoderLayers     = "calib.no-decoder-layers"
	RuleInputWithoutWeight  = "calib.input-without-weight"
	RulePluralUnmatched     = "calib.plural-unmatched"
	// RuleInvalidInput reports a malformed input file (checkpoint, config,
	// recipe or calibration file) that stopped the run.
	RuleInvalidInput = "calib.invalid-input"
)

// DecoderLayerPaths are where layerwise calibration looks for the decoder
// layers (ModelOpt HEAD, #1806).
var DecoderLayerPaths = []string{"model.layers", "model.language_model.layers"}

// Options configures a calibration run.
type Options struct {
	// Experts is the expert execution mode (default grouped).
	Experts model.ExpertsMode
	// AllExperts adds the --calib-all-experts pass.
	AllExperts bool
	// AllowUncalibrated turns uncalibrated quantizers into warnings.
	AllowUncalibrated bool
	// Faults are the injected faults.
	Faults Faults
	// Progress, when set, is called at every milestone.
	Progress func(Event)
	// ToolVersion goes into the report.
	ToolVersion string
}

// Event is a progress milestone.
type Event struct {
	// Stage is "weights" (weight amax done), "batch" (a batch's forward
	// done) or "layer" (a layer calibrated, layerwise mode).
	Stage string
	// Index (1-based) of Total batches or layers.
	Index, Total int
	// Tokens processed so far (batch stage) or in all batches (layer stage).
	Tokens int
	// Elapsed since the run started.
	Elapsed time.Duration
}

// QuantizerResult is one quantizer after calibration.
type QuantizerResult struct {
	// Quantizer carries the name, module, role, projection, expert and the
	// configuration the recipe left it in.
	quant.Quantizer
	// Enabled is Config.Enable.
	Enabled bool
	// Amax holds the calibrated amax (one value per tensor, or per
	// channel/block in row-major order); nil when never calibrated or
	// disabled.
	Amax []float32
	// AmaxShape is the amax shape: [] per tensor, [rows] per row,
	// [cols] per column, [rows, blocks] per block.
	AmaxShape []int
	// Calls counts the hook calls in forward passes (INTERFACES.md).
	Calls int64
	// Constant is true when the amax is pinned by use_constant_amax (448)
	// or constant_amax instead of calibrated.
	Constant bool
}

// Calibrated reports whether an enabled quantizer has a usable amax: present,
// finite and > 0 everywhere.
func (q *QuantizerResult) Calibrated() bool {
	if !q.Enabled || len(q.Amax) == 0 {
		return false
	}
	for _, v := range q.Amax {
		if !(v > 0) || math.IsInf(float64(v), 0) {
			return false
		}
	}
	return true
}

// ExpertResult is the accounting of one routed expert.
type ExpertResult struct {
	// Layer and Expert index it; Module is the experts module
	// ("model.layers.1.mlp.experts") and Name "<module>.<e>".
	Layer, Expert int
	Module, Name  string
	// Tokens are the (token, expert) routing pairs the model's top-k sent it.
	Tokens int64
	// GateUpCalls and DownCalls count the batches in which its projection's
	// input reached the hook.
	GateUpCalls, DownCalls int64
	// AllExpertsRows counts the rows it saw in the --calib-all-experts pass
	// (nil when that pass did not run).
	AllExpertsRows *int64
	// GateUpInputAmax and DownInputAmax are the per-expert input amax
	// (max|x| over its own inputs); NaN when it saw no input or the shared
	// input quantizer is not calibrated.
	GateUpInputAmax, DownInputAmax float32
}

// Result is everything a calibration run produced; the exporter reads it.
type Result struct {
	Model   *model.Model
	Recipe  *quant.Recipe
	Applied *quant.Applied
	Options Options
	// Quantizers in the model's order (quant.Enumerate).
	Quantizers []QuantizerResult
	// Experts of every MoE layer, by layer then expert.
	Experts []ExpertResult
	// PerExpertInputAmax maps "<shared input quantizer>.<e>" to the
	// expert's own input amax (experts that saw input only).
	PerExpertInputAmax map[string]float32
	// Uncalibrated lists the enabled quantizers without a usable amax.
	Uncalibrated []string
	// ExpertsWithoutTokens lists the experts the routing never chose.
	ExpertsWithoutTokens []reports.ExpertRef
	// Report is the filled calibration report.
	Report *reports.Report
	// Batches and Tokens processed; Duration of the whole run;
	// ForwardDuration of the forward passes.
	Batches, Tokens           int
	Duration, ForwardDuration time.Duration

	byName map[string]int
}

// Quantizer returns the result of the named quantizer.
func (r *Result) Quantizer(name string) (*QuantizerResult, bool) {
	i, ok := r.byName[name]
	if !ok {
		return nil, false
	}
	return &r.Quantizers[i], true
}

// CheckError says calibration finished but failed its checks (exit 1):
// the Result and its report are complete and should still be written.
type CheckError struct {
	// Errors counts the error findings.
	Errors int
	// Rules lists the failed rules in report order; Modules[rule] the
	// quantizers, modules or patterns they name.
	Rules   []string
	Modules map[string][]string
	// First is the message of the first error finding.
	First string
}

func newCheckError(r *reports.Report) *CheckError {
	ce := &CheckError{Modules: map[string][]string{}}
	for _, f := range r.Findings {
		if f.Severity != reports.SeverityError {
			continue
		}
		ce.Errors++
		if ce.First == "" {
			ce.First = f.Message
		}
		if _, ok := ce.Modules[f.Rule]; !ok {
			ce.Rules = append(ce.Rules, f.Rule)
		}
		ce.Modules[f.Rule] = append(ce.Modules[f.Rule], f.Module)
	}
	return ce
}

// Error summarises the failures per rule, naming the first few modules,
// and quotes the first error.
func (e *CheckError) Error() string {
	parts := make([]string, 0, len(e.Rules))
	for _, rule := range e.Rules {
		mods := e.Modules[rule]
		shown := mods
		if len(shown) > 3 {
			shown = shown[:3]
		}
		s := fmt.Sprintf("%d %s (%s", len(mods), rule, strings.Join(shown, ", "))
		if len(mods) > len(shown) {
			s += ", …"
		}
		parts = append(parts, s+")")
	}
	return fmt.Sprintf("calibration failed with %d error(s): %s. First: %s", e.Errors, strings.Join(parts, "; "), e.First)
}

// ExitCode makes failed calibration checks exit 1.
func (e *CheckError) ExitCode() int { return 1 }

// Run calibrates m on be with recipe r over the batches. It returns the
// result and, when the run completed but a check failed (uncalibrated
// quantizers, an enabling pattern that matched nothing, hooks that missed
// routed experts), a *CheckError together with the complete result. Other
// errors (invalid token ids, an unsupported recipe, device failures)
// return no result.
func Run(m *model.Model, be backend.Backend, r *quant.Recipe, b *Batches, opt Options) (*Result, error) {
	start := time.Now()
	if err := b.Validate(m.VocabSize()); err != nil {
		return nil, err
	}
	qs := quant.Enumerate(m.Modules())
	applied, err := r.Apply(qs, quant.ApplyOptions{NoSingularNormalization: opt.Faults.PluralMatch})
	if err != nil {
		return nil, err
	}
	plural := pluralFindings(r, qs, applied)
	st, err := newState(m, be, applied, opt)
	if err != nil {
		return nil, err
	}
	if err := m.Prepare(be); err != nil {
		return nil, err
	}
	res := &Result{Model: m, Recipe: r, Applied: applied, Options: opt, Batches: len(b.Batches), Tokens: b.Tokens()}
	progress := func(ev Event) {
		if opt.Progress != nil {
			ev.Elapsed = time.Since(start)
			opt.Progress(ev)
		}
	}

	var aborted []reports.Finding
	if r.Algorithm.Layerwise {
		aborted = discoverLayers(m, opt.Faults)
	}
	var weightTime time.Duration
	if aborted == nil {
		t0 := time.Now()
		if err := st.calibrateWeights(); err != nil {
			return nil, err
		}
		weightTime = time.Since(t0)
		progress(Event{Stage: "weights", Index: 1, Total: 1})
		t0 = time.Now()
		pass := model.PassOptions{
			Experts:                  opt.Experts,
			Observer:                 st,
			Head:                     st.head(),
			AllExperts:               opt.AllExperts,
			BypassGroupedExpertHooks: opt.Faults.HookBypass,
		}
		if r.Algorithm.Layerwise {
			err = runLayerwise(m, be, b, pass, progress)
		} else {
			err = runFull(m, be, b, pass, progress)
		}
		if err != nil {
			return nil, err
		}
		res.ForwardDuration = time.Since(t0)
	}
	st.finish(res)
	res.Duration = time.Since(start)
	buildReport(res, st, be, append(aborted, plural...), aborted != nil, weightTime)
	if res.Report.Summary.Errors > 0 {
		return res, newCheckError(res.Report)
	}
	return res, nil
}

// runFull runs one forward per batch.
func runFull(m *model.Model, be backend.Backend, b *Batches, pass model.PassOptions, progress func(Event)) error {
	tokens := 0
	for i := range b.Batches {
		if _, err := m.Forward(be, b.Batch(i), pass); err != nil {
			return fmt.Errorf("calibration batch %d: %w", i, err)
		}
		tokens += b.Batch(i).Tokens()
		progress(Event{Stage: "batch", Index: i + 1, Total: len(b.Batches), Tokens: tokens})
	}
	return nil
}

// discoverLayers finds the decoder layers the way ModelOpt's layerwise
// calibration does: under one of DecoderLayerPaths (only model.layers
// under the vlm-layers fault). It returns the error finding when they are
// not found.
func discoverLayers(m *model.Model, f Faults) []reports.Finding {
	paths := DecoderLayerPaths
	if f.VLMLayers {
		paths = paths[:1]
	}
	for _, p := range paths {
		if p == m.LayersPath() {
			return nil
		}
	}
	return []reports.Finding{{
		Rule: RuleNoDecoderLayers, Severity: reports.SeverityError, Target: reports.TargetAny,
		Module:         m.LayersPath(),
		Message:        fmt.Sprintf("layerwise calibration found no decoder layers: searched %s; this checkpoint's layers are at %s", strings.Join(paths, ", "), m.LayersPath()),
		EngineBehavior: "ModelOpt raises ValueError(\"Could not find transformer layers in model\") and calibrates nothing",
		Source:         "specs/modelopt.md §2.4",
	}}
}

// runLayerwise calibrates one decoder layer at a time: the embeddings of
// every batch are captured (layer 0's inputs), then each layer runs over
// every batch's cached input, producing the next layer's inputs. Every
// batch passes each layer once, so calls count once per batch.
func runLayerwise(m *model.Model, be backend.Backend, b *Batches, pass model.PassOptions, progress func(Event)) error {
	passes := make([]*model.Pass, len(b.Batches))
	hidden := make([]backend.Tensor, len(b.Batches))
	defer func() {
		for _, h := range hidden {
			be.Free(h)
		}
	}()
	for i := range b.Batches {
		p, err := m.NewPass(be, b.Batch(i), pass)
		if err != nil {
			return fmt.Errorf("calibration batch %d: %w", i, err)
		}
		if hidden[i], err = p.Embed(); err != nil {
			return fmt.Errorf("calibration batch %d: %w", i, err)
		}
		passes[i] = p
	}
	for li, l := range m.Layers {
		for i, p := range passes {
			next, err := l.Forward(p, hidden[i])
			if err != nil {
				return fmt.Errorf("calibration batch %d: %w", i, err)
			}
			be.Free(hidden[i])
			hidden[i] = next
		}
		progress(Event{Stage: "layer", Index: li + 1, Total: len(m.Layers), Tokens: b.Tokens()})
	}
	for i, p := range passes {
		if err := p.Head(hidden[i]); err != nil {
			return fmt.Errorf("calibration batch %d: %w", i, err)
		}
	}
	return nil
}

// errUnknownModule is returned when the forward observes a module the
// quantizer set does not know (a model bug).
var errUnknownModule = errors.New("module has no quantizers")
