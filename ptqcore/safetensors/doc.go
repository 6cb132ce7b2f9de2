// Package safetensors is ptqgate's own reader and writer of the
// safetensors container (specs/transformers.md §8) and of Hugging Face
// checkpoint directories (a single model.safetensors, or shards plus
// model.safetensors.index.json).
//
// The reader parses only the header (through io.ReaderAt, never the whole
// file) and validates it strictly: every problem is a *FormatError naming
// the file and tensor, never a panic. Every safetensors dtype is known,
// including F8_E4M3, F8_E5M2, F8_E8M0, the FNUZ variants, F4 (two values per
// byte; the shape counts values) and C64; a dtype it does not know is kept
// as raw bytes (no size check, but its offsets must still tile the data).
//
// The writer streams tensor bytes one tensor at a time, writes atomically
// (temporary file, fsync, rename) and reproduces the Python safetensors
// writer byte for byte, so the same tensors always give the same file.
//
// github.com/nlpodyssey/safetensors serves as a cross-check in tests only:
// it cannot read the F8 or F4 dtypes.
package safetensors
