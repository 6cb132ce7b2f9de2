package export_test

import (
	"math"
	"path"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/ptqgate/ptqgate/fixtures"
	"github.com/ptqgate/ptqgate/ptqcore/calib"
	"github.com/ptqgate/ptqgate/ptqcore/export"
	"github.com/ptqgate/ptqgate/ptqcore/numerics"
	"github.com/ptqgate/ptqgate/reports"
	"github.com/ptqgate/ptqgate/suites/internal/framework"
)

// scaleTolerance is the relative tolerance of a float32 scale against the
// exact quotient: the exporter computes in float32 (amax · float32(1/448)
// as torch does on CUDA), within two float32 ulps of the exact value.
const scaleTolerance = 2.5e-7

// quantAlgo maps a weight format to hf_quant_config.json's quant_algo.
func quantAlgo(format string, inputs bool) string {
	switch {
	case format == "fp8":
		return "FP8"
	case inputs:
		return "NVFP4"
	}
	return "W4A16_NVFP4"
}

// isLinearWeight reports whether a source tensor is the weight of a Linear
// module (2-D, not the embeddings).
func isLinearWeight(name string, t tensor) bool {
	return strings.HasSuffix(name, ".weight") && len(t.Shape) == 2 && !strings.HasSuffix(name, "embed_tokens.weight")
}

// excludes reports whether an exclusion entry (fnmatch wildcard, as
// ModelOpt writes them) matches a module name.
func excludes(entries []string, module string) bool {
	for _, e := range entries {
		if ok, _ := path.Match(e, module); ok {
			return true
		}
	}
	return false
}

