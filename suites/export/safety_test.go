package export_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/ptqgate/ptqgate/fixtures"
	"github.com/ptqgate/ptqgate/internal/cli"
	"github.com/ptqgate/ptqgate/ptqcore/calib"
	"github.com/ptqgate/ptqgate/ptqcore/export"
	"github.com/ptqgate/ptqgate/suites/internal/framework"
)

var _ = Describe("Export guarantees", func() {
	const preset = "nvfp4_experts_only-fp8_kv"
	var src string

	calibrated := func(dir string) *calib.Result {
		GinkgoHelper()
		res, err := framework.Calibrate(dir, preset, framework.CalibFor(framework.Qwen3MoETiny), calib.Options{})
		Expect(err).NotTo(HaveOccurred())
		return res
	}
	exportTo := func(dir, out string, opt export.Options) error {
		GinkgoHelper()
		_, err := framework.Export(calibrated(dir), out, opt)
		return err
	}

	BeforeEach(func() {
		src = framework.Fixture(framework.Qwen3MoETiny)
	})

	It("writes byte-identical files when run twice on the same input", func() {
		a, b := filepath.Join(framework.TempDir(), "a"), filepath.Join(framework.TempDir(), "b")
		Expect(exportTo(src, a, export.Options{})).To(Succeed())
		Expect(exportTo(src, b, export.Options{})).To(Succeed())
		Expect(folderBytes(b)).To(Equal(folderBytes(a)))
	})

	It("exports the fused expert layout to the same tensors as the per-expert layout", func() {
		fused := framework.Fixture(framework.Qwen3MoETiny, func(o *fixtures.Options) { o.Layout = fixtures.LayoutFused })
		a, b := filepath.Join(framework.TempDir(), "per-expert"), filepath.Join(framework.TempDir(), "fused")
		Expect(exportTo(src, a, export.Options{})).To(Succeed())
		Expect(exportTo(fused, b, export.Options{})).To(Succeed())
		fa, fb := folderBytes(a), folderBytes(b)
		for _, f := range []string{"model.safetensors", "hf_quant_config.json", "config.json"} {
			Expect(fb[f] == fa[f]).To(BeTrue(), "%s differs between the layouts", f)
		}
	})

	It("never modifies the source checkpoint", func() {
		before := folderBytes(src)
		Expect(exportTo(src, filepath.Join(framework.TempDir(), "out"), export.Options{})).To(Succeed())
		Expect(folderBytes(src)).To(Equal(before))
	})

	It("refuses an existing --out without --force (exit 2) and leaves it untouched", func() {
		out := framework.TempDir()
		Expect(os.WriteFile(filepath.Join(out, "keep.txt"), []byte("mine"), 0o644)).To(Succeed())
		err := exportTo(src, out, export.Options{})
		var ue *export.UsageError
		Expect(errors.As(err, &ue)).To(BeTrue(), "got %v", err)
		Expect(cli.ExitCodeOf(err)).To(Equal(cli.ExitUsage))
		Expect(folderBytes(out)).To(Equal(map[string]string{"keep.txt": "mine"}))

		By("replacing it with --force")
		Expect(exportTo(src, out, export.Options{Force: true})).To(Succeed())
		Expect(filepath.Join(out, "keep.txt")).NotTo(BeAnExistingFile())
		Expect(filepath.Join(out, "model.safetensors")).To(BeAnExistingFile())
	})

	It("refuses an --out inside the source checkpoint", func() {
		err := export.CheckOut(filepath.Join(src, "quantized"), false, src)
		Expect(cli.ExitCodeOf(err)).To(Equal(cli.ExitUsage))
		Expect(export.CheckOut(src, true, src)).To(HaveOccurred())
	})

	It("shards large exports with an index that names, for every tensor, the shard holding it", func() {
		out := filepath.Join(framework.TempDir(), "sharded")
		Expect(exportTo(src, out, export.Options{MaxShardSize: 64 << 10})).To(Succeed())
		raw, err := os.ReadFile(filepath.Join(out, "model.safetensors.index.json"))
		Expect(err).NotTo(HaveOccurred())
		var index struct {
			WeightMap map[string]string `json:"weight_map"`
		}
		Expect(json.Unmarshal(raw, &index)).To(Succeed())
		ck := readCheckpoint(out)
		Expect(len(ck.Files)).To(BeNumerically(">", 1))
		Expect(index.WeightMap).To(HaveLen(len(ck.Tensors)))
		for name, file := range index.WeightMap {
			Expect(file).To(MatchRegexp(`^model-\d{5}-of-\d{5}\.safetensors$`))
			Expect(ck.Tensors).To(HaveKey(name))
		}
		single := filepath.Join(framework.TempDir(), "single")
		Expect(exportTo(src, single, export.Options{MaxShardSize: -1})).To(Succeed())
		one := readCheckpoint(single)
		for name, t := range one.Tensors {
			Expect(ck.Tensors[name].Data).To(Equal(t.Data), "%s differs between sharded and single-file exports", name)
		}
	})

	It("writes unquantized tensors as float16 with --dtype f16", func() {
		out := filepath.Join(framework.TempDir(), "f16")
		Expect(exportTo(src, out, export.Options{DType: export.DTypeF16})).To(Succeed())
		ck := readCheckpoint(out)
		Expect(ck.Tensor("model.norm.weight").DType).To(Equal("F16"))
		Expect(ck.Tensor("lm_head.weight").DType).To(Equal("F16"))
		Expect(ck.Tensor("model.layers.0.mlp.experts.0.gate_proj.weight").DType).To(Equal("U8"))
	})

	It("refuses to export an uncalibrated quantizer unless told to, and then omits its scale as the toolkit did", func() {
		res, err := framework.Calibrate(src, preset, framework.CalibFor(framework.Qwen3MoETiny), calib.Options{Faults: calib.Faults{HookBypass: true}, AllowUncalibrated: true})
		Expect(err).NotTo(HaveOccurred())
		_, err = framework.Export(res, filepath.Join(framework.TempDir(), "refused"), export.Options{})
		var ue *export.UncalibratedError
		Expect(errors.As(err, &ue)).To(BeTrue(), "got %v", err)
		Expect(ue.Names).To(ContainElement("model.layers.0.mlp.experts.gate_up_proj_input_quantizer"))

		res, err = framework.Calibrate(src, preset, framework.CalibFor(framework.Qwen3MoETiny), calib.Options{Faults: calib.Faults{HookBypass: true}, AllowUncalibrated: true})
		Expect(err).NotTo(HaveOccurred())
		out := filepath.Join(framework.TempDir(), "allowed")
		_, err = framework.Export(res, out, export.Options{AllowUncalibrated: true})
		Expect(err).NotTo(HaveOccurred())
		for _, n := range readCheckpoint(out).Names() {
			Expect(strings.Contains(n, ".mlp.experts.") && strings.HasSuffix(n, ".input_scale")).To(BeFalse(), n)
		}
	})
})
