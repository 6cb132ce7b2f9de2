package model

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ptqgate/ptqgate/ptqcore/backend"
)

// ConfigFile is the name of the model configuration inside a checkpoint.
const ConfigFile = "config.json"

// Config is the parsed config.json of a checkpoint: the keys every
// decoder-only MoE architecture needs, read the way transformers reads
// them, plus the raw key maps for architecture-specific keys.
//
// For a vision-language checkpoint (a "text_config" object), the text keys
// come from text_config (falling back to the top level for dtype and
// tie_word_embeddings), and Nested is true.
type Config struct {
	// Path is the config.json path.
	Path string
	// Architectures is the "architectures" list; Architecture its first entry.
	Architectures []string
	Architecture  string
	// ModelType is the top-level model_type; TextModelType that of
	// text_config ("" when not nested).
	ModelType     string
	TextModelType string
	// Nested is true when the text keys came from text_config.
	Nested bool

	// DTypeName is "dtype" (transformers v5) or "torch_dtype" as written,
	// "float32" when absent; DType is the parsed compute dtype.
	DTypeName string
	DType     backend.DType

	VocabSize         int
	HiddenSize        int
	IntermediateSize  int // dense MLP layers (0 when absent)
	NumHiddenLayers   int
	NumAttentionHeads int
	NumKeyValueHeads  int // num_attention_heads when absent
	HeadDim           int // hidden_size / num_attention_heads when absent
	RMSNormEps        float64
	HiddenAct         string
	AttentionBias     bool
	TieWordEmbeddings bool

	// RopeTheta is rope_parameters.rope_theta, else the legacy top-level
	// rope_theta, else 10000. RopeType is rope_parameters.rope_type
	// ("default" when absent). PartialRotaryFactor is
	// rope_parameters.partial_rotary_factor or partial_rotary_factor (1
	// when absent).
	RopeTheta           float64
	RopeType            string
	PartialRotaryFactor float64

	// NumExperts is num_experts or num_local_experts (0 for a dense model);
	// NumExpertsPerTok is num_experts_per_tok; MoEIntermediateSize is
	// moe_intermediate_size.
	NumExperts          int
	NumExpertsPerTok    int
	MoEIntermediateSize int
	// NormTopKProb is norm_topk_prob (false when absent).
	NormTopKProb bool
	// DecoderSparseStep (1 when absent) and MLPOnlyLayers ([] when absent)
	// decide which layers are MoE.
	DecoderSparseStep int
	MLPOnlyLayers     []int

	// Top holds every top-level key; Text the keys of the text model
	// (text_config when nested, else the same map as Top).
	Top  map[string]json.RawMessage
	Text map[string]json.RawMessage
}

// ConfigError says config.json is malformed: it does not parse, a key has
// the wrong type or an impossible value. It maps to exit 1 and names the
// file and the key.
type ConfigError struct {
	File string
	Key  string
	Msg  string
	Err  error
}

// Error implements error.
func (e *ConfigError) Error() string {
	s := e.File + ": "
	if e.Key != "" {
		s += fmt.Sprintf("key %q: ", e.Key)
	}
	s += e.Msg
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying error.
func (e *ConfigError) Unwrap() error { return e.Err }

// ExitCode makes a malformed config a failed check (exit 1).
func (e *ConfigError) ExitCode() int { return 1 }

// UnsupportedError is a well-formed checkpoint ptqgate cannot run: an
// architecture, activation, RoPE type or dtype it does not implement
// (exit 2).
type UnsupportedError struct {
	File string
	What string
}

// Error implements error.
func (e *UnsupportedError) Error() string { return e.File + ": unsupported: " + e.What }

// ExitCode makes an unsupported model a usage error (exit 2).
func (e *UnsupportedError) ExitCode() int { return 2 }

// LoadConfig reads and parses dir/config.json. A missing dir is an error
// wrapping fs.ErrNotExist (exit 2); a dir without config.json or a file that
// does not parse is a *ConfigError (exit 1).
func LoadConfig(dir string) (*Config, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if !st.IsDir() {
		return nil, &ConfigError{File: dir, Msg: "not a checkpoint directory"}
	}
	path := filepath.Join(dir, ConfigFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &ConfigError{File: dir, Msg: "not a checkpoint: " + ConfigFile + " is missing"}
		}
		return nil, &ConfigError{File: path, Msg: "cannot read", Err: err}
	}
	return ParseConfig(path, raw)
}

