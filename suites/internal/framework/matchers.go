package framework

import (
	"fmt"
	"slices"
	"strings"

	"github.com/onsi/gomega/types"

	"github.com/ptqgate/ptqgate/reports"
)

// ExitWith succeeds when a *Result exited with code. Its failure message
// shows the command line and the tails of stdout and stderr, which is what
// one needs to see when a command exits unexpectedly.
func ExitWith(code int) types.GomegaMatcher {
	return &exitMatcher{code: code}
}

type exitMatcher struct{ code int }

func (m *exitMatcher) Match(actual any) (bool, error) {
	r, ok := actual.(*Result)
	if !ok || r == nil {
		return false, fmt.Errorf("ExitWith expects a non-nil *framework.Result, got %T", actual)
	}
	return r.ExitCode == m.code, nil
}

func (m *exitMatcher) FailureMessage(actual any) string {
	return fmt.Sprintf("expected exit code %d from\n%s", m.code, actual.(*Result))
}

func (m *exitMatcher) NegatedFailureMessage(actual any) string {
	return fmt.Sprintf("expected an exit code other than %d from\n%s", m.code, actual.(*Result))
}

// FindingQuery selects findings of a report. Empty fields match anything;
// Module and Tensor match as substrings.
type FindingQuery struct {
	Rule     string
	Target   string
	Severity reports.Severity
	Module   string
	Tensor   string
}

func (q FindingQuery) String() string {
	var parts []string
	for _, kv := range [][2]string{{"rule", q.Rule}, {"target", q.Target}, {"severity", string(q.Severity)}, {"module", q.Module}, {"tensor", q.Tensor}} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+" "+kv[1])
		}
	}
	if len(parts) == 0 {
		return "any finding"
	}
	return strings.Join(parts, ", ")
}

// Matches reports whether f is selected.
func (q FindingQuery) Matches(f reports.Finding) bool {
	return (q.Rule == "" || f.Rule == q.Rule) &&
		(q.Target == "" || f.Target == q.Target) &&
		(q.Severity == "" || f.Severity == q.Severity) &&
		strings.Contains(f.Module, q.Module) &&
		strings.Contains(f.Tensor, q.Tensor)
}

// Select returns the findings of r that q selects.
func (q FindingQuery) Select(r *reports.Report) []reports.Finding {
	var out []reports.Finding
	for _, f := range r.Findings {
		if q.Matches(f) {
			out = append(out, f)
		}
	}
	return out
}

// HaveFinding succeeds when a *reports.Report holds at least one finding
// of rule for target ("" matches any) with severity ("" matches any).
func HaveFinding(rule, target string, severity reports.Severity) types.GomegaMatcher {
	return HaveFindingMatching(FindingQuery{Rule: rule, Target: target, Severity: severity})
}

// HaveFindingMatching succeeds when a *reports.Report holds a finding q
// selects.
func HaveFindingMatching(q FindingQuery) types.GomegaMatcher {
	return &findingMatcher{q: q}
}

type findingMatcher struct{ q FindingQuery }

func (m *findingMatcher) Match(actual any) (bool, error) {
	r, ok := actual.(*reports.Report)
	if !ok || r == nil {
		return false, fmt.Errorf("HaveFinding expects a non-nil *reports.Report, got %T", actual)
	}
	return len(m.q.Select(r)) > 0, nil
}

func (m *findingMatcher) FailureMessage(actual any) string {
	return fmt.Sprintf("expected a finding with %s; the %s report has:\n%s", m.q, actual.(*reports.Report).Kind, DescribeFindings(actual.(*reports.Report), 30))
}

func (m *findingMatcher) NegatedFailureMessage(actual any) string {
	return fmt.Sprintf("expected no finding with %s; found:\n%s", m.q, describe(m.q.Select(actual.(*reports.Report)), 30))
}

// BeClean succeeds when a *reports.Report has no error finding (warnings
// and infos allowed: INTERFACES.md's definition of clean). The failure
// message lists the errors.
func BeClean() types.GomegaMatcher { return &cleanMatcher{} }

type cleanMatcher struct{}

func (m *cleanMatcher) Match(actual any) (bool, error) {
	r, ok := actual.(*reports.Report)
	if !ok || r == nil {
		return false, fmt.Errorf("BeClean expects a non-nil *reports.Report, got %T", actual)
	}
	return errorCount(r) == 0, nil
}

func (m *cleanMatcher) FailureMessage(actual any) string {
	r := actual.(*reports.Report)
	return fmt.Sprintf("expected a clean %s report, got %d error finding(s):\n%s", r.Kind, errorCount(r),
		describe(FindingQuery{Severity: reports.SeverityError}.Select(r), 30))
}

func (m *cleanMatcher) NegatedFailureMessage(actual any) string {
	return fmt.Sprintf("expected the %s report to have an error finding; it has none:\n%s", actual.(*reports.Report).Kind, DescribeFindings(actual.(*reports.Report), 30))
}

func errorCount(r *reports.Report) int {
	n := 0
	for _, f := range r.Findings {
		if f.Severity == reports.SeverityError {
			n++
		}
	}
	return n
}

// DescribeFindings lists up to max findings of r, one line each.
func DescribeFindings(r *reports.Report, max int) string {
	if len(r.Findings) == 0 {
		return "    (no findings)"
	}
	return describe(r.Findings, max)
}

func describe(fs []reports.Finding, max int) string {
	if len(fs) == 0 {
		return "    (none)"
	}
	var b strings.Builder
	for i, f := range fs {
		if i == max {
			fmt.Fprintf(&b, "    … %d more\n", len(fs)-max)
			break
		}
		subject := f.Tensor
		if subject == "" {
			subject = f.Module
		}
		fmt.Fprintf(&b, "    %-7s %s [%s] %s: %s\n", f.Severity, f.Rule, f.Target, subject, oneLine(f.Message, 160))
	}
	return strings.TrimRight(b.String(), "\n")
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// Rules returns the distinct rules of r's findings of severity sev ("" =
// all), sorted.
func Rules(r *reports.Report, sev reports.Severity) []string {
	var out []string
	for _, f := range r.Findings {
		if (sev == "" || f.Severity == sev) && !slices.Contains(out, f.Rule) {
			out = append(out, f.Rule)
		}
	}
	slices.Sort(out)
	return out
}

// Targets returns the distinct targets of the findings q selects, sorted.
func Targets(r *reports.Report, q FindingQuery) []string {
	var out []string
	for _, f := range q.Select(r) {
		if !slices.Contains(out, f.Target) {
			out = append(out, f.Target)
		}
	}
	slices.Sort(out)
	return out
}
