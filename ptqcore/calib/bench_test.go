package calib_test

import (
	"path/filepath"
	"testing"

	"github.com/ptqgate/ptqgate/fixtures"
	"github.com/ptqgate/ptqgate/ptqcore/backend/cpu"
	"github.com/ptqgate/ptqgate/ptqcore/calib"
	"github.com/ptqgate/ptqgate/ptqcore/model"
	"github.com/ptqgate/ptqgate/ptqcore/quant"
)

// benchOptions is a Qwen3-30B-A3B-like fixture scaled down for a CPU:
// 8 MoE layers, 64 experts, top-8, moe_intermediate/hidden = 0.375 (768/2048
// there), 2·hidden query width with 4× GQA (there 32 heads × 128 = 2·2048,
// 4 KV heads), bf16.
func benchOptions() fixtures.Options {
	return fixtures.Options{
		Architecture: fixtures.Qwen3MoE, Layers: 8, Experts: 64, TopK: 8,
		HiddenSize: 256, IntermediateSize: 768, MoEIntermediate: 96,
		Heads: 8, KVHeads: 2, HeadDim: 64, Vocab: 4096, MLPOnlyLayers: []int{},
		DType: fixtures.DTypeBF16, Layout: fixtures.LayoutFused, Seed: 7,
	}
}

// BenchmarkCalibrate measures CPU max calibration (preset
// fp8_default-fp8_kv: every Linear, expert and KV quantizer enabled) in
// tokens/s on 2 batches of 4 sequences × 128 tokens, in both expert modes.
func BenchmarkCalibrate(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "bench")
	if err := fixtures.Write(dir, benchOptions()); err != nil {
		b.Fatal(err)
	}
	m, err := model.Load(dir)
	if err != nil {
		b.Fatal(err)
	}
	batches := randomBatches(m.VocabSize(), 2, 4, 128)
	r, err := loadBenchRecipe()
	if err != nil {
		b.Fatal(err)
	}
	for _, mode := range []model.ExpertsMode{model.ExpertsGrouped, model.ExpertsEager} {
		b.Run(mode.String(), func(b *testing.B) {
			be := cpu.New()
			if err := m.Prepare(be); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			var forward float64
			for i := 0; i < b.N; i++ {
				res, err := calib.Run(m, be, r, batches, calib.Options{Experts: mode})
				if err != nil {
					b.Fatal(err)
				}
				forward += res.ForwardDuration.Seconds()
			}
			b.ReportMetric(float64(batches.Tokens()*b.N)/b.Elapsed().Seconds(), "tokens/s")
			b.ReportMetric(float64(batches.Tokens()*b.N)/forward, "forward-tokens/s")
		})
	}
}

// loadBenchRecipe is the FP8 preset with FP8 KV cache.
func loadBenchRecipe() (*quant.Recipe, error) { return quant.Load("fp8_default-fp8_kv") }
