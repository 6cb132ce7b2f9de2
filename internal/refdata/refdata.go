// Package refdata locates and decodes the Hugging Face reference data under
// testdata/hf (calibration batches, amax per quantizer, hook counts). The
// data is external truth produced by transformers; tests match it.
package refdata

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
)

// Cases are the reference models under testdata/hf.
var Cases = []string{"qwen3-moe-tiny", "qwen3-moe-dense-tiny", "qwen3_5-moe-tiny"}

// RepoRoot returns the repository root (the folder holding go.mod).
func RepoRoot() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("refdata: cannot locate source file")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Dir returns testdata/hf/<name> inside the repository.
func Dir(name string) string { return filepath.Join(RepoRoot(), "testdata", "hf", name) }

// SharedDir returns ../shared/testdata/hf beside the repository, or "" when
// that folder does not exist (CI clones have nothing beside them).
func SharedDir() string {
	d := filepath.Join(RepoRoot(), "..", "shared", "testdata", "hf")
	if st, err := os.Stat(d); err == nil && st.IsDir() {
		return d
	}
	return ""
}

// Calib is a calibration file: token-id batches [batch][sequence][position].
type Calib struct {
	Batches [][][]int `json:"batches"`
}

// Amax is amax.json: ModelOpt-style max calibration results.
type Amax struct {
	DType                string             `json:"dtype"`
	Amax                 map[string]float64 `json:"amax"`
	AmaxPerExpertInput   map[string]float64 `json:"amax_per_expert_input"`
	ExpertsWithoutTokens map[string][]int   `json:"experts_without_tokens"`
	DisabledByDefault    []string           `json:"disabled_in_modelopt_default_cfg"`
	DefaultDisabled      []string           `json:"modelopt_default_disabled_patterns"`
}

// Counts is counts.json: per-expert F.linear hook calls per experts mode.
type Counts struct {
	Calibration struct {
		Batches        int `json:"batches"`
		BatchSize      int `json:"batch_size"`
		SeqLen         int `json:"seq_len"`
		TokensPerBatch int `json:"tokens_per_batch"`
	} `json:"calibration"`
	Eager     CountsMode `json:"eager"`
	GroupedMM CountsMode `json:"grouped_mm"`
	BatchedMM CountsMode `json:"batched_mm"`
	Default   CountsMode `json:"default"`
}

// CountsMode is one experts-implementation section of counts.json.
type CountsMode struct {
	PerLayer                   map[string]CountsLayer `json:"per_layer"`
	TotalPerExpertFLinearCalls int                    `json:"total_per_expert_F_linear_calls"`
}

// CountsLayer is the accounting of one experts module.
type CountsLayer struct {
	Layer                 int     `json:"layer"`
	NumExperts            int     `json:"num_experts"`
	TopK                  int     `json:"top_k"`
	GateUpLinearCalls     []int   `json:"gate_up_linear_calls"`
	DownLinearCalls       []int   `json:"down_linear_calls"`
	TokensRouted          []int   `json:"tokens_routed"`
	TokensRoutedPerBatch  [][]int `json:"tokens_routed_per_batch"`
	GateUpLinearInputRows []int   `json:"gate_up_linear_input_rows"`
	DownLinearInputRows   []int   `json:"down_linear_input_rows"`
	ExpertsWithZeroTokens []int   `json:"experts_with_zero_tokens"`
}

// LoadCalib reads <case>/calib.json.
func LoadCalib(name string) (*Calib, error) {
	var c Calib
	return &c, load(name, "calib.json", &c)
}

// LoadAmax reads <case>/amax.json.
func LoadAmax(name string) (*Amax, error) {
	var a Amax
	return &a, load(name, "amax.json", &a)
}

// LoadCounts reads <case>/counts.json.
func LoadCounts(name string) (*Counts, error) {
	var c Counts
	return &c, load(name, "counts.json", &c)
}

func load(name, file string, v any) error {
	p := filepath.Join(Dir(name), file)
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	return nil
}