// ParseConfig parses the bytes of a config.json; path names it in errors.
func ParseConfig(path string, raw []byte) (*Config, error) {
	var top map[string]json.RawMessage
	if err := strictObject(raw, &top); err != nil {
		return nil, &ConfigError{File: path, Msg: "not a JSON object", Err: err}
	}
	c := &Config{Path: path, Top: top, Text: top}
	r := keyReader{file: path, m: top}
	var err error
	if c.Architectures, err = r.strings("architectures"); err != nil {
		return nil, err
	}
	if len(c.Architectures) > 0 {
		c.Architecture = c.Architectures[0]
	}
	if c.ModelType, err = r.str("model_type", ""); err != nil {
		return nil, err
	}
	if tc, ok := top["text_config"]; ok && !isNull(tc) {
		var text map[string]json.RawMessage
		if err := strictObject(tc, &text); err != nil {
			return nil, &ConfigError{File: path, Key: "text_config", Msg: "not a JSON object", Err: err}
		}
		c.Text, c.Nested = text, true
	}
	t := keyReader{file: path, m: c.Text}
	if c.Nested {
		t.prefix = "text_config."
		if c.TextModelType, err = t.str("model_type", ""); err != nil {
			return nil, err
		}
	}
	// dtype: the text config's own, else the top level's.
	c.DTypeName = "float32"
	for _, kr := range []keyReader{t, r} {
		found := false
		for _, key := range []string{"dtype", "torch_dtype"} {
			s, err := kr.str(key, "")
			if err != nil {
				return nil, err
			}
			if s != "" {
				c.DTypeName, found = s, true
				break
			}
		}
		if found || !c.Nested {
			break
		}
	}
	dt, err := backend.ParseDType(c.DTypeName)
	if err != nil {
		return nil, &UnsupportedError{File: path, What: fmt.Sprintf("dtype %q (ptqgate computes in float32, bfloat16 or float16)", c.DTypeName)}
	}
	c.DType = dt

	ints := []struct {
		key      string
		dst      *int
		def      int
		required bool
	}{
		{"vocab_size", &c.VocabSize, 0, true},
		{"hidden_size", &c.HiddenSize, 0, true},
		{"num_hidden_layers", &c.NumHiddenLayers, 0, true},
		{"num_attention_heads", &c.NumAttentionHeads, 0, true},
		{"intermediate_size", &c.IntermediateSize, 0, false},
		{"num_experts_per_tok", &c.NumExpertsPerTok, 0, false},
		{"moe_intermediate_size", &c.MoEIntermediateSize, 0, false},
		{"decoder_sparse_step", &c.DecoderSparseStep, 1, false},
	}
	for _, f := range ints {
		if *f.dst, err = t.int(f.key, f.def, f.required); err != nil {
			return nil, err
		}
	}
	if c.NumKeyValueHeads, err = t.int("num_key_value_heads", c.NumAttentionHeads, false); err != nil {
		return nil, err
	}
	if c.HeadDim, err = t.int("head_dim", 0, false); err != nil {
		return nil, err
	}
	// num_experts and num_local_experts are aliases (Qwen3MoeConfig.attribute_map).
	ne, err := t.int("num_experts", -1, false)
	if err != nil {
		return nil, err
	}
	nle, err := t.int("num_local_experts", -1, false)
	if err != nil {
		return nil, err
	}
	switch {
	case ne >= 0 && nle >= 0 && ne != nle:
		return nil, &ConfigError{File: path, Key: t.prefix + "num_experts", Msg: fmt.Sprintf("num_experts %d and num_local_experts %d disagree", ne, nle)}
	case ne >= 0:
		c.NumExperts = ne
	case nle >= 0:
		c.NumExperts = nle
	}
	if c.RMSNormEps, err = t.float("rms_norm_eps", 1e-6); err != nil {
		return nil, err
	}
	if c.HiddenAct, err = t.str("hidden_act", "silu"); err != nil {
		return nil, err
	}
	if c.AttentionBias, err = t.bool("attention_bias", false); err != nil {
		return nil, err
	}
	if c.NormTopKProb, err = t.bool("norm_topk_prob", false); err != nil {
		return nil, err
	}
	tie := false
	if _, ok := c.Text["tie_word_embeddings"]; ok || !c.Nested {
		tie, err = t.bool("tie_word_embeddings", false)
	} else {
		tie, err = r.bool("tie_word_embeddings", false)
	}
	if err != nil {
		return nil, err
	}
	c.TieWordEmbeddings = tie
	if c.MLPOnlyLayers, err = t.intList("mlp_only_layers"); err != nil {
		return nil, err
	}
	if err := c.parseRope(t); err != nil {
		return nil, err
	}
	if err := c.validate(t); err != nil {
		return nil, err
	}
	return c, nil
}

