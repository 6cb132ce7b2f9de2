package model_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/ptqgate/ptqgate/internal/refdata"
	"github.com/ptqgate/ptqgate/ptqcore/model"
	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
)

const qwen35Case = "qwen3_5-moe-tiny"

// qwen35Tol are the tolerances of testdata/hf/qwen3_5-moe-tiny/README.md:
// logits and hidden states abs 5e-5, routing weights abs 2e-5.
var qwen35Tol = tolerances{logits: 5e-5, hidden: 5e-5, routerLogits: 5e-5, routingWeights: 2e-5}

// textOnlyDir rewrites the VLM reference checkpoint in the layout of
// Qwen3_5MoeForCausalLM: text keys at the top level of config.json, text
// weights under model.*, no vision tower.
func textOnlyDir(t *testing.T) string {
	t.Helper()
	return rewrite(t, qwen35Case, func(s *safetensors.Source) bool {
		if strings.HasPrefix(s.Name, "model.visual.") {
			return false
		}
		s.Name = strings.Replace(s.Name, "model.language_model.", "model.", 1)
		return true
	}, func(c map[string]any) {
		text := c["text_config"].(map[string]any)
		for k := range c {
			delete(c, k)
		}
		for k, v := range text {
			c[k] = v
		}
		c["architectures"] = []string{"Qwen3_5MoeForCausalLM"}
		c["dtype"] = "float32"
	})
}

// TestQwen35ForwardMatchesReference runs the Qwen3.5-MoE reference from
// the VLM checkpoint (per-expert and fused expert layouts) and from the
// text-only layout, in both expert modes, and compares logits (every
// batch), hidden states, router logits, top-k indices and routing weights
// (batch 0) with transformers within the README's tolerances. Every run
// must agree bit for bit with the first.
func TestQwen35ForwardMatchesReference(t *testing.T) {
	exp := openExpected(t, qwen35Case)
	bs := batches(t, qwen35Case)
	var first []*model.Output
	worst := map[string]float64{}
	for _, layout := range []string{"vlm-per-expert", "vlm-fused", "text-only"} {
		var dir string
		switch layout {
		case "vlm-per-expert":
			dir = refdata.Dir(qwen35Case)
		case "vlm-fused":
			dir = fusedDir(t, qwen35Case)
		default:
			dir = textOnlyDir(t)
		}
		for _, mode := range []model.ExpertsMode{model.ExpertsGrouped, model.ExpertsEager} {
			t.Run(fmt.Sprintf("%s/%s", layout, mode), func(t *testing.T) {
				m, outs := forward(t, dir, mode, bs)
				if want := map[bool]string{true: "model", false: "model.language_model"}[layout == "text-only"]; m.Prefix != want {
					t.Errorf("prefix %q, want %q", m.Prefix, want)
				}
				for bi, out := range outs {
					name := fmt.Sprintf("logits.b%d", bi)
					want := exp.floats(t, name)
					check(t, name, out.Logits, want, qwen35Tol.logits, 0)
					worst["logits"] = max(worst["logits"], maxAbsDiff(out.Logits, want))
				}
				out := outs[0]
				if len(m.Layers) != 4 {
					t.Fatalf("%d layers, want 4", len(m.Layers))
				}
				for li := range m.Layers {
					name := fmt.Sprintf("hidden.layer%d", li)
					want := exp.floats(t, name)
					check(t, name, out.Hidden[li], want, qwen35Tol.hidden, 0)
					worst["hidden"] = max(worst["hidden"], maxAbsDiff(out.Hidden[li], want))
					name = fmt.Sprintf("router_logits.layer%d", li)
					want = exp.floats(t, name)
					check(t, name, out.RouterLogits[li], want, qwen35Tol.routerLogits, 0)
					worst["router"] = max(worst["router"], maxAbsDiff(out.RouterLogits[li], want))
					name = fmt.Sprintf("topk_weights.layer%d", li)
					want = exp.floats(t, name)
					check(t, name, out.TopKWeights[li], want, qwen35Tol.routingWeights, 0)
					worst["routing"] = max(worst["routing"], maxAbsDiff(out.TopKWeights[li], want))
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
						t.Errorf("batch %d: logits differ bitwise from the VLM per-expert grouped run", bi)
					}
				}
			})
		}
	}
	t.Logf("max abs error vs transformers: logits %.3g, hidden %.3g, router logits %.3g, routing weights %.3g",
		worst["logits"], worst["hidden"], worst["router"], worst["routing"])
}

func maxAbsDiff(a, b []float32) float64 {
	m := 0.0
	for i := range min(len(a), len(b)) {
		d := float64(a[i]) - float64(b[i])
		m = max(m, d, -d)
	}
	return m
}
