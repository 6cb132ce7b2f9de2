package calib

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"unicode/utf8"

	"github.com/ptqgate/ptqgate/ptqcore/model"
)

// Batches is a calibration set: token-id batches exactly as the --calib
// file gives them, one forward per batch.
type Batches struct {
	// Path is the file they were read from.
	Path string
	// Batches[b][s] is sequence s of batch b.
	Batches [][][]int32
}

// Tokens returns the total number of tokens.
func (b *Batches) Tokens() int {
	n := 0
	for _, bt := range b.Batches {
		for _, s := range bt {
			n += len(s)
		}
	}
	return n
}

// Batch returns batch i as a model.Batch.
func (b *Batches) Batch(i int) model.Batch { return model.NewBatch(b.Batches[i]) }

// FileError says a calibration file is malformed (exit 1): it names the
// file and the position ("batches[1][0][5]") of the problem.
type FileError struct {
	File string
	Pos  string
	Msg  string
}

// Error implements error.
func (e *FileError) Error() string {
	if e.Pos == "" {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", e.File, e.Pos, e.Msg)
}

// ExitCode makes a malformed calibration file a failed check (exit 1).
func (e *FileError) ExitCode() int { return 1 }

// PlainTextError says a calibration file is text rather than token ids:
// a well-formed request ptqgate does not support yet (exit 2).
type PlainTextError struct{ File string }

// Error implements error.
func (e *PlainTextError) Error() string {
	return fmt.Sprintf(`%s: plain-text calibration is not supported: token ids only for now (JSON {"batches": [[[id, ...], ...], ...]})`, e.File)
}

// ExitCode makes plain-text calibration an unsupported request (exit 2).
func (e *PlainTextError) ExitCode() int { return 2 }

// LoadBatches reads a --calib file: JSON {"batches": [[[ids…], …], …]}
// (testdata's calib.json). A missing file wraps fs.ErrNotExist (exit 2); a
// file that is not JSON is a *PlainTextError (exit 2); malformed JSON, a
// wrong shape, an empty batch or sequence, or an id that is not a
// non-negative integer is a *FileError naming the position (exit 1).
func LoadBatches(path string) (*Batches, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("calibration file: %w", err)
	}
	return ParseBatches(path, raw)
}

// ParseBatches parses the contents of a --calib file; path names it in errors.
func ParseBatches(path string, raw []byte) (*Batches, error) {
	trimmed := bytes.TrimSpace(bytes.TrimPrefix(raw, []byte("\xef\xbb\xbf")))
	if len(trimmed) == 0 {
		return nil, &FileError{File: path, Msg: "empty file"}
	}
	if trimmed[0] != '{' && trimmed[0] != '[' {
		if utf8.Valid(trimmed) {
			return nil, &PlainTextError{File: path}
		}
		return nil, &FileError{File: path, Msg: "neither JSON nor text"}
	}
	var top map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if err := dec.Decode(&top); err != nil {
		return nil, &FileError{File: path, Msg: "not a JSON object {\"batches\": ...}: " + jsonErr(err)}
	}
	if dec.More() {
		return nil, &FileError{File: path, Msg: "trailing data after the JSON object"}
	}
	for k := range top {
		if k != "batches" {
			return nil, &FileError{File: path, Pos: k, Msg: "unknown key (a calibration file holds only \"batches\")"}
		}
	}
	rawBatches, ok := top["batches"]
	if !ok {
		return nil, &FileError{File: path, Msg: "missing key \"batches\""}
	}
	var batches []json.RawMessage
	if err := json.Unmarshal(rawBatches, &batches); err != nil || batches == nil {
		return nil, &FileError{File: path, Pos: "batches", Msg: "want a list of batches"}
	}
	if len(batches) == 0 {
		return nil, &FileError{File: path, Pos: "batches", Msg: "no batches"}
	}
	out := &Batches{Path: path, Batches: make([][][]int32, len(batches))}
	for bi, rb := range batches {
		var seqs []json.RawMessage
		pos := fmt.Sprintf("batches[%d]", bi)
		if err := json.Unmarshal(rb, &seqs); err != nil || seqs == nil {
			return nil, &FileError{File: path, Pos: pos, Msg: "want a list of sequences"}
		}
		if len(seqs) == 0 {
			return nil, &FileError{File: path, Pos: pos, Msg: "empty batch"}
		}
		out.Batches[bi] = make([][]int32, len(seqs))
		for si, rs := range seqs {
			var ids []json.RawMessage
			pos := fmt.Sprintf("batches[%d][%d]", bi, si)
			if err := json.Unmarshal(rs, &ids); err != nil || ids == nil {
				return nil, &FileError{File: path, Pos: pos, Msg: "want a list of token ids"}
			}
			if len(ids) == 0 {
				return nil, &FileError{File: path, Pos: pos, Msg: "empty sequence"}
			}
			seq := make([]int32, len(ids))
			for ti, rid := range ids {
				var f float64
				if err := json.Unmarshal(rid, &f); err != nil || f != math.Trunc(f) || f < 0 || f > math.MaxInt32 {
					return nil, &FileError{File: path, Pos: fmt.Sprintf("batches[%d][%d][%d]", bi, si, ti),
						Msg: fmt.Sprintf("token id %s is not a non-negative integer", shortJSON(rid))}
				}
				seq[ti] = int32(f)
			}
			out.Batches[bi][si] = seq
		}
	}
	return out, nil
}

// Validate checks every token id against the vocabulary size.
func (b *Batches) Validate(vocab int) error {
	for bi, bt := range b.Batches {
		for si, s := range bt {
			for ti, id := range s {
				if int(id) >= vocab {
					return &FileError{File: b.Path, Pos: fmt.Sprintf("batches[%d][%d][%d]", bi, si, ti),
						Msg: fmt.Sprintf("token id %d is not below the model's vocab_size %d", id, vocab)}
				}
			}
		}
	}
	return nil
}

func jsonErr(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%v (at byte %d)", se, se.Offset)
	}
	return err.Error()
}

func shortJSON(v json.RawMessage) string {
	s := string(bytes.TrimSpace(v))
	if len(s) > 24 {
		s = s[:21] + "..."
	}
	return s
}