// parseRope reads rope_parameters (transformers v5) or the legacy keys.
func (c *Config) parseRope(t keyReader) error {
	c.RopeTheta, c.RopeType, c.PartialRotaryFactor = 10000, "default", 1
	theta, err := t.float("rope_theta", 0)
	if err != nil {
		return err
	}
	if theta != 0 {
		c.RopeTheta = theta
	}
	prf, err := t.float("partial_rotary_factor", 0)
	if err != nil {
		return err
	}
	if prf != 0 {
		c.PartialRotaryFactor = prf
	}
	for _, key := range []string{"rope_parameters", "rope_scaling"} {
		raw, ok := t.m[key]
		if !ok || isNull(raw) {
			continue
		}
		var rp map[string]json.RawMessage
		if err := strictObject(raw, &rp); err != nil {
			return &ConfigError{File: t.file, Key: t.prefix + key, Msg: "not a JSON object", Err: err}
		}
		sub := keyReader{file: t.file, prefix: t.prefix + key + ".", m: rp}
		if v, err := sub.float("rope_theta", 0); err != nil {
			return err
		} else if v != 0 {
			c.RopeTheta = v
		}
		typ, err := sub.str("rope_type", "")
		if err != nil {
			return err
		}
		if typ == "" {
			if typ, err = sub.str("type", ""); err != nil {
				return err
			}
		}
		if typ != "" {
			c.RopeType = typ
		}
		if v, err := sub.float("partial_rotary_factor", 0); err != nil {
			return err
		} else if v != 0 {
			c.PartialRotaryFactor = v
		}
	}
	return nil
}

// validate checks the generic dimensions.
func (c *Config) validate(t keyReader) error {
	bad := func(key, format string, args ...any) error {
		return &ConfigError{File: c.Path, Key: t.prefix + key, Msg: fmt.Sprintf(format, args...)}
	}
	for _, f := range []struct {
		key string
		v   int
	}{
		{"vocab_size", c.VocabSize}, {"hidden_size", c.HiddenSize}, {"num_hidden_layers", c.NumHiddenLayers},
		{"num_attention_heads", c.NumAttentionHeads}, {"num_key_value_heads", c.NumKeyValueHeads},
		{"decoder_sparse_step", c.DecoderSparseStep},
	} {
		if f.v <= 0 {
			return bad(f.key, "must be positive, got %d", f.v)
		}
	}
	if c.NumAttentionHeads%c.NumKeyValueHeads != 0 {
		return bad("num_key_value_heads", "%d does not divide num_attention_heads %d", c.NumKeyValueHeads, c.NumAttentionHeads)
	}
	if c.HeadDim == 0 {
		if c.HiddenSize%c.NumAttentionHeads != 0 {
			return bad("head_dim", "absent, and hidden_size %d is not a multiple of num_attention_heads %d", c.HiddenSize, c.NumAttentionHeads)
		}
		c.HeadDim = c.HiddenSize / c.NumAttentionHeads
	}
	if c.HeadDim <= 0 || c.HeadDim%2 != 0 {
		return bad("head_dim", "must be positive and even, got %d", c.HeadDim)
	}
	if c.NumExperts < 0 || c.NumExpertsPerTok < 0 || c.MoEIntermediateSize < 0 || c.IntermediateSize < 0 {
		return bad("num_experts", "negative expert dimensions")
	}
	if c.NumExperts > 0 && (c.NumExpertsPerTok <= 0 || c.NumExpertsPerTok > c.NumExperts) {
		return bad("num_experts_per_tok", "%d is not in [1, num_experts %d]", c.NumExpertsPerTok, c.NumExperts)
	}
	if !(c.RMSNormEps >= 0) || math.IsInf(c.RMSNormEps, 0) {
		return bad("rms_norm_eps", "must be a finite non-negative number, got %g", c.RMSNormEps)
	}
	if !(c.RopeTheta > 0) || math.IsInf(c.RopeTheta, 0) {
		return bad("rope_parameters.rope_theta", "must be a finite positive number, got %g", c.RopeTheta)
	}
	if !(c.PartialRotaryFactor > 0 && c.PartialRotaryFactor <= 1) {
		return bad("partial_rotary_factor", "must be in (0, 1], got %g", c.PartialRotaryFactor)
	}
	for i, l := range c.MLPOnlyLayers {
		if l < 0 || l >= c.NumHiddenLayers {
			return bad(fmt.Sprintf("mlp_only_layers[%d]", i), "layer %d outside [0, %d)", l, c.NumHiddenLayers)
		}
	}
	return nil
}

// IsMoELayer reports whether decoder layer i has routed experts, as
// Qwen3MoeDecoderLayer decides: not in mlp_only_layers, num_experts > 0 and
// (i+1) % decoder_sparse_step == 0.
func (c *Config) IsMoELayer(i int) bool {
	for _, l := range c.MLPOnlyLayers {
		if l == i {
			return false
		}
	}
	return c.NumExperts > 0 && (i+1)%c.DecoderSparseStep == 0
}

