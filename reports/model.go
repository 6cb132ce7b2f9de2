// Package reports holds ptqgate's one report model (schema_version 1) and
// its renderers. Every command (inspect, quantize, verify, report diff)
// produces a *Report; the JSON encoding is the stable external contract of
// INTERFACES.md, so fields are only ever added, never renamed.
package reports

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
)

// SchemaVersion is the version of the JSON report model.
const SchemaVersion = 1

// Kind says which command produced a report.
type Kind string

// Report kinds.
const (
	KindInspect     Kind = "inspect"
	KindCalibration Kind = "calibration"
	KindExport      Kind = "export"
	KindVerify      Kind = "verify"
	KindDiff        Kind = "diff"
)

// Severity of a finding.
type Severity string

// Severities, as INTERFACES.md defines them.
const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
	SeverityInfo    Severity = "info"
)

// TargetAny names a finding that does not depend on the serving engine.
const TargetAny = "any"

// Report is the single report model shared by every command.
//
// Slices and maps encode as [] and {} when empty, so consumers can rely on
// every key being present; Model and Recipe encode as null when the command
// has none. Run holds everything volatile and is omitted from the copy
// written inside an export (see ForExport).
type Report struct {
	SchemaVersion        int              `json:"schema_version"`
	Kind                 Kind             `json:"kind"`
	Tool                 Tool             `json:"tool"`
	Model                *Model           `json:"model"`
	Recipe               *Recipe          `json:"recipe"`
	Tensors              []Tensor         `json:"tensors"`
	Quantizers           []Quantizer      `json:"quantizers"`
	Experts              []Expert         `json:"experts"`
	PerExpertInputAmax   map[string]Float `json:"per_expert_input_amax"`
	Uncalibrated         []string         `json:"uncalibrated"`
	ExpertsWithoutTokens []ExpertRef      `json:"experts_without_tokens"`
	Findings             []Finding        `json:"findings"`
	DequantError         []DequantError   `json:"dequant_error"`
	Diff                 []DiffEntry      `json:"diff"`
	// Checks lists every (rule, target) pair that was evaluated, including
	// those that found nothing, so JUnit can show passing checks. It is
	// omitted when the producer did not record its checks; renderers then
	// derive the checks from Findings.
	Checks  []Check `json:"checks,omitempty"`
	Summary Summary `json:"summary"`
	Run     *Run    `json:"run,omitempty"`
}

// Tool names the program that wrote the report.
type Tool struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Model describes the checkpoint a report is about.
type Model struct {
	Path         string `json:"path"`
	Architecture string `json:"architecture"`
	DType        string `json:"dtype"`
	Layers       int    `json:"layers"`
	Experts      int    `json:"experts"`
	TopK         int    `json:"top_k"`
}

// Recipe describes the quantization recipe of a calibration or export.
type Recipe struct {
	Name      string `json:"name"`
	Source    string `json:"source"`
	Algorithm string `json:"algorithm"`
	// UnmatchedPatterns lists the enabling recipe patterns that matched no
	// quantizer (recipe coverage errors). Disabling patterns that matched
	// nothing are only info findings.
	UnmatchedPatterns []string `json:"unmatched_patterns"`
	// Unconfigured lists quantizers that no recipe entry touched.
	Unconfigured []string `json:"unconfigured"`
}

// Tensor is one tensor of a checkpoint as inspect reports it. Min, Max, NaN
// and Inf are nil when the tensor was not decoded (non-float dtype or too
// large).
type Tensor struct {
	Name  string  `json:"name"`
	DType string  `json:"dtype"`
	Shape []int64 `json:"shape"`
	Bytes int64   `json:"bytes"`
	File  string  `json:"file"`
	Min   *Float  `json:"min"`
	Max   *Float  `json:"max"`
	NaN   *int64  `json:"nan"`
	Inf   *int64  `json:"inf"`
}

// Quantizer is one quantizer with its configuration and calibration result.
type Quantizer struct {
	Name    string `json:"name"`
	Enabled bool   `json:"enabled"`
	// Format is "fp8", "nvfp4", ... or "none" when disabled.
	Format string `json:"format"`
	// Amax is nil (JSON null) when the quantizer was never calibrated.
	Amax      *Amax `json:"amax"`
	Calls     int64 `json:"calls"`
	Axis      *int  `json:"axis"`
	BlockSize *int  `json:"block_size"`
}

