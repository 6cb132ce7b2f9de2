package export

import (
	"fmt"
	"strings"
)

// UsageError is a bad export request (exit 2): an existing --out without
// --force, an --out that would touch the source checkpoint, an unknown
// --dtype.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return "export: " + e.Msg }

// ExitCode makes a bad request a usage error (exit 2).
func (e *UsageError) ExitCode() int { return 2 }

// UnsupportedError is a well-formed export the engines could not load
// (exit 2): formats ptqgate cannot write, a fused engine layer whose shards
// have different formats, an exclusion no wildcard can express safely.
type UnsupportedError struct {
	// Subject names the module or quantizer.
	Subject string
	// Reason says why.
	Reason string
}

func (e *UnsupportedError) Error() string { return "export: " + e.Subject + ": " + e.Reason }

// ExitCode makes an unsupported export exit 2.
func (e *UnsupportedError) ExitCode() int { return 2 }

// UncalibratedError refuses an export with enabled quantizers that have no
// valid amax (missing, zero, negative or not finite) when
// --allow-uncalibrated is not given (exit 1). Nothing is written.
type UncalibratedError struct{ Names []string }

func (e *UncalibratedError) Error() string {
	const show = 5
	names := e.Names
	more := ""
	if len(names) > show {
		more = fmt.Sprintf(" and %d more", len(names)-show)
		names = names[:show]
	}
	return fmt.Sprintf("export: %d enabled quantizer(s) without a valid amax: %s%s (nothing written; --allow-uncalibrated exports without their scales, as the toolkit did)",
		len(e.Names), strings.Join(names, ", "), more)
}

// ExitCode makes an uncalibrated export a failed check (exit 1).
func (e *UncalibratedError) ExitCode() int { return 1 }

// CheckError says the export was written but its self-check failed: an
// enabled quantizer did not produce its tensors, or a tensor is mis-typed,
// mis-shaped or holds an invalid scale (exit 1). The report inside the
// folder lists every finding.
type CheckError struct {
	// Dir is the export folder.
	Dir string
	// Errors counts the error findings; First holds the first messages.
	Errors int
	First  []string
}

func (e *CheckError) Error() string {
	s := fmt.Sprintf("export %s: self-check failed with %d error finding(s), listed in %s", e.Dir, e.Errors, ReportFile)
	if len(e.First) > 0 {
		s += "; first: " + e.First[0]
	}
	return s
}

// ExitCode makes a failed self-check exit 1.
func (e *CheckError) ExitCode() int { return 1 }
