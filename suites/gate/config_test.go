package gate_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/onsi/ginkgo/v2/types"

	"github.com/ptqgate/ptqgate/internal/buildinfo"
	"github.com/ptqgate/ptqgate/reports"
	"github.com/ptqgate/ptqgate/verifier"
	"github.com/ptqgate/ptqgate/verifier/contracts"
)

// Environment variables of the gate (INTERFACES.md "Gate suite environment").
const (
	EnvCheckpoint = "PTQGATE_CHECKPOINT"
	EnvTargets    = "PTQGATE_TARGETS"
	EnvTP         = "PTQGATE_TP"
	EnvReference  = "PTQGATE_REFERENCE"
	EnvReportDir  = "PTQGATE_REPORT_DIR"
)

// Exit codes of the gate binary, as every ptqgate command's.
const (
	exitFailed = 1
	exitUsage  = 2
)

const gatePassedOrSkipped = types.SpecStatePassed | types.SpecStateSkipped

// Gate is the gate's configuration and, when a checkpoint is given, the
// verification report every spec reads.
type Gate struct {
	Checkpoint string
	Targets    []contracts.Target
	Explicit   bool
	TP         int
	Reference  string
	ReportDir  string
	// Report is the verification of Checkpoint (nil without one).
	Report *reports.Report
}

// ReportPath returns a file's path in the report folder.
func (g *Gate) ReportPath(name string) string { return filepath.Join(g.ReportDir, name) }

// TargetTokens returns the gated targets' tokens.
func (g *Gate) TargetTokens() []string {
	out := make([]string, len(g.Targets))
	for i, t := range g.Targets {
		out[i] = t.Token()
	}
	return out
}

// Load reads the environment, verifies the checkpoint and publishes the
// ptqgate reports. A configuration that cannot be used is printed and
// returned as exit code 2 (1 when the reports cannot be written).
func Load(getenv func(string) string) (*Gate, int) {
	g, err := configure(getenv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ptqgate gate: %v\n", err)
		return &Gate{}, exitUsage
	}
	if g.Checkpoint == "" {
		fmt.Fprintf(os.Stderr, "ptqgate gate: %s is not set; every gate spec is skipped\n", EnvCheckpoint)
		return g, 0
	}
	g.Report, err = verifier.Verify(g.Checkpoint, verifier.Options{
		Targets: g.Targets, Explicit: g.Explicit, TP: g.TP, Reference: g.Reference, ToolVersion: buildinfo.Version,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "ptqgate gate: verify %s: %v\n", g.Checkpoint, err)
		if errors.Is(err, fs.ErrNotExist) || verifier.IsUnsupported(err) {
			return &Gate{}, exitUsage
		}
		return &Gate{}, exitFailed
	}
	if err := g.publish(); err != nil {
		fmt.Fprintf(os.Stderr, "ptqgate gate: %v\n", err)
		return &Gate{}, exitFailed
	}
	return g, 0
}

// configure validates the environment.
func configure(getenv func(string) string) (*Gate, error) {
	g := &Gate{
		Checkpoint: strings.TrimSpace(getenv(EnvCheckpoint)),
		Reference:  strings.TrimSpace(getenv(EnvReference)),
		ReportDir:  strings.TrimSpace(getenv(EnvReportDir)),
		Targets:    contracts.DefaultTargets(),
	}
	for _, p := range []struct{ env, path string }{{EnvCheckpoint, g.Checkpoint}, {EnvReference, g.Reference}} {
		if p.path == "" {
			continue
		}
		st, err := os.Stat(p.path)
		if err != nil {
			return nil, fmt.Errorf("%s=%s: %w", p.env, p.path, err)
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("%s=%s is not a checkpoint folder", p.env, p.path)
		}
	}
	if raw := strings.TrimSpace(getenv(EnvTargets)); raw != "" {
		var tokens []string
		for _, t := range strings.Split(raw, ",") {
			if t = strings.TrimSpace(t); t != "" {
				tokens = append(tokens, t)
			}
		}
		ts, err := contracts.ParseTargets(tokens)
		if err != nil {
			return nil, fmt.Errorf("%s=%s: %w", EnvTargets, raw, err)
		}
		if len(ts) == 0 {
			return nil, fmt.Errorf("%s=%q names no target; known targets: %s", EnvTargets, raw, strings.Join(contracts.KnownTokens(), ", "))
		}
		g.Targets, g.Explicit = ts, true
	}
	if raw := strings.TrimSpace(getenv(EnvTP)); raw != "" {
		tp, err := strconv.Atoi(raw)
		if err != nil || tp < 1 {
			return nil, fmt.Errorf("%s=%s: want a tensor-parallel size ≥ 1", EnvTP, raw)
		}
		g.TP = tp
	}
	if g.ReportDir != "" {
		if err := os.MkdirAll(g.ReportDir, 0o755); err != nil {
			return nil, fmt.Errorf("%s: %w", EnvReportDir, err)
		}
	}
	return g, nil
}

// publish writes ptqgate's own reports of the verification into the report
// folder: verify.json (the report model), report.html and report.md.
func (g *Gate) publish() error {
	if g.ReportDir == "" {
		return nil
	}
	if g.Report.Run != nil {
		g.Report.Run.Command = []string{"ptqgate", "gate", g.Checkpoint}
	}
	if err := g.Report.WriteFile(g.ReportPath("verify.json")); err != nil {
		return err
	}
	for _, r := range []struct {
		name   string
		render func(*os.File, *reports.Report) error
	}{
		{"report.html", func(f *os.File, r *reports.Report) error { return reports.RenderHTML(f, r) }},
		{"report.md", func(f *os.File, r *reports.Report) error { return reports.RenderMarkdown(f, r) }},
	} {
		f, err := os.Create(g.ReportPath(r.name))
		if err != nil {
			return err
		}
		if err := r.render(f, g.Report); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", f.Name(), err)
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	return nil
}
