package verifier

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
	"github.com/ptqgate/ptqgate/reports"
)

// quantSource is one quantization config as found on disk.
type quantSource struct {
	// file is "config.json" or "hf_quant_config.json".
	file string
	// nested is the hf_quant_config.json layout {"producer":…,"quantization":{…}}.
	nested bool
	// top is the whole object (config.json's quantization_config, or the
	// file's top level); q is the dict holding quant_algo (top itself when
	// flat, top["quantization"] when nested; nil if that is not a dict).
	top map[string]any
	q   map[string]any
}

// has reports whether key is present in q.
func (s *quantSource) has(key string) bool { _, ok := s.q[key]; return ok }

// str returns q[key] as a string ("" when absent, null or not a string).
func (s *quantSource) str(key string) string {
	v, _ := s.q[key].(string)
	return v
}

// algo returns the raw quant_algo ("" when absent or null).
func (s *quantSource) algo() string { return s.str("quant_algo") }

// configs holds what the folder says about the model and its quantization.
type configs struct {
	// model is config.json's top level; text is text_config when present,
	// else the top level.
	model map[string]any
	text  map[string]any
	// inConfig is config.json's quantization_config (or
	// text_config.quantization_config); inFile is hf_quant_config.json.
	inConfig, inFile *quantSource
	// quantFiles lists every *hf_quant_config.json in the folder.
	quantFiles []string
}

// loadConfigs reads config.json and the quantization configs. Problems are
// findings; ok is false when config.json is unusable (verification stops).
func (v *run) loadConfigs(dir string) (*configs, bool) {
	cfg := &configs{}
	path := filepath.Join(dir, safetensors.ConfigFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		v.addAny("config.json", reports.SeverityError, "", "", fmt.Sprintf("cannot read %s: %v", safetensors.ConfigFile, err), "both engines refuse a checkpoint without config.json")
		return cfg, false
	}
	if err := json.Unmarshal(raw, &cfg.model); err != nil || cfg.model == nil {
		msg := "is not a JSON object"
		if err != nil {
			msg = "is not valid JSON: " + err.Error()
		}
		v.addAny("config.json", reports.SeverityError, "", "", fmt.Sprintf("%s %s", safetensors.ConfigFile, msg), "both engines fail to parse the model config")
		return cfg, false
	}
	cfg.text = cfg.model
	if tc, ok := cfg.model["text_config"].(map[string]any); ok {
		cfg.text = tc
	}
	if qc, ok := cfg.model["quantization_config"]; ok && qc != nil {
		cfg.inConfig = newQuantSource("config.json", qc)
	} else if tq, ok := cfg.text["quantization_config"]; ok && tq != nil && cfg.text != nil {
		cfg.inConfig = newQuantSource("config.json", tq)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), safetensors.QuantConfigFile) {
			cfg.quantFiles = append(cfg.quantFiles, e.Name())
		}
	}
	sort.Strings(cfg.quantFiles)
	qpath := filepath.Join(dir, safetensors.QuantConfigFile)
	if raw, err := os.ReadFile(qpath); err == nil {
		var top any
		if err := json.Unmarshal(raw, &top); err != nil {
			v.addAny("config.invalid", reports.SeverityError, "", "", fmt.Sprintf("%s is not valid JSON: %v", safetensors.QuantConfigFile, err), "both engines fail to parse the file when they read it")
		} else {
			cfg.inFile = newQuantSource(safetensors.QuantConfigFile, top)
		}
	}
	return cfg, true
}

// newQuantSource classifies a quantization config object.
func newQuantSource(file string, v any) *quantSource {
	m, _ := v.(map[string]any)
	s := &quantSource{file: file, top: m}
	if m == nil {
		return s
	}
	if qv, ok := m["quantization"]; ok {
		s.nested = true
		s.q, _ = qv.(map[string]any)
		return s
	}
	s.q = m
	return s
}