// Expert is the calibration accounting of one routed expert.
type Expert struct {
	Layer       int   `json:"layer"`
	Expert      int   `json:"expert"`
	Tokens      int64 `json:"tokens"`
	GateUpCalls int64 `json:"gate_up_calls"`
	DownCalls   int64 `json:"down_calls"`
	// AllExpertsRows is the number of rows the expert saw in the
	// --calib-all-experts pass; nil when that pass did not run.
	AllExpertsRows *int64 `json:"all_experts_rows,omitempty"`
}

// ExpertRef names an expert, e.g. one that received no tokens.
type ExpertRef struct {
	Layer  int    `json:"layer"`
	Expert int    `json:"expert"`
	Name   string `json:"name"`
}

// Finding is one check result. Target is an exact engine token such as
// "vllm@main" or TargetAny.
type Finding struct {
	Rule           string   `json:"rule"`
	Severity       Severity `json:"severity"`
	Target         string   `json:"target"`
	Tensor         string   `json:"tensor"`
	Module         string   `json:"module"`
	Message        string   `json:"message"`
	EngineBehavior string   `json:"engine_behavior"`
	Source         string   `json:"source"`
}

// DequantError is the dequantization error of one module against a
// reference checkpoint.
type DequantError struct {
	Module        string `json:"module"`
	RelativeError Float  `json:"relative_error"`
	MaxAbsError   Float  `json:"max_abs_error"`
}

// DiffEntry is one difference between a baseline report and a new one.
type DiffEntry struct {
	What       string `json:"what"`
	Name       string `json:"name"`
	Baseline   any    `json:"baseline"`
	New        any    `json:"new"`
	Regression bool   `json:"regression"`
	// Change classifies the entry: one of the Change constants
	// ("regression", "improvement", "changed", "added", "removed").
	Change string `json:"change,omitempty"`
}

// Check is one evaluated (rule, target) pair of a verification, whether
// or not it produced findings.
type Check struct {
	Rule   string `json:"rule"`
	Target string `json:"target"`
	// Description says in a few words what the rule checks.
	Description string `json:"description,omitempty"`
	// Findings is the number of findings the check produced (0: passed).
	Findings int `json:"findings"`
}

// Summary counts findings by severity.
type Summary struct {
	Errors   int `json:"errors"`
	Warnings int `json:"warnings"`
	Infos    int `json:"infos"`
}

// Run holds the volatile facts of one run: never part of an export.
type Run struct {
	StartedAt       string            `json:"started_at,omitempty"`
	DurationSeconds float64           `json:"duration_seconds"`
	Host            string            `json:"host,omitempty"`
	Command         []string          `json:"command,omitempty"`
	Paths           map[string]string `json:"paths,omitempty"`
	Device          string            `json:"device,omitempty"`
	// Extra holds command-specific measurements (throughput, timings).
	Extra map[string]any `json:"extra,omitempty"`
}

// New returns an empty report of the given kind for the named tool version.
func New(kind Kind, toolVersion string) *Report {
	return &Report{
		SchemaVersion: SchemaVersion,
		Kind:          kind,
		Tool:          Tool{Name: "ptqgate", Version: toolVersion},
	}
}

// AddFinding appends a finding and keeps Summary up to date.
func (r *Report) AddFinding(f Finding) {
	r.Findings = append(r.Findings, f)
	r.countFinding(f, 1)
}

func (r *Report) countFinding(f Finding, n int) {
	switch f.Severity {
	case SeverityError:
		r.Summary.Errors += n
	case SeverityWarning:
		r.Summary.Warnings += n
	default:
		r.Summary.Infos += n
	}
}

// AddCheck records that the rule was evaluated for target and produced
// the given number of findings. Recording the same (rule, target) twice
// adds the counts, so a verifier can call it once per checked tensor.
func (r *Report) AddCheck(rule, target, description string, findings int) {
	for i := range r.Checks {
		c := &r.Checks[i]
		if c.Rule == rule && c.Target == target {
			c.Findings += findings
			if c.Description == "" {
				c.Description = description
			}
			return
		}
	}
	r.Checks = append(r.Checks, Check{Rule: rule, Target: target, Description: description, Findings: findings})
}

