package framework

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/ptqgate/ptqgate/reports"
)

// MainPackage is the import path of the ptqgate command.
const MainPackage = "github.com/ptqgate/ptqgate/cmd/ptqgate"

// BuildCLI compiles the ptqgate command into a temporary folder and returns
// the binary's path. SuiteCLI calls it once per suite; a suite that wires
// its own nodes calls it on process 1 of SynchronizedBeforeSuite and
// removes the folder with gexec.CleanupBuildArtifacts in
// SynchronizedAfterSuite.
func BuildCLI() (string, error) {
	return gexec.Build(MainPackage)
}

// SuiteCLI is the black-box tier's suite bootstrap. It registers the
// suite's SynchronizedBeforeSuite, which builds the ptqgate binary once (on
// Ginkgo process 1) and hands its path to every parallel process, and the
// SynchronizedAfterSuite that removes it; it returns the CLI the specs run,
// whose Path is set before the first spec. setup, when given, runs on every
// process after that (a suite has one SynchronizedBeforeSuite, so
// per-process preparation goes here). Call it once, at package level:
//
//	var ptqgate = framework.SuiteCLI()
func SuiteCLI(setup ...func()) *CLI {
	cli := &CLI{}
	ginkgo.SynchronizedBeforeSuite(func() []byte {
		path, err := BuildCLI()
		gomega.Expect(err).NotTo(gomega.HaveOccurred())
		return []byte(path)
	}, func(path []byte) {
		cli.Path = string(path)
		for _, f := range setup {
			f()
		}
	})
	ginkgo.SynchronizedAfterSuite(func() {}, func() {
		gexec.CleanupBuildArtifacts()
	})
	return cli
}

// CLI is a built ptqgate binary.
type CLI struct {
	// Path is the binary.
	Path string
	// Dir is the working directory of the runs ("" = the suite's).
	Dir string
	// Env is added to the suite's environment for every run.
	Env []string
}

// Result is one finished run of the binary.
type Result struct {
	// Args are the arguments, without the binary.
	Args []string
	// ExitCode is the process's exit status (-1 when it did not exit
	// normally, e.g. killed by a signal).
	ExitCode int
	// Stdout and Stderr hold everything the process wrote.
	Stdout, Stderr string
}

// Run runs ptqgate with args and waits for it to exit. A failure to start
// the process is returned as an error; any exit status is a Result.
func (c CLI) Run(args ...string) (*Result, error) {
	cmd := exec.Command(c.Path, args...)
	cmd.Dir = c.Dir
	if len(c.Env) > 0 {
		cmd.Env = append(cmd.Environ(), c.Env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	fmt.Fprintf(ginkgo.GinkgoWriter, "$ ptqgate %s\n", strings.Join(args, " "))
	err := cmd.Run()
	res := &Result{Args: args, Stdout: stdout.String(), Stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		res.ExitCode = exit.ExitCode()
	default:
		return nil, fmt.Errorf("run ptqgate %s: %w", strings.Join(args, " "), err)
	}
	fmt.Fprintf(ginkgo.GinkgoWriter, "  exit %d, %d bytes on stdout, %d on stderr\n", res.ExitCode, len(res.Stdout), len(res.Stderr))
	return res, nil
}

// MustRun is Run for specs: a process that cannot start fails the spec.
func (c CLI) MustRun(args ...string) *Result {
	ginkgo.GinkgoHelper()
	res, err := c.Run(args...)
	if err != nil {
		ginkgo.Fail(err.Error())
	}
	return res
}

// Report decodes the JSON report a --json run printed on stdout.
func (r *Result) Report() (*reports.Report, error) {
	var rep reports.Report
	dec := json.NewDecoder(strings.NewReader(r.Stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		return nil, fmt.Errorf("ptqgate %s: stdout is not a JSON report: %w\n%s", strings.Join(r.Args, " "), err, Tail(r.Stdout, 20))
	}
	if dec.More() {
		return nil, fmt.Errorf("ptqgate %s: stdout holds more than one JSON value", strings.Join(r.Args, " "))
	}
	return &rep, nil
}

// String describes the run for failure messages: the command line, the
// exit code and the tails of both streams.
func (r *Result) String() string {
	return fmt.Sprintf("ptqgate %s\n  exit %d\n  stdout (last lines):\n%s\n  stderr (last lines):\n%s",
		strings.Join(r.Args, " "), r.ExitCode, indent(Tail(r.Stdout, 15)), indent(Tail(r.Stderr, 15)))
}

// Tail returns the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("… %d lines before", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

func indent(s string) string {
	if s == "" {
		return "    (empty)"
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
