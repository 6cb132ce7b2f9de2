package model_test

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ptqgate/ptqgate/internal/refdata"
	"github.com/ptqgate/ptqgate/ptqcore/backend/cpu"
	"github.com/ptqgate/ptqgate/ptqcore/model"
	"github.com/ptqgate/ptqgate/ptqcore/numerics"
	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
)

// Tolerances of the reference READMEs (about 20× the float32 error observed
// there), per case.
type tolerances struct {
	logits, hidden, routerLogits, routingWeights float64
}

var caseTolerances = map[string]tolerances{
	// qwen3-moe-tiny/README.md: logits 5e-5, hidden 2e-5, routing weights 1e-5.
	"qwen3-moe-tiny": {logits: 5e-5, hidden: 2e-5, routerLogits: 5e-5, routingWeights: 1e-5},
	// qwen3-moe-dense-tiny/README.md: logits 5e-5, hidden 5e-5, routing weights 1e-5.
	"qwen3-moe-dense-tiny": {logits: 5e-5, hidden: 5e-5, routerLogits: 5e-5, routingWeights: 1e-5},
}

// fusedDir copies a case's model_fused.safetensors and config.json into a
// temporary folder as a checkpoint of its own.
func fusedDir(t *testing.T, name string) string {
	t.Helper()
	dir := t.TempDir()
	src := refdata.Dir(name)
	for from, to := range map[string]string{"model_fused.safetensors": "model.safetensors", "config.json": "config.json"} {
		copyFile(t, filepath.Join(src, from), filepath.Join(dir, to))
	}
	return dir
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// expected reads the reference tensors of a case.
type expected struct {
	f *safetensors.File
}

func openExpected(t *testing.T, name string) *expected {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(refdata.Dir(name), "expected.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &expected{f: f}
}

func (e *expected) has(name string) bool { _, ok := e.f.Tensor(name); return ok }

func (e *expected) floats(t *testing.T, name string) []float32 {
	t.Helper()
	info, ok := e.f.Tensor(name)
	if !ok {
		t.Fatalf("expected.safetensors has no %s", name)
	}
	raw, err := e.f.ReadTensor(name)
	if err != nil {
		t.Fatal(err)
	}
	v, err := numerics.DecodeFloats(string(info.DType), raw)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (e *expected) int32s(t *testing.T, name string) []int32 {
	t.Helper()
	raw, err := e.f.ReadTensor(name)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]int32, len(raw)/4)
	for i := range out {
		out[i] = int32(uint32(raw[4*i]) | uint32(raw[4*i+1])<<8 | uint32(raw[4*i+2])<<16 | uint32(raw[4*i+3])<<24)
	}
	return out
}

func batches(t *testing.T, name string) []model.Batch {
	t.Helper()
	c, err := refdata.LoadCalib(name)
	if err != nil {
		t.Fatal(err)
	}
	var out []model.Batch
	for _, b := range c.Batches {
		seqs := make([][]int32, len(b))
		for i, s := range b {
			for _, id := range s {
				seqs[i] = append(seqs[i], int32(id))
			}
		}
		out = append(out, model.NewBatch(seqs))
	}
	return out
}

// forward runs every batch of a case with the given options.
func forward(t *testing.T, dir string, mode model.ExpertsMode, bs []model.Batch) (*model.Model, []*model.Output) {
	t.Helper()
	m, err := model.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	be := cpu.New()
	if err := m.Prepare(be); err != nil {
		t.Fatal(err)
	}
	var outs []*model.Output
	for _, b := range bs {
		out, err := m.Forward(be, b, model.PassOptions{Experts: mode, Head: model.HeadLogits, Capture: true})
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, out)
	}
	return m, outs
}

// TestForwardMatchesReference runs both reference models from both expert
// layouts in both expert modes and compares logits (every batch), hidden
// states, router logits, top-k indices and routing weights (batch 0) with
// transformers, within the READMEs' tolerances; all four runs must agree
// bit for bit.
func TestForwardMatchesReference(t *testing.T) {
	for _, name := range []string{"qwen3-moe-tiny", "qwen3-moe-dense-tiny"} {
		tol := caseTolerances[name]
		exp := openExpected(t, name)
		bs := batches(t, name)
		var first []*model.Output
		for _, layout := range []string{"per-expert", "fused"} {
			dir := refdata.Dir(name)
			if layout == "fused" {
				dir = fusedDir(t, name)
			}
			for _, mode := range []model.ExpertsMode{model.ExpertsGrouped, model.ExpertsEager} {
				t.Run(fmt.Sprintf("%s/%s/%s", name, layout, mode), func(t *testing.T) {
					m, outs := forward(t, dir, mode, bs)
					for bi, out := range outs {
						check(t, fmt.Sprintf("logits.b%d", bi), out.Logits, exp.floats(t, fmt.Sprintf("logits.b%d", bi)), tol.logits, 0)
					}
					out := outs[0]
					for li := range m.Layers {
						check(t, fmt.Sprintf("hidden.layer%d", li), out.Hidden[li], exp.floats(t, fmt.Sprintf("hidden.layer%d", li)), tol.hidden, 0)
						key := fmt.Sprintf("router_logits.layer%d", li)
						if _, moe := m.Layers[li].FFN.(*model.MoE); moe != exp.has(key) {
							t.Fatalf("layer %d: MoE %v, reference has router logits %v", li, moe, exp.has(key))
						}
						if !exp.has(key) {
							continue
						}
						// Router logits reach ±170 for the deliberately dead expert:
						// absolute 5e-5 plus relative 1e-6.
						check(t, key, out.RouterLogits[li], exp.floats(t, key), tol.routerLogits, 1e-6)
						check(t, fmt.Sprintf("topk_weights.layer%d", li), out.TopKWeights[li], exp.floats(t, fmt.Sprintf("topk_weights.layer%d", li)), tol.routingWeights, 0)
						if want := exp.int32s(t, fmt.Sprintf("topk.layer%d", li)); !slices.Equal(out.TopK[li], want) {
							t.Errorf("topk.layer%d: %v, reference %v", li, out.TopK[li], want)
						}
					}
					if first == nil {
						first = outs
						return
					}
					for bi := range outs {
						if !slices.Equal(bits(outs[bi].Logits), bits(first[bi].Logits)) {
							t.Errorf("batch %d: logits differ bitwise from the per-expert grouped run", bi)
						}
					}
				})
			}
		}
	}
}

// check compares got with want elementwise: |got-want| ≤ abs + rel·|want|.
func check(t *testing.T, what string, got, want []float32, abs, rel float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d values, reference %d", what, len(got), len(want))
		return
	}
	worst, at := 0.0, -1
	for i := range got {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		lim := abs + rel*math.Abs(float64(want[i]))
		if !(d <= lim) && (at < 0 || d-lim > worst) {
			worst, at = d-lim, i
		}
	}
	if at >= 0 {
		t.Errorf("%s: element %d is %g, reference %g (tolerance %g abs + %g rel)", what, at, got[at], want[at], abs, rel)
	}
}

func bits(xs []float32) []uint32 {
	out := make([]uint32, len(xs))
	for i, v := range xs {
		out[i] = math.Float32bits(v)
	}
	return out
}