// Summarize recomputes Summary from Findings.
func (r *Report) Summarize() {
	r.Summary = Summary{}
	for _, f := range r.Findings {
		r.countFinding(f, 1)
	}
}

// Clean reports whether the report has no error findings.
func (r *Report) Clean() bool {
	for _, f := range r.Findings {
		if f.Severity == SeverityError {
			return false
		}
	}
	return true
}

// SortFindings orders findings by severity (errors first), then rule,
// target, tensor and module, so reports are deterministic.
func (r *Report) SortFindings() {
	rank := map[Severity]int{SeverityError: 0, SeverityWarning: 1, SeverityInfo: 2}
	sort.SliceStable(r.Findings, func(i, j int) bool {
		a, b := r.Findings[i], r.Findings[j]
		if rank[a.Severity] != rank[b.Severity] {
			return rank[a.Severity] < rank[b.Severity]
		}
		if a.Rule != b.Rule {
			return a.Rule < b.Rule
		}
		if a.Target != b.Target {
			return a.Target < b.Target
		}
		if a.Tensor != b.Tensor {
			return a.Tensor < b.Tensor
		}
		return a.Module < b.Module
	})
}

// ForExport returns a copy without the volatile Run section, for the
// ptqgate_report.json written inside an export.
func (r *Report) ForExport() *Report {
	c := *r
	c.Run = nil
	return &c
}

// MarshalJSON encodes the report with every collection present ([] or {}).
func (r Report) MarshalJSON() ([]byte, error) {
	type plain Report
	p := plain(r)
	if p.Tensors == nil {
		p.Tensors = []Tensor{}
	}
	for i := range p.Tensors {
		if p.Tensors[i].Shape == nil {
			p.Tensors[i].Shape = []int64{}
		}
	}
	if p.Quantizers == nil {
		p.Quantizers = []Quantizer{}
	}
	if p.Experts == nil {
		p.Experts = []Expert{}
	}
	if p.PerExpertInputAmax == nil {
		p.PerExpertInputAmax = map[string]Float{}
	}
	if p.Uncalibrated == nil {
		p.Uncalibrated = []string{}
	}
	if p.ExpertsWithoutTokens == nil {
		p.ExpertsWithoutTokens = []ExpertRef{}
	}
	if p.Findings == nil {
		p.Findings = []Finding{}
	}
	if p.DequantError == nil {
		p.DequantError = []DequantError{}
	}
	if p.Diff == nil {
		p.Diff = []DiffEntry{}
	}
	if p.Recipe != nil {
		rc := *p.Recipe
		if rc.UnmatchedPatterns == nil {
			rc.UnmatchedPatterns = []string{}
		}
		if rc.Unconfigured == nil {
			rc.Unconfigured = []string{}
		}
		p.Recipe = &rc
	}
	return json.Marshal(p)
}

// WriteJSON writes the report as indented JSON followed by a newline.
func (r *Report) WriteJSON(w io.Writer) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}

// WriteFile writes the report as JSON to path.
func (r *Report) WriteFile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := r.WriteJSON(f); err != nil {
		f.Close()
		return fmt.Errorf("write report %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write report %s: %w", path, err)
	}
	return nil
}

// ReadFile reads a JSON report written by ptqgate. A file that is not a
// report, or that has another schema_version, is an error naming the file.
func ReadFile(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read report: %w", err)
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, &InvalidReportError{Path: path, Reason: err.Error()}
	}
	if r.SchemaVersion != SchemaVersion {
		return nil, &InvalidReportError{Path: path, Reason: fmt.Sprintf("schema_version %d, want %d", r.SchemaVersion, SchemaVersion)}
	}
	if r.Tool.Name != "ptqgate" {
		return nil, &InvalidReportError{Path: path, Reason: fmt.Sprintf("tool.name %q, want \"ptqgate\"", r.Tool.Name)}
	}
	return &r, nil
}

// InvalidReportError says a file is not a readable ptqgate report.
type InvalidReportError struct {
	Path   string
	Reason string
}

func (e *InvalidReportError) Error() string {
	return fmt.Sprintf("%s: not a ptqgate report: %s", e.Path, e.Reason)
}

// ExitCode makes an invalid report a malformed-input failure (exit 1).
func (e *InvalidReportError) ExitCode() int { return 1 }
