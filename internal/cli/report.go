package cli

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"github.com/ptqgate/ptqgate/internal/buildinfo"
	"github.com/ptqgate/ptqgate/reports"
)

func init() { register(newReportCmd) }

// reportFormats are the --format values of `report`, with their aliases.
var reportFormats = map[string]string{
	"table": "table", "text": "table",
	"md": "md", "markdown": "md",
	"junit": "junit", "xml": "junit",
	"html": "html",
	"json": "json",
}

const reportFormatList = "table, md, junit, html or json"

// defaultReportMaxRows caps long tables of the table format.
const defaultReportMaxRows = 100

// renderOptions are the output flags shared by `report` and `report diff`.
type renderOptions struct {
	format  string
	out     string
	force   bool
	maxRows int
	// verbose mirrors the global --verbose flag for the table format.
	verbose bool
}

func (o *renderOptions) addFlags(c *cobra.Command) {
	c.Flags().StringVar(&o.format, "format", "table", "output `FORMAT`: "+strings.ReplaceAll(reportFormatList, " or ", ", "))
	c.Flags().StringVar(&o.out, "out", "", "write the output to `FILE` (atomically) instead of standard output")
	c.Flags().BoolVar(&o.force, "force", false, "overwrite an existing --out file")
	c.Flags().IntVar(&o.maxRows, "max-rows", defaultReportMaxRows, "longest list the table format shows in full (0: all)")
}

// validate checks the flags before any file is read, so usage errors are
// exit 2 whatever the inputs.
func (o *renderOptions) validate(cmd string) error {
	f, ok := reportFormats[strings.ToLower(o.format)]
	if !ok {
		return Usagef("%s: unknown format %q (want %s)", cmd, o.format, reportFormatList)
	}
	o.format = f
	if o.maxRows < 0 {
		return Usagef("%s: --max-rows must be 0 or more, got %d", cmd, o.maxRows)
	}
	if o.out != "" && !o.force {
		if _, err := os.Lstat(o.out); err == nil {
			return Usagef("%s: --out %s exists (use --force to overwrite it)", cmd, o.out)
		}
	}
	return nil
}

func newReportCmd(a *App) *cobra.Command {
	var o renderOptions
	c := &cobra.Command{
		Use:   "report FILE",
		Short: "Render a JSON report as a table, Markdown, JUnit XML or HTML",
		Long: `Render a JSON report written by any ptqgate command (inspect, quantize,
verify, report diff) in another format:

  table   terminal tables (default), coloured when standard output is a terminal
  md      GitHub-flavoured Markdown for a pull-request comment (under 60,000
          characters: long tables are cut with a note)
  junit   JUnit XML: one test case per evaluated rule and target; only error
          findings fail
  html    one self-contained HTML page with charts (no scripts, no network)
  json    the report itself, re-encoded

The output goes to standard output, or with --out to a file that is written
atomically. Rendering a report that has error findings still exits 0; the
exit code of the command that wrote the report is the verdict.

A FILE that is not a ptqgate report is exit 1; a missing FILE, an unknown
format or an existing --out without --force is exit 2.

Use 'ptqgate report diff BASELINE NEW' to compare two reports.`,
		Example: `  ptqgate report verify.json
  ptqgate report verify.json --format md > comment.md
  ptqgate report calib.json --format html --out calib.html`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return runReport(a, &o, args[0])
		},
	}
	o.addFlags(c)
	c.AddCommand(newReportDiffCmd(a))
	return c
}

func runReport(a *App, o *renderOptions, path string) error {
	o.verbose = a.Verbose
	if err := o.validate("report"); err != nil {
		return err
	}
	r, err := reports.ReadFile(path)
	if err != nil {
		return err
	}
	if o.out != "" {
		return writeRendered(o, r)
	}
	return render(a.Stdout, r, o, colorFor(a, a.Stdout))
}

// diffOptions are the flags of `report diff`.
type diffOptions struct {
	renderOptions
	output        Output
	ratio, floor  float64
	amaxTolerance float64
}