// jsonInt reads a non-negative integer value (JSON numbers decode as
// float64; integer-valued only).
func jsonInt(v any) (int, bool) {
	switch x := v.(type) {
	case float64:
		if x >= 0 && x == math.Trunc(x) && x < 1<<40 {
			return int(x), true
		}
	case json.Number:
		n, err := x.Int64()
		if err == nil && n >= 0 {
			return int(n), true
		}
	}
	return 0, false
}

// intCastable reports whether v is an int or an int-castable string (what
// vLLM's group_size parsing accepts).
func intCastable(v any) (int, bool) {
	if n, ok := jsonInt(v); ok {
		return n, true
	}
	if s, ok := v.(string); ok {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err == nil {
			return n, true
		}
	}
	return 0, false
}

// stringList converts a JSON array of strings; ok is false for anything
// else (null gives nil, true).
func stringList(v any) ([]string, bool) {
	if v == nil {
		return nil, true
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(arr))
	for _, x := range arr {
		s, ok := x.(string)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

// typeName names a JSON value's type the way Python would print it.
func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "<class 'NoneType'>"
	case string:
		return "<class 'str'>"
	case float64, json.Number:
		return "<class 'int'>"
	case bool:
		return "<class 'bool'>"
	case []any:
		return "<class 'list'>"
	case map[string]any:
		return "<class 'dict'>"
	}
	return fmt.Sprintf("%T", v)
}

// Algorithms ptqgate has tensor census tables for.
const (
	algoFP8    = "FP8"
	algoNVFP4  = "NVFP4"
	algoW4A16  = "W4A16_NVFP4"
	algoMixed  = "MIXED_PRECISION"
	kvAlgoFP8  = "FP8"
	kvAlgoNVF4 = "NVFP4"
)

// censusAlgos are the module algos whose tensor sets ptqgate checks.
var censusAlgos = map[string]bool{algoFP8: true, algoNVFP4: true, algoW4A16: true}

// engineConfig is the quantization config as one target resolves it.
type engineConfig struct {
	src *quantSource
	// algo is the quant_algo the target uses (upper-cased for vLLM).
	algo string
	// kvFP8 is true when the target auto-selects an FP8 KV cache.
	kvFP8  bool
	kvAlgo string
	// exclude are the exclusion entries the target reads.
	exclude    []string
	excludeKey string
	// groupSize is the NVFP4 group size the target uses.
	groupSize int
	// layers is MIXED_PRECISION's quantized_layers (module → algo).
	layers map[string]string
	// skip: the target cannot load this config at all (a config.quant-algo
	// or config.invalid finding was made); its other checks are skipped.
	skip bool
}

// flatKVScheme reads a kv_cache_scheme: a dict {"type":"float","num_bits":8}
// means FP8; SGLang FP4 configs also accept strings.
func flatKVScheme(v any, allowString bool) (algo string, present bool) {
	switch x := v.(type) {
	case nil:
		return "", false
	case map[string]any:
		typ, _ := x["type"].(string)
		bits, _ := jsonInt(x["num_bits"])
		if typ == "float" && bits == 8 {
			return kvAlgoFP8, true
		}
		if typ == "float" && bits == 4 {
			return kvAlgoNVF4, true
		}
		return "", true
	case string:
		if !allowString {
			return "", true
		}
		switch strings.ToUpper(x) {
		case "FP8", "FLOAT8":
			return kvAlgoFP8, true
		case "FP4", "FLOAT4", "NVFP4":
			return kvAlgoNVF4, true
		}
		return "auto", true
	}
	return "", true
}

// quantizedLayers parses a MIXED_PRECISION quantized_layers map.
func quantizedLayers(v any) map[string]string {
	m, ok := v.(map[string]any)
	if !ok {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, lv := range m {
		if lm, ok := lv.(map[string]any); ok {
			a, _ := lm["quant_algo"].(string)
			out[k] = strings.ToUpper(a)
		}
	}
	return out
}
