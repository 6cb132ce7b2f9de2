package verifier_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ptqgate/ptqgate/fixtures/catalogue"
	"github.com/ptqgate/ptqgate/reports"
	"github.com/ptqgate/ptqgate/verifier"
	"github.com/ptqgate/ptqgate/verifier/contracts"
)

// FuzzVerify mutates small checkpoints (config.json, hf_quant_config.json
// and model.safetensors bytes) and runs the whole verifier against every
// target with --tp 2: it must never panic, and every finding must carry a
// known rule, a valid severity and a canonical target. The seed corpus
// (clean tiny checkpoints of every format and model) runs in plain go
// test; crashers found by `go test -fuzz FuzzVerify` are kept under
// testdata/fuzz/FuzzVerify as regression inputs.
func FuzzVerify(f *testing.F) {
	seeds := []struct {
		format catalogue.Format
		opts   catalogue.Options
	}{
		{catalogue.FP8, catalogue.Options{KV: true}},
		{catalogue.NVFP4, catalogue.Options{}},
		{catalogue.W4A16NVFP4, catalogue.Options{Scope: catalogue.ScopeExperts}},
		{catalogue.NVFP4, catalogue.Options{Model: catalogue.Qwen35MoE, Scope: catalogue.ScopeMLP, KV: true}},
		{catalogue.FP8, catalogue.Options{Model: catalogue.Qwen35MoE, Scope: catalogue.ScopeAll}},
	}
	for _, s := range seeds {
		// Tiny shapes keep the inputs a few KB: the fuzzer mutates bytes
		// at random, and large inputs slow it to a crawl.
		s.opts.Experts, s.opts.Hidden, s.opts.Vocab, s.opts.MoEIntermediate = 2, 16, 8, 16
		dir := f.TempDir()
		if err := catalogue.Clean(s.format, dir, s.opts); err != nil {
			f.Fatal(err)
		}
		var files [3][]byte
		for i, n := range []string{"config.json", "hf_quant_config.json", "model.safetensors"} {
			b, err := os.ReadFile(filepath.Join(dir, n))
			if err != nil {
				f.Fatal(err)
			}
			files[i] = b
		}
		f.Add(files[0], files[1], files[2])
	}
	f.Fuzz(func(t *testing.T, config, quant, weights []byte) {
		dir := t.TempDir()
		for n, b := range map[string][]byte{"config.json": config, "hf_quant_config.json": quant, "model.safetensors": weights} {
			if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		r, err := verifier.Verify(dir, verifier.Options{Targets: contracts.AllTargets(), Explicit: true, TP: 2})
		if err != nil {
			if !verifier.IsUnsupported(err) {
				t.Fatalf("Verify returned an error other than UnsupportedError: %v", err)
			}
			return
		}
		for _, fd := range r.Findings {
			if _, ok := contracts.LookupRule(fd.Rule); !ok {
				t.Errorf("unknown rule %q", fd.Rule)
			}
			switch fd.Severity {
			case reports.SeverityError, reports.SeverityWarning, reports.SeverityInfo:
			default:
				t.Errorf("severity %q", fd.Severity)
			}
			if fd.Target != reports.TargetAny {
				if tt, err := contracts.ParseTarget(fd.Target); err != nil || tt.Token() != fd.Target {
					t.Errorf("target %q", fd.Target)
				}
			}
		}
	})
}