// TextKeys returns a reader of the text model's keys, for
// architecture-specific keys.
func (c *Config) TextKeys() KeyReader {
	k := keyReader{file: c.Path, m: c.Text}
	if c.Nested {
		k.prefix = "text_config."
	}
	return KeyReader{k}
}

// KeyReader reads typed keys of a config object; errors are *ConfigErrors
// naming the file and the key.
type KeyReader struct{ r keyReader }

// Int reads an integer key (def when absent or null; an error when required and absent).
func (k KeyReader) Int(key string, def int, required bool) (int, error) {
	return k.r.int(key, def, required)
}

// Float reads a number key (def when absent or null).
func (k KeyReader) Float(key string, def float64) (float64, error) { return k.r.float(key, def) }

// Bool reads a boolean key (def when absent or null).
func (k KeyReader) Bool(key string, def bool) (bool, error) { return k.r.bool(key, def) }

// String reads a string key (def when absent or null).
func (k KeyReader) String(key, def string) (string, error) { return k.r.str(key, def) }

// Strings reads a list of strings (nil when absent or null).
func (k KeyReader) Strings(key string) ([]string, error) { return k.r.strings(key) }

// Ints reads a list of integers (nil when absent or null).
func (k KeyReader) Ints(key string) ([]int, error) { return k.r.intList(key) }

// Has reports whether the key is present and not null.
func (k KeyReader) Has(key string) bool {
	v, ok := k.r.m[key]
	return ok && !isNull(v)
}

type keyReader struct {
	file   string
	prefix string
	m      map[string]json.RawMessage
}

func (k keyReader) errf(key string, err error, format string, args ...any) error {
	return &ConfigError{File: k.file, Key: k.prefix + key, Msg: fmt.Sprintf(format, args...), Err: err}
}

func (k keyReader) get(key string) (json.RawMessage, bool) {
	v, ok := k.m[key]
	if !ok || isNull(v) {
		return nil, false
	}
	return v, true
}

func (k keyReader) int(key string, def int, required bool) (int, error) {
	v, ok := k.get(key)
	if !ok {
		if required {
			return 0, k.errf(key, nil, "required key is missing")
		}
		return def, nil
	}
	var f float64
	if err := json.Unmarshal(v, &f); err != nil {
		return 0, k.errf(key, nil, "want an integer, got %s", short(v))
	}
	if f != math.Trunc(f) || math.Abs(f) > 1<<40 {
		return 0, k.errf(key, nil, "want an integer, got %s", short(v))
	}
	return int(f), nil
}

func (k keyReader) float(key string, def float64) (float64, error) {
	v, ok := k.get(key)
	if !ok {
		return def, nil
	}
	var f float64
	if err := json.Unmarshal(v, &f); err != nil {
		return 0, k.errf(key, nil, "want a number, got %s", short(v))
	}
	return f, nil
}

func (k keyReader) bool(key string, def bool) (bool, error) {
	v, ok := k.get(key)
	if !ok {
		return def, nil
	}
	var b bool
	if err := json.Unmarshal(v, &b); err != nil {
		return false, k.errf(key, nil, "want true or false, got %s", short(v))
	}
	return b, nil
}

func (k keyReader) str(key, def string) (string, error) {
	v, ok := k.get(key)
	if !ok {
		return def, nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", k.errf(key, nil, "want a string, got %s", short(v))
	}
	return s, nil
}

func (k keyReader) strings(key string) ([]string, error) {
	v, ok := k.get(key)
	if !ok {
		return nil, nil
	}
	var s []string
	if err := json.Unmarshal(v, &s); err != nil {
		return nil, k.errf(key, nil, "want a list of strings, got %s", short(v))
	}
	return s, nil
}

func (k keyReader) intList(key string) ([]int, error) {
	v, ok := k.get(key)
	if !ok {
		return nil, nil
	}
	var fs []float64
	if err := json.Unmarshal(v, &fs); err != nil {
		return nil, k.errf(key, nil, "want a list of integers, got %s", short(v))
	}
	out := make([]int, len(fs))
	for i, f := range fs {
		if f != math.Trunc(f) {
			return nil, k.errf(key, nil, "want a list of integers, got %s", short(v))
		}
		out[i] = int(f)
	}
	sort.Ints(out)
	return out, nil
}

// strictObject decodes a JSON object, rejecting trailing data.
func strictObject(raw []byte, dst *map[string]json.RawMessage) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(dst); err != nil {
		return err
	}
	if *dst == nil {
		return errors.New("null")
	}
	if dec.More() {
		return errors.New("trailing data after the object")
	}
	return nil
}

func isNull(v json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(v), []byte("null")) }

// short quotes a raw JSON value for an error message.
func short(v json.RawMessage) string {
	s := strings.TrimSpace(string(v))
	if len(s) > 40 {
		s = s[:37] + "..."
	}
	return s
}
