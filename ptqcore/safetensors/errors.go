package safetensors

import "fmt"

// FormatError says a safetensors file or checkpoint directory is malformed.
// File names the file (or folder) and Tensor the tensor or key concerned,
// when there is one. It maps to exit code 1 (malformed input).
type FormatError struct {
	File   string
	Tensor string
	Msg    string
	// Err is an underlying error (an I/O or JSON error), if any.
	Err error
}

// Error names the file, the tensor and what is wrong.
func (e *FormatError) Error() string {
	s := e.File + ": "
	if e.File == "" {
		s = ""
	}
	if e.Tensor != "" {
		s += fmt.Sprintf("tensor %q: ", e.Tensor)
	}
	s += e.Msg
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying error.
func (e *FormatError) Unwrap() error { return e.Err }

// ExitCode makes a malformed file a failed check (exit 1).
func (e *FormatError) ExitCode() int { return 1 }

func formatErr(file, tensor, format string, args ...any) *FormatError {
	return &FormatError{File: file, Tensor: tensor, Msg: fmt.Sprintf(format, args...)}
}