// stringList converts a decoded JSON array of strings.
func stringList(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

var _ = Describe("Export of a calibrated model", func() {
	DescribeTableSubtree("preset on fixture",
		func(fixture, dtype, preset string) {
			var (
				src, out string
				p        *plan
				source   *checkpoint
				exported *checkpoint
				result   *export.Result
			)

			BeforeEach(func() {
				src = framework.Fixture(fixture, func(o *fixtures.Options) { o.DType = dtype })
				res, err := framework.Calibrate(src, preset, framework.CalibFor(fixture), calib.Options{})
				Expect(err).NotTo(HaveOccurred())
				p = planOf(res.Report)
				Expect(p.Modules).NotTo(BeEmpty(), "%s quantizes nothing", preset)
				out = filepath.Join(framework.TempDir(), "export")
				result, err = framework.Export(res, out, export.Options{})
				Expect(err).NotTo(HaveOccurred())
				source, exported = readCheckpoint(src), readCheckpoint(out)
			})

			It("writes config.json, hf_quant_config.json, the safetensors and ptqgate_report.json", func() {
				Expect(result.Files).To(ContainElements("config.json", "hf_quant_config.json", "model.safetensors", "ptqgate_report.json"))
				rep, err := reports.ReadFile(filepath.Join(out, "ptqgate_report.json"))
				Expect(err).NotTo(HaveOccurred())
				Expect(rep.Kind).To(Equal(reports.KindExport))
				Expect(rep.Run).To(BeNil(), "the report inside an export omits the volatile run section")
				Expect(rep).To(framework.BeClean())
			})

			It("writes exactly the source tensors plus each quantized module's scales and the KV scales", func() {
				want := map[string]bool{}
				for _, n := range source.Names() {
					want[n] = true
				}
				for m, q := range p.Modules {
					w := source.Tensor(m + ".weight")
					for suffix := range scaleTensors(q, w.Shape[0], w.Shape[1]) {
						want[m+suffix] = true
					}
				}
				for n := range p.KV {
					want[n] = true
				}
				var names []string
				for n := range want {
					names = append(names, n)
				}
				Expect(exported.Names()).To(ConsistOf(names))
			})

			It("stores every quantized tensor with its format's dtype and shape", func() {
				for m, q := range p.Modules {
					w := source.Tensor(m + ".weight")
					for suffix, want := range scaleTensors(q, w.Shape[0], w.Shape[1]) {
						got := exported.Tensor(m + suffix)
						Expect(got.DType).To(Equal(want.DType), m+suffix)
						Expect(got.Shape).To(Equal(want.Shape), m+suffix)
					}
				}
				for n := range p.KV {
					Expect(exported.Tensor(n).Shape).To(BeEmpty(), "%s is a 0-d scalar", n)
				}
			})

			It("derives every weight, input and KV scale from the calibrated amax (specs/modelopt.md §4.3, §4.4)", func() {
				for m, q := range p.Modules {
					w, in := p.unified(q)
					switch q.Format {
					case "fp8":
						Expect(float64(exported.Tensor(m+".weight_scale").Scalar())).To(framework.BeWithinRel(w/e4m3Max, scaleTolerance), m+".weight_scale = amax/448")
						if !math.IsNaN(in) {
							Expect(float64(exported.Tensor(m+".input_scale").Scalar())).To(framework.BeWithinRel(in/e4m3Max, scaleTolerance), m+".input_scale = amax/448")
						}
					case "nvfp4":
						Expect(float64(exported.Tensor(m+".weight_scale_2").Scalar())).To(framework.BeWithinRel(w/(e2m1Max*e4m3Max), scaleTolerance), m+".weight_scale_2 = amax/2688")
						if !math.IsNaN(in) {
							Expect(float64(exported.Tensor(m+".input_scale").Scalar())).To(framework.BeWithinRel(in/(e2m1Max*e4m3Max), scaleTolerance), m+".input_scale = amax/2688")
						}
					}
				}
				for n, a := range p.KV {
					Expect(float64(exported.Tensor(n).Scalar())).To(framework.BeWithinRel(a/e4m3Max, scaleTolerance), n+" = amax/448")
				}
			})

			It("gives every expert of a layer the same input_scale, and each expert's gate and up the same weight scale", func() {
				for m, q := range p.Modules {
					if !strings.Contains(m, ".mlp.experts.") {
						continue
					}
					container := m[:strings.Index(m, ".mlp.experts.")+len(".mlp.experts")]
					leaf := m[strings.LastIndex(m, ".")+1:]
					if !math.IsNaN(q.InputAmax) {
						Expect(exported.Tensor(m + ".input_scale").Data).To(Equal(exported.Tensor(container + ".0." + leaf + ".input_scale").Data))
					}
					if leaf == "gate_proj" {
						up := strings.TrimSuffix(m, "gate_proj") + "up_proj"
						scale := ".weight_scale"
						if q.Format == "nvfp4" {
							scale = ".weight_scale_2"
						}
						Expect(exported.Tensor(m+scale).Data).To(Equal(exported.Tensor(up+scale).Data), "%s and its up_proj", m)
					}
				}
			})

			It("quantizes every weight to exactly the codes the format's formula gives", func() {
				for m, q := range p.Modules {
					src := source.Tensor(m + ".weight")
					w := src.Floats()
					rows, cols := int(src.Shape[0]), int(src.Shape[1])
					got := exported.Tensor(m + ".weight").Data
					switch q.Format {
					case "fp8":
						scale := exported.Tensor(m + ".weight_scale").Scalar()
						div := scale
						if src.DType == "BF16" {
							div = numerics.RoundBF16(scale)
						}
						mismatches := 0
						for i, v := range w {
							x := v / div
							if src.DType == "BF16" {
								x = numerics.RoundBF16(x)
							}
							if numerics.F32ToE4M3(x) != got[i] {
								mismatches++
							}
						}
						Expect(mismatches).To(BeZero(), "%s: %d of %d FP8 codes differ from e4m3(w / weight_scale)", m, mismatches, len(w))
					case "nvfp4":
						scale2 := exported.Tensor(m + ".weight_scale_2").Scalar()
						blocks := exported.Tensor(m + ".weight_scale").Data
						padded := (cols + nvfp4Group - 1) / nvfp4Group * nvfp4Group
						nb := padded / nvfp4Group
						codes := numerics.UnpackE2M1(got, rows*padded)
						var badScales, badCodes int
						for r := range rows {
							for b := range nb {
								var amax float32
								for c := b * nvfp4Group; c < min((b+1)*nvfp4Group, cols); c++ {
									amax = max(amax, float32(math.Abs(float64(w[r*cols+c]))))
								}
								s := amax / (float32(e2m1Max) * scale2)
								if s == 0 {
									s = 1
								}
								s = min(max(s, 1.0/512), e4m3Max)
								if numerics.F32ToE4M3(s) != blocks[r*nb+b] {
									badScales++
								}
								div := numerics.E4M3ToF32(blocks[r*nb+b]) * scale2
								for c := b * nvfp4Group; c < (b+1)*nvfp4Group; c++ {
									var v float32
									if c < cols {
										v = w[r*cols+c]
									}
									if castE2M1(v/div) != codes[r*padded+c] {
										badCodes++
									}
								}
							}
						}
						Expect(badScales).To(BeZero(), "%s: %d of %d block scales differ from e4m3(clamp(block_amax / (6·weight_scale_2), 2^-9, 448))", m, badScales, rows*nb)
						Expect(badCodes).To(BeZero(), "%s: %d of %d E2M1 codes differ from cast_fp4(w / (block_scale·weight_scale_2))", m, badCodes, rows*padded)
					}
				}
			})

			It("copies every unquantized tensor, in bf16", func() {
				for _, n := range source.Names() {
					if _, quant := p.Modules[strings.TrimSuffix(n, ".weight")]; quant && strings.HasSuffix(n, ".weight") {
						continue
					}
					s, e := source.Tensor(n), exported.Tensor(n)
					Expect(e.Shape).To(Equal(s.Shape), n)
					switch s.DType {
					case "BF16":
						Expect(e.DType).To(Equal("BF16"), n)
						Expect(e.Data).To(Equal(s.Data), "%s is copied byte for byte", n)
					case "F32":
						Expect(e.DType).To(Equal("BF16"), "%s: f32 becomes bf16 with --dtype auto", n)
						want := s.Floats()
						for i := range want {
							want[i] = numerics.RoundBF16(want[i])
						}
						Expect(e.Floats()).To(Equal(want), n)
					default:
						Fail("unexpected source dtype " + s.DType + " of " + n)
					}
				}
			})

			It("declares the format the engines key on and excludes exactly the unquantized Linears", func() {
				hf := readJSON(out, "hf_quant_config.json")
				Expect(hf["producer"]).To(Equal(map[string]any{"name": "modelopt", "version": "0.47.0"}))
				qc := hf["quantization"].(map[string]any)
				var format string
				inputs := false
				for _, q := range p.Modules {
					format = q.Format
					inputs = inputs || !math.IsNaN(q.InputAmax)
				}
				Expect(qc["quant_algo"]).To(Equal(quantAlgo(format, inputs)))
				if len(p.KV) > 0 {
					Expect(qc["kv_cache_quant_algo"]).To(Equal("FP8"))
				} else {
					Expect(qc["kv_cache_quant_algo"]).To(BeNil())
				}
				if format == "nvfp4" {
					Expect(qc["group_size"]).To(BeEquivalentTo(nvfp4Group))
				}
				exclude := stringList(qc["exclude_modules"])
				for _, n := range source.Names() {
					if !isLinearWeight(n, source.Tensor(n)) {
						continue
					}
					m := strings.TrimSuffix(n, ".weight")
					_, quant := p.Modules[m]
					Expect(excludes(exclude, m)).To(Equal(!quant), "%s (quantized: %v) against exclude_modules %v", m, quant, exclude)
				}

				cfg := readJSON(out, "config.json")["quantization_config"].(map[string]any)
				Expect(cfg["quant_method"]).To(Equal("modelopt"))
				Expect(cfg["quant_algo"]).To(Equal(qc["quant_algo"]))
				Expect(cfg["producer"]).To(Equal(hf["producer"]))
				Expect(stringList(cfg["ignore"])).To(Equal(exclude))
				if len(p.KV) > 0 {
					Expect(cfg["kv_cache_scheme"]).To(Equal(map[string]any{"dynamic": false, "num_bits": float64(8), "type": "float"}))
				}
			})

			It("names ptqgate as the producer of the safetensors", func() {
				Expect(exported.Metadata).To(HaveKeyWithValue("producer", HavePrefix("ptqgate ")))
				Expect(exported.Metadata).To(HaveKeyWithValue("format", "pt"))
			})

			It("declares bfloat16 as the model dtype in config.json whatever the source dtype (--dtype auto)", func() {
				cfg := readJSON(out, "config.json")
				dt := cfg["dtype"]
				if dt == nil {
					dt = cfg["torch_dtype"]
				}
				Expect(dt).To(Equal("bfloat16"))
			})

			It("verifies clean for vLLM and SGLang", func() {
				rep, err := framework.Verify(out, nil, 0)
				Expect(err).NotTo(HaveOccurred())
				Expect(rep).To(framework.BeClean())
			})
		},
		Entry(nil, framework.Qwen3MoETiny, fixtures.DTypeBF16, "nvfp4_experts_only-fp8_kv"),
		Entry(nil, framework.Qwen3MoETiny, fixtures.DTypeBF16, "fp8_default-fp8_kv"),
		Entry(nil, framework.Qwen3MoETiny, fixtures.DTypeF32, "nvfp4_default-fp8_kv"),
		Entry(nil, framework.Qwen3MoETiny, fixtures.DTypeF32, "fp8_default"),
		Entry(nil, framework.Qwen3MoETiny, fixtures.DTypeBF16, "w4a16_nvfp4"),
		Entry(nil, framework.Qwen3MoEDenseTiny, fixtures.DTypeBF16, "nvfp4_mlp_only-fp8_kv"),
		Entry(nil, Label("qwen3_5"), framework.Qwen35MoETiny, fixtures.DTypeBF16, "nvfp4_experts_only-fp8_kv"),
		Entry(nil, Label("qwen3_5"), framework.Qwen35MoETiny, fixtures.DTypeBF16, "nvfp4_default-fp8_kv"),
		Entry(nil, Label("qwen3_5"), framework.Qwen35MoETiny, fixtures.DTypeBF16, "fp8_default-fp8_kv"),
	)
})