func newReportDiffCmd(a *App) *cobra.Command {
	var o diffOptions
	def := reports.DefaultDiffOptions()
	c := &cobra.Command{
		Use:   "diff BASELINE NEW",
		Short: "Compare a report against a baseline and fail on regressions",
		Long: `Compare the report NEW against the report BASELINE (both JSON reports written by
ptqgate) and list every difference. Exit 1 when NEW regresses:

  - a quantizer that had a valid amax lost it (null) or got an invalid one
    (non-finite or <= 0), or is newly listed as uncalibrated;
  - an expert whose gate_up or down hook calls went from > 0 to 0;
  - an error finding (same rule, target, tensor and module) that BASELINE did
    not have;
  - a module's relative dequantization error grew past --dequant-threshold
    times its baseline value and past --dequant-floor (or became NaN/Inf).

Improvements and neutral changes are listed too, with regression false.
Sections are compared only when both reports have them. The result is a
report of kind "diff" whose regressions are also error findings: --json
prints it, --report FILE saves it, --format picks how it is shown (on
standard output, or on standard error with --json, or in --out FILE).`,
		Example: `  ptqgate report diff baseline.json calib.json
  ptqgate report diff main.json pr.json --format md --out diff.md --json > diff.json`,
		Args: cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			return runReportDiff(a, &o, args[0], args[1])
		},
	}
	o.renderOptions.addFlags(c)
	o.output.AddFlags(c)
	c.Flags().Float64Var(&o.ratio, "dequant-threshold", def.DequantRatio, "`RATIO` above which a grown relative dequantization error is a regression (> 1)")
	c.Flags().Float64Var(&o.floor, "dequant-floor", def.DequantFloor, "relative dequantization `ERROR` at or below which growth is never a regression")
	c.Flags().Float64Var(&o.amaxTolerance, "amax-tolerance", def.AmaxTolerance, "relative amax change at or below which an amax counts as unchanged")
	return c
}

func runReportDiff(a *App, o *diffOptions, basePath, newPath string) error {
	if err := o.validate("report diff"); err != nil {
		return err
	}
	switch {
	case !(o.ratio > 1):
		return Usagef("report diff: --dequant-threshold must be greater than 1, got %v", o.ratio)
	case !(o.floor >= 0):
		return Usagef("report diff: --dequant-floor must be 0 or more, got %v", o.floor)
	case !(o.amaxTolerance >= 0):
		return Usagef("report diff: --amax-tolerance must be 0 or more, got %v", o.amaxTolerance)
	}
	base, err := reports.ReadFile(basePath)
	if err != nil {
		return err
	}
	cur, err := reports.ReadFile(newPath)
	if err != nil {
		return err
	}
	d := reports.Diff(base, cur, reports.DiffOptions{DequantRatio: o.ratio, DequantFloor: o.floor,
		AmaxTolerance: o.amaxTolerance, ToolVersion: buildinfo.Version})
	d.Run = &reports.Run{Paths: map[string]string{"baseline": absPath(basePath), "new": absPath(newPath)}}
	o.verbose = a.Verbose

	if o.out != "" {
		if err := writeRendered(&o.renderOptions, d); err != nil {
			return err
		}
	} else {
		w := o.output.Human(a)
		if err := render(w, d, &o.renderOptions, colorFor(a, w)); err != nil {
			return err
		}
	}
	if err := o.output.Emit(a, d); err != nil {
		return err
	}
	regressions := 0
	for _, e := range d.Diff {
		if e.Regression {
			regressions++
		}
	}
	if regressions > 0 {
		return fmt.Errorf("report diff: %d regressions in %s against %s", regressions, newPath, basePath)
	}
	return nil
}

func absPath(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

// colorFor says whether output to w may use ANSI colour: only on a
// terminal, and never when NO_COLOR is set.
func colorFor(a *App, w io.Writer) bool {
	if a.Getenv != nil && a.Getenv("NO_COLOR") != "" {
		return false
	}
	if w == a.Stderr && a.StderrTTY {
		return true
	}
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// render writes a report in the validated format.
func render(w io.Writer, r *reports.Report, o *renderOptions, color bool) error {
	switch o.format {
	case "md":
		return reports.RenderMarkdown(w, r)
	case "junit":
		return reports.WriteJUnit(w, r)
	case "html":
		return reports.RenderHTML(w, r)
	case "json":
		return r.WriteJSON(w)
	}
	return reports.RenderText(w, r, reports.TextOptions{Color: color, MaxRows: o.maxRows, Verbose: o.verbose})
}

// writeRendered renders into --out through a temporary file in the same
// folder, renamed into place, so readers never see a partial file.
func writeRendered(o *renderOptions, r *reports.Report) error {
	var buf bytes.Buffer
	if err := render(&buf, r, o, false); err != nil {
		return err
	}
	dir, base := filepath.Split(o.out)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", o.out, err)
	}
	fail := func(err error) error {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", o.out, err)
	}
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		return fail(err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", o.out, err)
	}
	if err := os.Rename(tmp.Name(), o.out); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", o.out, err)
	}
	return nil
}
