package quant

import "fmt"

// ExitUnsupported is the exit code of a well-formed request for something
// ptqgate does not support (INTERFACES.md).
const ExitUnsupported = 2

// UnsupportedError is a well-formed request for something unsupported: an
// unknown preset, an algorithm other than max, a format other than FP8/NVFP4
// (and FP8 for KV), a parent_class other than nn.Linear in an enabling entry,
// or a quantizer left enabled at the toolkit's INT8 default. ptqgate exits 2.
type UnsupportedError struct {
	// Subject names what is unsupported (an entry, a quantizer, a preset).
	Subject string
	// Reason says why.
	Reason string
}

// Error says what is unsupported and why.
func (e *UnsupportedError) Error() string {
	if e.Subject == "" {
		return e.Reason
	}
	return e.Subject + ": " + e.Reason
}

// ExitCode implements the exit-code convention of internal/cli.
func (e *UnsupportedError) ExitCode() int { return ExitUnsupported }

func unsupportedf(subject, format string, args ...any) error {
	return &UnsupportedError{Subject: subject, Reason: fmt.Sprintf(format, args...)}
}

// RecipeError is a malformed recipe file: YAML that does not parse, an
// unknown key, a value of the wrong type, an unresolvable import or an entry
// that breaks the toolkit's validation rules. ptqgate exits 1.
type RecipeError struct {
	// File is the file at fault ("" for presets built in code).
	File string
	// Line is the 1-based line in File, 0 when unknown.
	Line int
	// Key is the offending key path, e.g. "quantize.quant_cfg[3].cfg.num_bits".
	Key string
	// Msg says what is wrong.
	Msg string
}

// Error names the file, line and key and says what is wrong.
func (e *RecipeError) Error() string {
	loc := e.File
	if loc == "" {
		loc = "recipe"
	}
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", loc, e.Line)
	}
	if e.Key != "" {
		return fmt.Sprintf("%s: %s: %s", loc, e.Key, e.Msg)
	}
	return fmt.Sprintf("%s: %s", loc, e.Msg)
}

// ExitCode implements the exit-code convention of internal/cli.
func (e *RecipeError) ExitCode() int { return 1 }
