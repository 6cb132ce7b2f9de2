// Package cli implements the ptqgate command line: one file per command,
// each registering itself with register. The grammar, exit codes and the
// --json/--report behaviour are the contract of INTERFACES.md.
package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"github.com/ptqgate/ptqgate/internal/buildinfo"
	"github.com/ptqgate/ptqgate/reports"
)

// Exit codes of every command (INTERFACES.md).
const (
	ExitOK       = 0 // success; warnings allowed
	ExitFailed   = 1 // a check failed, or malformed input
	ExitUsage    = 2 // usage error or unsupported request
	ExitInternal = 3 // a bug
)

// App is the environment a command runs in. Tests build one with buffers.
type App struct {
	Stdout io.Writer
	Stderr io.Writer
	// StderrTTY is true when stderr is a terminal: progress bars and
	// colour are shown only then.
	StderrTTY bool
	// Getenv reads the environment (os.Getenv outside tests).
	Getenv func(string) string
	// Executable is the path of the running ptqgate binary ("" if unknown).
	Executable string
	// Verbose is the global --verbose flag: tables list info findings one
	// by one instead of counting them per rule.
	Verbose bool
}

// commandFactories are filled by each command file's init.
var commandFactories []func(*App) *cobra.Command

// register adds a command to every App.
func register(f func(*App) *cobra.Command) { commandFactories = append(commandFactories, f) }

// Main runs ptqgate with the process environment and returns the exit code.
func Main(args []string) int {
	exe, _ := os.Executable()
	app := &App{
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
		StderrTTY:  isatty.IsTerminal(os.Stderr.Fd()) || isatty.IsCygwinTerminal(os.Stderr.Fd()),
		Getenv:     os.Getenv,
		Executable: exe,
	}
	return app.Run(args)
}

// Run executes one command line and returns its exit code. A panic
// anywhere below is recovered into exit 3 with a stack trace.
func (a *App) Run(args []string) (code int) {
	defer func() {
		if p := recover(); p != nil {
			fmt.Fprintf(a.Stderr, "ptqgate: internal error: %v\n\n%s\n", p, debug.Stack())
			fmt.Fprintln(a.Stderr, "This is a bug in ptqgate. Please report it with the command line and the output above.")
			code = ExitInternal
		}
	}()
	root := a.newRoot()
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return ExitOK
	}
	code = ExitCodeOf(err)
	var silent *silentError
	if !errors.As(err, &silent) {
		fmt.Fprintf(a.Stderr, "ptqgate: %v\n", err)
		if code == ExitUsage && isFlagOrCommandError(err) {
			fmt.Fprintln(a.Stderr, "Run 'ptqgate --help' for usage.")
		}
	}
	if code == ExitInternal {
		fmt.Fprintln(a.Stderr, "This is a bug in ptqgate. Please report it with the command line and the output above.")
	}
	return code
}

func (a *App) newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "ptqgate",
		Short: "Quantize MoE checkpoints with full accounting and gate them against vLLM/SGLang loader contracts",
		Long: `ptqgate quantizes Mixture-of-Experts checkpoints (FP8, NVFP4, FP8 KV cache)
with per-expert calibration accounting, verifies quantized checkpoints
against what the vLLM and SGLang loaders expect, and writes reports that CI
can gate on.

Exit codes: 0 success (warnings allowed), 1 a check failed or the input is
malformed, 2 usage error or unsupported request, 3 internal error.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       buildinfo.Version,
	}
	root.SetOut(a.Stdout)
	root.SetErr(a.Stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &UsageError{Err: fmt.Errorf("%s: %w", c.CommandPath(), err)}
	})
	root.CompletionOptions.DisableDefaultCmd = true
	root.PersistentFlags().BoolVar(&a.Verbose, "verbose", false, "list info findings one by one in tables (the JSON report always has them all)")
	cmds := make([]*cobra.Command, 0, len(commandFactories))
	for _, f := range commandFactories {
		cmds = append(cmds, f(a))
	}
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].Name() < cmds[j].Name() })
	root.AddCommand(cmds...)
	nameArgErrors(root)
	return root
}

// nameArgErrors wraps every command's positional-argument validator so
// that its error is a usage error naming the command ("ptqgate verify:
// accepts 1 arg(s), received 0").
func nameArgErrors(c *cobra.Command) {
	if check := c.Args; check != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				return &UsageError{Err: fmt.Errorf("%s: %w", cmd.CommandPath(), err)}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		nameArgErrors(sub)
	}
}

// UsageError is a usage error or a well-formed request for something
// unsupported (exit 2).
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// ExitCode implements the exit-code convention.
func (e *UsageError) ExitCode() int { return ExitUsage }

// Usagef returns a UsageError with a formatted message.
func Usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// silentError carries an exit code for a failure that the command has
// already explained on its output (e.g. failed checks in a report).
type silentError struct{ code int }

func (e *silentError) Error() string { return fmt.Sprintf("exit status %d", e.code) }
func (e *silentError) ExitCode() int { return e.code }

// ErrChecksFailed ends a command with exit 1 without printing more: the
// report already said what failed.
var ErrChecksFailed error = &silentError{code: ExitFailed}

// ExitCodeOf maps an error to an exit code. Errors anywhere in the chain
// that have an ExitCode() int method decide; a missing file is a usage
// error (2); anything else is a failed check or malformed input (1).
func ExitCodeOf(err error) int {
	if err == nil {
		return ExitOK
	}
	var coder interface{ ExitCode() int }
	if errors.As(err, &coder) {
		return coder.ExitCode()
	}
	if errors.Is(err, fs.ErrNotExist) {
		return ExitUsage
	}
	if isFlagOrCommandError(err) {
		return ExitUsage
	}
	return ExitFailed
}

// isFlagOrCommandError recognises cobra's own argument and command errors.
func isFlagOrCommandError(err error) bool {
	var u *UsageError
	if errors.As(err, &u) {
		return true
	}
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "accepts ", "requires at least", "requires at most", "flag needs an argument", "invalid argument"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

// Output is the --json / --report plumbing shared by commands that emit a
// report: with --json the JSON goes to stdout and human output to stderr.
type Output struct {
	JSON       bool
	ReportFile string
}

// AddFlags registers --json and --report on a command.
func (o *Output) AddFlags(c *cobra.Command) {
	c.Flags().BoolVar(&o.JSON, "json", false, "print the machine-readable report (JSON) on stdout; tables and progress go to stderr")
	c.Flags().StringVar(&o.ReportFile, "report", "", "also write the JSON report to `FILE`")
}

// Human returns where human-readable output goes.
func (o *Output) Human(a *App) io.Writer {
	if o.JSON {
		return a.Stderr
	}
	return a.Stdout
}

// Emit writes the report to stdout (with --json) and to --report FILE.
func (o *Output) Emit(a *App, r *reports.Report) error {
	if o.ReportFile != "" {
		if err := r.WriteFile(o.ReportFile); err != nil {
			return err
		}
	}
	if o.JSON {
		return r.WriteJSON(a.Stdout)
	}
	return nil
}
