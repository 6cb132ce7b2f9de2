package export

import (
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ptqgate/ptqgate/ptqcore/calib"
	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
	"github.com/ptqgate/ptqgate/reports"
	"github.com/ptqgate/ptqgate/verifier"
	"github.com/ptqgate/ptqgate/verifier/contracts"
)

// constantAmaxRecipe is the calibration tests' constant-amax recipe: KV
// quantizers with use_constant_amax: true, NVFP4 expert inputs with
// constant_amax: 2688.0, calibrated NVFP4 expert weights, the rest disabled.
var constantAmaxRecipe = filepath.Join("..", "calib", "testdata", "constant_amax.yaml")

// TestExportConstantAmax (INTERFACES.md "Recipes"): use_constant_amax
// counts as calibrated but, as in the toolkit, exports no scale: no
// k_proj.k_scale / v_proj.v_scale, one info finding per KV quantizer.
// constant_amax exports the scale it implies: 2688 under NVFP4 is an
// input_scale of exactly 1.0. verify then finds no error on any target and
// warns once per target that the FP8 KV cache runs without scales
// (kv.missing: the engines use 1.0, specs/vllm.md §5, specs/sglang.md §5).
func TestExportConstantAmax(t *testing.T) {
	for _, fixture := range []string{"qwen3-moe-tiny", "qwen3_5-moe-tiny"} {
		t.Run(fixture, func(t *testing.T) {
			res := calibrate(t, writeFixture(t, fixture, nil), constantAmaxRecipe, calib.Options{})
			out := filepath.Join(t.TempDir(), "out")
			r, err := Export(FromCalibration(res), res.Report, Options{Out: out})
			if err != nil {
				t.Fatalf("export: %v", err)
			}
			if r.QuantAlgo != "NVFP4" || r.KVCacheQuantAlgo != "FP8" {
				t.Errorf("quant_algo %q kv %q, want NVFP4 FP8", r.QuantAlgo, r.KVCacheQuantAlgo)
			}
			ck, err := safetensors.OpenCheckpoint(out)
			if err != nil {
				t.Fatal(err)
			}
			defer ck.Close()

			// KV: no scale tensor at all, one info per KV quantizer.
			for _, n := range ck.Names() {
				if _, _, ok := contracts.KVScaleName(n); ok {
					t.Errorf("%s exported for a use_constant_amax KV quantizer", n)
				}
			}
			checkKV(t, ck, res, false)
			noted := map[string]bool{}
			for _, f := range r.Findings {
				if f.Severity == reports.SeverityError {
					t.Errorf("error finding %+v", f)
				}
				if f.Rule == RuleConstantAmax {
					if f.Severity != reports.SeverityInfo || !strings.HasSuffix(f.Module, ".self_attn") {
						t.Errorf("constant-amax finding %+v", f)
					}
					noted[strings.Fields(f.Message)[0]] = true
				}
			}
			attn := 0
			for _, q := range res.Quantizers {
				if strings.HasSuffix(q.Name, "_bmm_quantizer") && q.Config.Enable {
					attn++
					if !noted[q.Name] {
						t.Errorf("no %s finding for %s", RuleConstantAmax, q.Name)
					}
				}
			}
			if attn == 0 || len(noted) != attn {
				t.Errorf("%d %s findings for %d enabled KV quantizers", len(noted), RuleConstantAmax, attn)
			}
			rep, err := reports.ReadFile(filepath.Join(out, ReportFile))
			if err != nil {
				t.Fatal(err)
			}
			inReport := 0
			for _, f := range rep.Findings {
				if f.Rule == RuleConstantAmax {
					inReport++
				}
			}
			if inReport != attn {
				t.Errorf("ptqgate_report.json holds %d %s findings, want %d", inReport, RuleConstantAmax, attn)
			}

			// Expert inputs: constant_amax 2688 → input_scale exactly 1.0,
			// for every projection of every expert; no other input_scale.
			want := 0
			for _, b := range res.Model.MoEBlocks() {
				ex := b.Experts
				for e := 0; e < ex.NumExperts; e++ {
					for _, proj := range []string{projGate, projUp, projDown} {
						want++
						name := ex.Name + "." + strconv.Itoa(e) + "." + proj + ".input_scale"
						if got := scalar(t, ck, name); math.Float32bits(got) != math.Float32bits(1) {
							t.Errorf("%s = %v, want exactly 1.0", name, got)
						}
					}
				}
			}
			got := 0
			for _, n := range ck.Names() {
				if strings.HasSuffix(n, ".input_scale") {
					got++
				}
			}
			if want == 0 || got != want {
				t.Errorf("%d input_scale tensors, want %d (the experts' only)", got, want)
			}

			// verify: clean on every target; the absent KV scales are one
			// kv.missing warning per target and the only warnings.
			vr, err := verifier.Verify(out, verifier.Options{Targets: contracts.AllTargets(), Explicit: true})
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			if !vr.Clean() {
				t.Errorf("verify: %d errors, want none", vr.Summary.Errors)
			}
			missing := map[string]int{}
			for _, f := range vr.Findings {
				switch {
				case f.Rule == "kv.missing" && f.Severity == reports.SeverityWarning:
					missing[f.Target]++
				case f.Severity != reports.SeverityInfo:
					t.Errorf("verify: %s %s %s: %s", f.Severity, f.Rule, f.Target, f.Message)
				}
			}
			for _, tok := range contracts.KnownTokens() {
				if missing[tok] != 1 {
					t.Errorf("verify: %d kv.missing warnings for %s, want 1", missing[tok], tok)
				}
			}
		})
	}
}
