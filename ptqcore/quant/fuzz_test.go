package quant

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad feeds arbitrary recipe files to Load and Apply: bad input must
// give an error, never a panic. The seeds run with every go test.
func FuzzLoad(f *testing.F) {
	for _, s := range []string{
		"quantize: 3", "quantize: {quant_cfg: 3}", "- a", "quantize: {quant_cfg: [[1]]}",
		"quantize: {algorithm: {method: [1]}, quant_cfg: []}", "quant_cfg: {nn.Linear: 3}",
		"quant_cfg: [{nn.Linear: {'*': 3}, x: 1}]", "imports: 3\nquantize: {quant_cfg: []}",
		"imports: {a: ''}\nquantize: {quant_cfg: [{$import: a}]}", "quant_cfg: [{quantizer_name: [x], enable: true}]",
		"quant_cfg: [{quantizer_name: x, cfg: {num_bits: e4m3, block_sizes: {-1: x}}}]",
		"quant_cfg: [{quantizer_name: x, cfg: {block_sizes: {scale_block_sizes: {a: 1}}}}]",
		"quant_cfg: [{quantizer_name: x, cfg: {num_bits: [1]}}]", "a: &x [*x]", "a: *y", "\x00\xff",
		"quant_cfg: [{quantizer_name: '[', enable: false}, {quantizer_name: '*', cfg: {num_bits: e4m3}}]",
		"quant_cfg:\n  default: {num_bits: e4m3}\n  '*[kv]_bmm_quantizer': {num_bits: e2m1, block_sizes: {-1: 16, type: dynamic, scale_bits: e4m3}}",
		"---\n---\n", "imports: {}\n---\n[]",
	} {
		f.Add(s)
	}
	mods := refModels[2].modules()
	f.Fuzz(func(t *testing.T, data string) {
		p := filepath.Join(t.TempDir(), "r.yaml")
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := Load(p)
		if err != nil {
			return
		}
		_, _ = r.Apply(Enumerate(mods), ApplyOptions{})
	})
}
