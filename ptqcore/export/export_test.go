package export

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ptqgate/ptqgate/fixtures"
	"github.com/ptqgate/ptqgate/internal/buildinfo"
	"github.com/ptqgate/ptqgate/internal/refdata"
	"github.com/ptqgate/ptqgate/internal/testckpt"
	"github.com/ptqgate/ptqgate/ptqcore/backend/cpu"
	"github.com/ptqgate/ptqgate/ptqcore/calib"
	"github.com/ptqgate/ptqgate/ptqcore/model"
	"github.com/ptqgate/ptqgate/ptqcore/numerics"
	"github.com/ptqgate/ptqgate/ptqcore/quant"
	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
	"github.com/ptqgate/ptqgate/reports"
)

// writeFixture writes a built-in fixture (optionally changed) and returns
// its folder.
func writeFixture(t *testing.T, name string, change func(*fixtures.Options)) string {
	t.Helper()
	opt, err := fixtures.Defaults(name)
	if err != nil {
		t.Fatal(err)
	}
	if change != nil {
		change(&opt)
	}
	dir := filepath.Join(t.TempDir(), "src")
	if err := fixtures.Write(dir, opt); err != nil {
		t.Fatal(err)
	}
	return dir
}

func loadRecipe(t *testing.T, ref string) *quant.Recipe {
	t.Helper()
	r, err := quant.Load(ref)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// calibrate loads the checkpoint and calibrates it on testdata's
// qwen3-moe-tiny batches (token ids < 256, every fixture's vocabulary). A
// calibration whose checks fail still returns its result.
func calibrate(t *testing.T, dir, recipe string, opt calib.Options) *calib.Result {
	t.Helper()
	m, err := model.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := calib.LoadBatches(filepath.Join(refdata.Dir("qwen3-moe-tiny"), "calib.json"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := calib.Run(m, cpu.New(), loadRecipe(t, recipe), b, opt)
	var ce *calib.CheckError
	if err != nil && !errors.As(err, &ce) {
		t.Fatalf("calibrate: %v", err)
	}
	return res
}

func exitCode(err error) int {
	var c interface{ ExitCode() int }
	if errors.As(err, &c) {
		return c.ExitCode()
	}
	return 1
}

// readJSON decodes a JSON file of the export.
func readJSON(t *testing.T, path string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

func scalar(t *testing.T, ck *safetensors.Checkpoint, name string) float32 {
	t.Helper()
	info, ok := ck.Tensor(name)
	if !ok {
		t.Fatalf("missing %s", name)
	}
	if info.DType != safetensors.F32 || len(info.Shape) != 0 {
		t.Fatalf("%s: %s %v, want F32 []", name, info.DType, info.Shape)
	}
	raw, err := ck.ReadTensor(name)
	if err != nil {
		t.Fatal(err)
	}
	return math.Float32frombits(binary.LittleEndian.Uint32(raw))
}

// readBack dequantizes one exported weight straight from the file bytes
// (independently of the exporter's DequantizeFP8/DequantizeNVFP4).
func readBack(t *testing.T, ck *safetensors.Checkpoint, prefix, algo string, rows, cols int) []float32 {
	t.Helper()
	w, err := ck.ReadTensor(prefix + ".weight")
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, rows*cols)
	if algo == quant.AlgoFP8 {
		s := scalar(t, ck, prefix+".weight_scale")
		for i, b := range w {
			out[i] = numerics.E4M3ToF32(b) * s
		}
		return out
	}
	bs, err := ck.ReadTensor(prefix + ".weight_scale")
	if err != nil {
		t.Fatal(err)
	}
	s2 := scalar(t, ck, prefix+".weight_scale_2")
	kp := (cols + 15) / 16 * 16
	codes := numerics.UnpackE2M1(w, rows*kp)
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			out[r*cols+c] = numerics.E2M1ToF32(codes[r*kp+c]) * numerics.E4M3ToF32(bs[r*kp/16+c/16]) * s2
		}
	}
	return out
}

// errSum accumulates ‖W−Ŵ‖² and ‖W‖² per format.
type errSum struct{ num, den float64 }

func (e *errSum) add(ref, got []float32) {
	for i := range ref {
		d := float64(ref[i]) - float64(got[i])
		e.num += d * d
		e.den += float64(ref[i]) * float64(ref[i])
	}
}

func (e *errSum) rel() float64 { return math.Sqrt(e.num / e.den) }

// TestExportFormats exports the qwen3-moe-tiny fixture in every format,
// reads it back, checks names, dtypes, shapes and scale sharing, and
// measures the dequantization error against the model's weights.
func TestExportFormats(t *testing.T) {
	src := writeFixture(t, "qwen3-moe-tiny", nil)
	cases := []struct {
		recipe, algo, kv string
		experts, attn    string // per-module formats
		band             map[string][2]float64
	}{
		{"fp8_default-fp8_kv", "FP8", "FP8", "FP8", "FP8", map[string][2]float64{"FP8": {0.01, 0.04}}},
		{"nvfp4_default-fp8_kv", "NVFP4", "FP8", "NVFP4", "NVFP4", map[string][2]float64{"NVFP4": {0.06, 0.14}}},
		{"nvfp4_experts_only-fp8_kv", "NVFP4", "FP8", "NVFP4", "", map[string][2]float64{"NVFP4": {0.06, 0.14}}},
		{"w4a16_nvfp4", "W4A16_NVFP4", "", "W4A16_NVFP4", "W4A16_NVFP4", map[string][2]float64{"W4A16_NVFP4": {0.06, 0.14}}},
		{"testdata/mixed.yaml", "MIXED_PRECISION", "FP8", "NVFP4", "FP8", map[string][2]float64{"FP8": {0.01, 0.04}, "NVFP4": {0.06, 0.14}}},
	}
	for _, c := range cases {
		t.Run(filepath.Base(c.recipe), func(t *testing.T) {
			res := calibrate(t, src, c.recipe, calib.Options{})
			out := filepath.Join(t.TempDir(), "out")
			r, err := Export(FromCalibration(res), res.Report, Options{Out: out})
			if err != nil {
				t.Fatalf("export: %v", err)
			}
			if r.QuantAlgo != c.algo || r.KVCacheQuantAlgo != c.kv {
				t.Errorf("quant_algo %q kv %q, want %q %q", r.QuantAlgo, r.KVCacheQuantAlgo, c.algo, c.kv)
			}
			checkConfigs(t, out, c.algo, c.kv)
			ck, err := safetensors.OpenCheckpoint(out)
			if err != nil {
				t.Fatal(err)
			}
			defer ck.Close()
			m := res.Model
			sums := map[string]*errSum{}
			measure := func(algo, prefix string, ref []float32, rows, cols int) {
				if sums[algo] == nil {
					sums[algo] = &errSum{}
				}
				sums[algo].add(ref, readBack(t, ck, prefix, algo, rows, cols))
			}
			for _, b := range m.MoEBlocks() {
				ex := b.Experts
				checkExperts(t, ck, ex, c.experts)
				if c.experts == "" {
					continue
				}
				I, H := ex.Intermediate, ex.Hidden
				for e := 0; e < ex.NumExperts; e++ {
					base := ex.Name + "." + strconv.Itoa(e) + "."
					gu := ex.GateUpWeight(e)
					measure(c.experts, base+"gate_proj", gu[:I*H], I, H)
					measure(c.experts, base+"up_proj", gu[I*H:], I, H)
					measure(c.experts, base+"down_proj", ex.DownWeight(e), H, I)
				}
			}
			for _, l := range m.Linears() {
				info, ok := ck.Tensor(l.Name + ".weight")
				if !ok {
					t.Fatalf("missing %s.weight", l.Name)
				}
				want := c.attn
				if !strings.Contains(l.Name, "self_attn") {
					want = c.experts
					if c.recipe == "testdata/mixed.yaml" || strings.HasPrefix(c.recipe, "nvfp4_experts") {
						want = ""
					}
				}
				if l.Name == "lm_head" {
					want = ""
				}
				if want == "" {
					if info.DType != safetensors.BF16 {
						t.Errorf("%s.weight is %s, want BF16 (unquantized)", l.Name, info.DType)
					}
					continue
				}
				measure(want, l.Name, l.Weight.Data, l.Out, l.In)
			}
			checkSharedInputs(t, ck, m, c.attn)
			for _, b := range m.MoEBlocks() {
				if info, ok := ck.Tensor(b.Prefix + ".gate.weight"); !ok || info.DType != safetensors.BF16 {
					t.Errorf("router %s.gate.weight: %v %v, want BF16", b.Prefix, info.DType, ok)
				}
			}
			checkKV(t, ck, res, c.kv != "")
			for algo, s := range sums {
				rel := s.rel()
				t.Logf("%s round trip: relative error %.4f", algo, rel)
				band, ok := c.band[algo]
				if !ok || rel < band[0] || rel > band[1] {
					t.Errorf("%s relative error %.4f outside %v", algo, rel, band)
				}
			}
			// The exporter's own round trip agrees with the one above.
			for _, d := range r.DequantErrors {
				if !(float64(d.RelativeError) > 0 && float64(d.RelativeError) < 0.2) {
					t.Errorf("%s: dequant error %v", d.Module, d.RelativeError)
				}
			}
			if len(r.DequantErrors) != len(r.Formats) {
				t.Errorf("%d dequant errors for %d quantized modules", len(r.DequantErrors), len(r.Formats))
			}
			checkReport(t, out, res)
		})
	}
}

// checkConfigs reads hf_quant_config.json and config.json.
func checkConfigs(t *testing.T, out, algo, kv string) {
	t.Helper()
	hf := readJSON(t, filepath.Join(out, HFQuantConfig))
	prod, _ := hf["producer"].(map[string]any)
	if prod["name"] != "modelopt" || prod["version"] != "0.47.0" {
		t.Errorf("producer %v", prod)
	}
	q, _ := hf["quantization"].(map[string]any)
	if q["quant_algo"] != algo {
		t.Errorf("hf_quant_config quant_algo %v, want %s", q["quant_algo"], algo)
	}
	if (kv == "" && q["kv_cache_quant_algo"] != nil) || (kv != "" && q["kv_cache_quant_algo"] != kv) {
		t.Errorf("kv_cache_quant_algo %v, want %q", q["kv_cache_quant_algo"], kv)
	}
	cfg := readJSON(t, filepath.Join(out, ConfigFile))
	if cfg["dtype"] != "bfloat16" {
		t.Errorf("config dtype %v", cfg["dtype"])
	}
	qc, _ := cfg["quantization_config"].(map[string]any)
	if qc["quant_method"] != "modelopt" || qc["quant_algo"] != algo {
		t.Errorf("quantization_config %v", qc)
	}
	if _, ok := qc["config_groups"]; !ok {
		t.Error("quantization_config has no config_groups")
	}
	ignore, ok := qc["ignore"].([]any)
	if !ok {
		t.Fatalf("ignore %v", qc["ignore"])
	}
	if algo == quant.AlgoMixed {
		if len(ignore) != 0 || q["quantized_layers"] == nil {
			t.Errorf("mixed: ignore %v, quantized_layers %v", ignore, q["quantized_layers"])
		}
		return
	}
	if !slices.Contains(ignore, any("lm_head")) {
		t.Errorf("ignore %v lacks lm_head", ignore)
	}
	for _, l := range []string{"model.layers.0.mlp.gate", "model.layers.1.mlp.gate"} {
		if !slices.Contains(ignore, any(l)) {
			t.Errorf("ignore %v lacks router %s", ignore, l)
		}
	}
	if ex, _ := q["exclude_modules"].([]any); !slices.Equal(ex, ignore) {
		t.Errorf("exclude_modules %v differs from ignore %v", ex, ignore)
	}
}

// checkExperts checks that every expert was split with its tensors.
func checkExperts(t *testing.T, ck *safetensors.Checkpoint, ex *model.FusedExperts, algo string) {
	t.Helper()
	for _, n := range []string{ex.Name + ".gate_up_proj", ex.Name + ".down_proj"} {
		if _, ok := ck.Tensor(n); ok {
			t.Errorf("fused tensor %s in the export", n)
		}
	}
	I, H := int64(ex.Intermediate), int64(ex.Hidden)
	var in0 [2]float32
	for e := 0; e < ex.NumExperts; e++ {
		base := fmt.Sprintf("%s.%d.", ex.Name, e)
		for _, proj := range []string{"gate_proj", "up_proj", "down_proj"} {
			rows, cols := I, H
			if proj == "down_proj" {
				rows, cols = H, I
			}
			want := map[string]struct {
				dt    safetensors.DType
				shape []int64
			}{}
			switch algo {
			case "":
				want["weight"] = struct {
					dt    safetensors.DType
					shape []int64
				}{safetensors.BF16, []int64{rows, cols}}
			case "FP8":
				want["weight"] = struct {
					dt    safetensors.DType
					shape []int64
				}{safetensors.F8E4M3, []int64{rows, cols}}
				want["weight_scale"] = struct {
					dt    safetensors.DType
					shape []int64
				}{safetensors.F32, []int64{}}
			default:
				want["weight"] = struct {
					dt    safetensors.DType
					shape []int64
				}{safetensors.U8, []int64{rows, cols / 2}}
				want["weight_scale"] = struct {
					dt    safetensors.DType
					shape []int64
				}{safetensors.F8E4M3, []int64{rows, cols / 16}}
				want["weight_scale_2"] = struct {
					dt    safetensors.DType
					shape []int64
				}{safetensors.F32, []int64{}}
			}
			if algo == "FP8" || algo == "NVFP4" {
				want["input_scale"] = struct {
					dt    safetensors.DType
					shape []int64
				}{safetensors.F32, []int64{}}
			}
			for leaf, w := range want {
				info, ok := ck.Tensor(base + proj + "." + leaf)
				if !ok || info.DType != w.dt || !slices.Equal(info.Shape, w.shape) {
					t.Errorf("%s%s.%s: %v %s %v, want %s %v", base, proj, leaf, ok, info.DType, info.Shape, w.dt, w.shape)
				}
			}
			if algo == "" {
				if _, ok := ck.Tensor(base + proj + ".weight_scale"); ok {
					t.Errorf("unquantized %s%s has a weight_scale", base, proj)
				}
			}
		}
		if algo == "" {
			continue
		}
		// gate and up share the gate_up amax; all experts share the inputs.
		shared := "weight_scale_2"
		if algo == "FP8" {
			shared = "weight_scale"
		}
		if g, u := scalar(t, ck, base+"gate_proj."+shared), scalar(t, ck, base+"up_proj."+shared); g != u {
			t.Errorf("expert %d: gate %s %g != up %g", e, shared, g, u)
		}
		if algo == "W4A16_NVFP4" {
			continue
		}
		gi, di := scalar(t, ck, base+"gate_proj.input_scale"), scalar(t, ck, base+"down_proj.input_scale")
		if gi != scalar(t, ck, base+"up_proj.input_scale") {
			t.Errorf("expert %d: gate and up input_scale differ", e)
		}
		if e == 0 {
			in0 = [2]float32{gi, di}
		} else if in0 != [2]float32{gi, di} {
			t.Errorf("expert %d: input scales %v differ from expert 0's %v", e, [2]float32{gi, di}, in0)
		}
	}
}

// checkSharedInputs checks §4.4: q/k/v share input_scale; for NVFP4 also
// weight_scale_2.
func checkSharedInputs(t *testing.T, ck *safetensors.Checkpoint, m *model.Model, algo string) {
	t.Helper()
	if algo == "" {
		return
	}
	for _, l := range m.Layers {
		attn := l.Prefix + ".self_attn."
		for _, leaf := range []string{"input_scale", "weight_scale_2"} {
			if leaf == "weight_scale_2" && algo == "FP8" || leaf == "input_scale" && algo == "W4A16_NVFP4" {
				continue
			}
			q := scalar(t, ck, attn+"q_proj."+leaf)
			for _, p := range []string{"k_proj", "v_proj"} {
				if v := scalar(t, ck, attn+p+"."+leaf); v != q {
					t.Errorf("%s%s.%s %g != q_proj's %g", attn, p, leaf, v, q)
				}
			}
		}
	}
}

// checkKV checks k_scale = amax/448 and v_scale for every attention layer.
func checkKV(t *testing.T, ck *safetensors.Checkpoint, res *calib.Result, want bool) {
	t.Helper()
	for _, l := range res.Model.Layers {
		for _, kv := range []string{"k", "v"} {
			name := l.Prefix + ".self_attn." + kv + "_proj." + kv + "_scale"
			_, ok := ck.Tensor(name)
			if ok != want {
				t.Errorf("%s present %v, want %v", name, ok, want)
			}
			if !ok {
				continue
			}
			q, _ := res.Quantizer(l.Prefix + ".self_attn." + kv + "_bmm_quantizer")
			got := float64(scalar(t, ck, name))
			if a := float64(q.Amax[0]); math.Abs(got*448-a) > 1e-6*a {
				t.Errorf("%s = %g, amax %g", name, got, a)
			}
		}
	}
}

// checkReport reads ptqgate_report.json: kind export, no run, the
// calibration's quantizers, the exported tensors.
func checkReport(t *testing.T, out string, res *calib.Result) {
	t.Helper()
	rep, err := reports.ReadFile(filepath.Join(out, ReportFile))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Kind != reports.KindExport || rep.Run != nil {
		t.Errorf("report kind %s, run %v", rep.Kind, rep.Run)
	}
	if len(rep.Quantizers) != len(res.Quantizers) || len(rep.Tensors) == 0 || len(rep.DequantError) == 0 {
		t.Errorf("report: %d quantizers (want %d), %d tensors, %d dequant errors", len(rep.Quantizers), len(res.Quantizers), len(rep.Tensors), len(rep.DequantError))
	}
	raw, _ := os.ReadFile(filepath.Join(out, ReportFile))
	if bytes.Contains(raw, []byte(`"run"`)) {
		t.Error("ptqgate_report.json holds the run section")
	}
	f, err := safetensors.Open(filepath.Join(out, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if md := f.Metadata(); md["format"] != "pt" || md["producer"] != buildinfo.Producer() {
		t.Errorf("__metadata__ %v", md)
	}
}

// TestExportDeterministic exports the same calibration twice (once with
// --force over an earlier export) and compares every file byte for byte.
func TestExportDeterministic(t *testing.T) {
	src := writeFixture(t, "qwen3-moe-dense-tiny", nil)
	res := calibrate(t, src, "nvfp4_default-fp8_kv", calib.Options{})
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, out := range []string{a, b, b} {
		if _, err := Export(FromCalibration(res), res.Report, Options{Out: out, Force: true}); err != nil {
			t.Fatal(err)
		}
	}
	fa, fb := listFiles(t, a), listFiles(t, b)
	if !slices.Equal(fa, fb) {
		t.Fatalf("files differ: %v vs %v", fa, fb)
	}
	for _, n := range fa {
		x, _ := os.ReadFile(filepath.Join(a, n))
		y, _ := os.ReadFile(filepath.Join(b, n))
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs between two exports", n)
		}
	}
	if !slices.Contains(fa, "generation_config.json") || !slices.Contains(fa, ReportFile) || !slices.Contains(fa, HFQuantConfig) {
		t.Errorf("files %v", fa)
	}
	// Only the export folders are left beside them: no temporary folders.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("%d entries beside the exports", len(entries))
	}
}

func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// TestExportDenseUnification: a dense MLP layer's gate/up and every q/k/v
// share weight_scale_2 and input_scale under NVFP4 (§4.4); under FP8 the
// input scales are equal but the weight scales are each module's own.
func TestExportDenseUnification(t *testing.T) {
	src := writeFixture(t, "qwen3-moe-dense-tiny", nil)
	for _, c := range []struct{ recipe, algo string }{{"nvfp4_default", "NVFP4"}, {"fp8_default", "FP8"}} {
		res := calibrate(t, src, c.recipe, calib.Options{})
		out := filepath.Join(t.TempDir(), "out")
		if _, err := Export(FromCalibration(res), res.Report, Options{Out: out}); err != nil {
			t.Fatal(err)
		}
		ck, err := safetensors.OpenCheckpoint(out)
		if err != nil {
			t.Fatal(err)
		}
		mlp := "model.layers.1.mlp."
		gi, ui := scalar(t, ck, mlp+"gate_proj.input_scale"), scalar(t, ck, mlp+"up_proj.input_scale")
		if gi != ui {
			t.Errorf("%s: gate/up input_scale %g %g", c.recipe, gi, ui)
		}
		if c.algo == "NVFP4" {
			g, u := scalar(t, ck, mlp+"gate_proj.weight_scale_2"), scalar(t, ck, mlp+"up_proj.weight_scale_2")
			gq, _ := res.Quantizer(mlp + "gate_proj.weight_quantizer")
			uq, _ := res.Quantizer(mlp + "up_proj.weight_quantizer")
			if g != u || g != NVFP4WeightScale2(max(gq.Amax[0], uq.Amax[0])) {
				t.Errorf("gate/up weight_scale_2 %g %g, want the max amax's", g, u)
			}
		} else {
			g, u := scalar(t, ck, mlp+"gate_proj.weight_scale"), scalar(t, ck, mlp+"up_proj.weight_scale")
			if g == u {
				t.Errorf("FP8 gate/up weight_scale unified (%g); ModelOpt skips FP8", g)
			}
		}
		checkSharedInputs(t, ck, res.Model, c.algo)
		ck.Close()
	}
}

// TestExportFusedLayoutAndSharding: a source with fused 3-D experts is
// written per expert, and a small shard limit gives shards plus an index
// holding the same tensors.
func TestExportFusedLayoutAndSharding(t *testing.T) {
	src := writeFixture(t, "qwen3-moe-tiny", func(o *fixtures.Options) { o.Layout = fixtures.LayoutFused })
	res := calibrate(t, src, "nvfp4_experts_only-fp8_kv", calib.Options{})
	dir := t.TempDir()
	single, sharded := filepath.Join(dir, "single"), filepath.Join(dir, "sharded")
	if _, err := Export(FromCalibration(res), res.Report, Options{Out: single}); err != nil {
		t.Fatal(err)
	}
	r, err := Export(FromCalibration(res), res.Report, Options{Out: sharded, MaxShardSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(r.Files, safetensors.IndexFile) || !slices.Contains(r.Files, "model-00001-of-00004.safetensors") && !slices.ContainsFunc(r.Files, func(s string) bool { return strings.HasPrefix(s, "model-00002-of-") }) {
		t.Errorf("files %v", r.Files)
	}
	a, err := safetensors.OpenCheckpoint(single)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := safetensors.OpenCheckpoint(sharded)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if !b.Sharded() || !slices.Equal(a.Names(), b.Names()) {
		t.Fatalf("sharded %v; names differ", b.Sharded())
	}
	for _, n := range a.Names() {
		x, _ := a.ReadTensor(n)
		y, _ := b.ReadTensor(n)
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs between the single file and the shards", n)
		}
	}
	if _, ok := a.Tensor("model.layers.0.mlp.experts.7.down_proj.weight_scale_2"); !ok {
		t.Error("fused source: per-expert tensors missing")
	}
}

// TestExportOut: an existing --out is refused without --force (exit 2,
// untouched) and replaced with it; --out must stay clear of the source.
func TestExportOut(t *testing.T) {
	src := writeFixture(t, "qwen3-moe-tiny", nil)
	res := calibrate(t, src, "fp8_default", calib.Options{})
	out := filepath.Join(t.TempDir(), "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(out, "keep.txt")
	if err := os.WriteFile(marker, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Export(FromCalibration(res), res.Report, Options{Out: out})
	if exitCode(err) != 2 {
		t.Fatalf("existing out: %v (exit %d), want exit 2", err, exitCode(err))
	}
	if b, _ := os.ReadFile(marker); string(b) != "old" {
		t.Error("the existing folder was touched")
	}
	if _, err := Export(FromCalibration(res), res.Report, Options{Out: out, Force: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker); !errors.Is(err, fs.ErrNotExist) {
		t.Error("--force kept the old folder's files")
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	for _, c := range []struct {
		name, out string
		force     bool
	}{
		{"a file, forced", file, true},
		{"the source", src, true},
		{"inside the source", filepath.Join(src, "q"), false},
		{"a parent of the source", filepath.Dir(src), true},
		{"empty", "", false},
	} {
		if err := CheckOut(c.out, c.force, src); exitCode(err) != 2 {
			t.Errorf("%s: %v, want exit 2", c.name, err)
		}
	}
	if err := CheckOut(filepath.Join(t.TempDir(), "new", "deeper"), false, src); err != nil {
		t.Errorf("new folder: %v", err)
	}
}

// TestExportFailureLeavesNothing injects failures after some files were
// written: nothing appears at --out, an old folder under --force stays as
// it was, and no temporary folder is left behind.
func TestExportFailureLeavesNothing(t *testing.T) {
	src := writeFixture(t, "qwen3-moe-tiny", nil)
	res := calibrate(t, src, "fp8_default", calib.Options{})
	hash := sourceHashes(t, src)

	// 1. A weight amax below the weight's maximum: the FP8 cast would give
	// NaN, found while the safetensors are written.
	in := FromCalibration(res)
	for i := range in.Quantizers {
		if in.Quantizers[i].Name == "model.layers.1.self_attn.o_proj.weight_quantizer" {
			in.Quantizers[i].Amax = []float32{in.Quantizers[i].Amax[0] / 2}
		}
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	_, err := Export(in, res.Report, Options{Out: out})
	var oe *OverflowError
	if !errors.As(err, &oe) || exitCode(err) != 1 || oe.Tensor != "model.layers.1.self_attn.o_proj.weight" {
		t.Fatalf("err = %v, want an OverflowError naming o_proj", err)
	}
	assertOnly(t, dir, nil)

	// 2. With --force over an earlier export: the old folder survives.
	if _, err := Export(FromCalibration(res), res.Report, Options{Out: out}); err != nil {
		t.Fatal(err)
	}
	before := listFiles(t, out)
	old, _ := os.ReadFile(filepath.Join(out, "model.safetensors"))
	if _, err := Export(in, res.Report, Options{Out: out, Force: true}); err == nil {
		t.Fatal("no error")
	}
	now, _ := os.ReadFile(filepath.Join(out, "model.safetensors"))
	if !slices.Equal(before, listFiles(t, out)) || !bytes.Equal(old, now) {
		t.Error("a failed forced export changed the old folder")
	}
	assertOnly(t, dir, []string{"out"})

	// 3. A failure after everything was written, just before the rename.
	testHookBeforeRename = func(tmp string) error {
		if _, err := os.Stat(filepath.Join(tmp, ReportFile)); err != nil {
			t.Errorf("hook: the temporary folder is incomplete: %v", err)
		}
		return errors.New("injected failure")
	}
	defer func() { testHookBeforeRename = nil }()
	out2 := filepath.Join(dir, "out2")
	if _, err := Export(FromCalibration(res), res.Report, Options{Out: out2}); err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("err = %v", err)
	}
	testHookBeforeRename = nil
	assertOnly(t, dir, []string{"out"})

	// 4. An unwritable destination: the parent is a file.
	blocker := filepath.Join(dir, "blocker")
	os.WriteFile(blocker, nil, 0o644)
	if _, err := Export(FromCalibration(res), res.Report, Options{Out: filepath.Join(blocker, "out")}); err == nil {
		t.Fatal("export under a file: no error")
	}
	assertOnly(t, dir, []string{"blocker", "out"})

	if !maps.Equal(hash, sourceHashes(t, src)) {
		t.Error("the source checkpoint changed")
	}
}

// assertOnly checks the entries of dir.
func assertOnly(t *testing.T, dir string, want []string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s holds %v, want %v", dir, got, want)
	}
}

func sourceHashes(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range listFiles(t, dir) {
		b, _ := os.ReadFile(filepath.Join(dir, n))
		st, _ := os.Stat(filepath.Join(dir, n))
		out[n] = fmt.Sprintf("%x/%v", b, st.ModTime())
	}
	return out
}

// TestExportUncalibrated: with the hook-bypass fault the expert input
// quantizers have no amax. Without --allow-uncalibrated nothing is written
// (exit 1); with it the export omits those input_scales, as the toolkit
// did, with warnings and no errors.
func TestExportUncalibrated(t *testing.T) {
	src := writeFixture(t, "qwen3-moe-tiny", nil)
	res := calibrate(t, src, "nvfp4_experts_only-fp8_kv", calib.Options{Faults: calib.Faults{HookBypass: true}})
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	_, err := Export(FromCalibration(res), res.Report, Options{Out: out})
	var ue *UncalibratedError
	if !errors.As(err, &ue) || exitCode(err) != 1 || !slices.Contains(ue.Names, "model.layers.0.mlp.experts.gate_up_proj_input_quantizer") {
		t.Fatalf("err = %v, want an UncalibratedError naming the expert input quantizers", err)
	}
	assertOnly(t, dir, nil)
	r, err := Export(FromCalibration(res), res.Report, Options{Out: out, AllowUncalibrated: true})
	if err != nil {
		t.Fatalf("--allow-uncalibrated: %v", err)
	}
	ck, err := safetensors.OpenCheckpoint(out)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	for _, n := range []string{"model.layers.0.mlp.experts.3.gate_proj.input_scale", "model.layers.1.mlp.experts.0.down_proj.input_scale"} {
		if _, ok := ck.Tensor(n); ok {
			t.Errorf("%s exported for an uncalibrated quantizer", n)
		}
	}
	if _, ok := ck.Tensor("model.layers.0.mlp.experts.3.gate_proj.weight_scale_2"); !ok {
		t.Error("weights must still be quantized")
	}
	warned := 0
	for _, f := range r.Findings {
		if f.Rule == RuleInputOmitted && f.Severity == reports.SeverityWarning {
			warned++
		}
		if f.Severity == reports.SeverityError {
			t.Errorf("error finding %+v", f)
		}
	}
	if warned != 4 { // gate_up and down input quantizers of two layers
		t.Errorf("%d input-omitted warnings, want 4", warned)
	}
}

// TestExportFormatGate reproduces the bug report's export: fused experts
// left unquantized and unlisted. The folder is written, its report holds
// the self-check's error findings naming the missing tensors, exit 1.
func TestExportFormatGate(t *testing.T) {
	src := writeFixture(t, "qwen3-moe-tiny", nil)
	res := calibrate(t, src, "nvfp4_experts_only-fp8_kv", calib.Options{})
	out := filepath.Join(t.TempDir(), "out")
	r, err := Export(FromCalibration(res), res.Report, Options{Out: out, FormatGate: true})
	var ce *CheckError
	if !errors.As(err, &ce) || exitCode(err) != 1 || r == nil {
		t.Fatalf("err = %v, want a CheckError with a result", err)
	}
	if r.QuantAlgo != "" || r.KVCacheQuantAlgo != "FP8" {
		t.Errorf("quant_algo %q, kv %q; want null and FP8 (experts unlisted)", r.QuantAlgo, r.KVCacheQuantAlgo)
	}
	rep, err := reports.ReadFile(filepath.Join(out, ReportFile))
	if err != nil {
		t.Fatal(err)
	}
	var named []string
	for _, f := range rep.Findings {
		if f.Severity == reports.SeverityError {
			named = append(named, f.Tensor+" "+f.Message)
		}
	}
	joined := strings.Join(named, "\n")
	for _, want := range []string{"model.layers.0.mlp.experts.0.gate_proj.weight", "model.layers.1.mlp.experts", "weight_scale_2", "input_scale"} {
		if !strings.Contains(joined, want) {
			t.Errorf("findings do not name %s:\n%s", want, joined)
		}
	}
	if rep.Summary.Errors == 0 {
		t.Error("report summary has no errors")
	}
	ck, err := safetensors.OpenCheckpoint(out)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	if info, _ := ck.Tensor("model.layers.0.mlp.experts.5.up_proj.weight"); info.DType != safetensors.BF16 {
		t.Errorf("expert weights %s, want BF16", info.DType)
	}
	cfg := readJSON(t, filepath.Join(out, ConfigFile))
	qc, _ := cfg["quantization_config"].(map[string]any)
	if _, ok := qc["quant_algo"]; ok {
		t.Errorf("quantization_config has a quant_algo: %v", qc)
	}
}

// vlmCheckpoint rewrites a fixture as a vision-language checkpoint: text
// weights under model.language_model., plus a vision tower and an MTP
// tensor the text model does not use, and tokenizer files.
func vlmCheckpoint(t *testing.T, src string) string {
	t.Helper()
	out := testckpt.Tensors(t, src, testckpt.VLMName)
	vals := func(n int, s float32) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = s * float32(i%7-3)
		}
		return v
	}
	f32 := func(name string, shape []int64, v []float32) safetensors.Source {
		b, _ := numerics.EncodeFloats("F32", v)
		return safetensors.Source{Name: name, DType: safetensors.F32, Shape: shape, Data: b}
	}
	out = append(out,
		f32("model.visual.blocks.0.attn.qkv.weight", []int64{96, 32}, vals(96*32, 0.01)),
		f32("model.visual.blocks.0.norm1.weight", []int64{32}, vals(32, 1)),
		f32("model.visual.pos_embed.weight", []int64{16, 32}, vals(16*32, 0.02)),
		f32("mtp.layers.0.mlp.experts.0.gate_proj.weight", []int64{8, 16}, vals(128, 0.03)),
		safetensors.Source{Name: "model.visual.position_ids", DType: safetensors.I64, Shape: []int64{2}, Data: make([]byte, 16)},
	)
	dir := filepath.Join(t.TempDir(), "vlm")
	if _, err := safetensors.WriteCheckpoint(dir, map[string]string{"format": "pt"}, out, safetensors.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"config.json", "generation_config.json"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for f, body := range map[string]string{"tokenizer.json": `{"version": "1.0"}`, "tokenizer_config.json": "{}", "chat_template.jinja": "{{ messages }}", "notes.txt": "not copied"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestExportVLM: a float32 vision-language checkpoint. Names keep the
// model.language_model. prefix; unquantized tensors (vision tower
// included) become bf16 under --dtype auto and f16 under --dtype f16;
// non-float tensors are copied; the vision tower and MTP are excluded;
// side files are copied and the source is untouched.
func TestExportVLM(t *testing.T) {
	src := vlmCheckpoint(t, writeFixture(t, "qwen3-moe-tiny", func(o *fixtures.Options) { o.DType = fixtures.DTypeF32 }))
	hash := sourceHashes(t, src)
	res := calibrate(t, src, "nvfp4_experts_only-fp8_kv", calib.Options{})
	for _, c := range []struct {
		dtype string
		want  safetensors.DType
		name  string
	}{{DTypeAuto, safetensors.BF16, "bfloat16"}, {DTypeF16, safetensors.F16, "float16"}} {
		out := filepath.Join(t.TempDir(), "out")
		r, err := Export(FromCalibration(res), res.Report, Options{Out: out, DType: c.dtype})
		if err != nil {
			t.Fatalf("%s: %v", c.dtype, err)
		}
		ck, err := safetensors.OpenCheckpoint(out)
		if err != nil {
			t.Fatal(err)
		}
		for n, dt := range map[string]safetensors.DType{
			"model.visual.blocks.0.attn.qkv.weight":                                c.want,
			"model.visual.blocks.0.norm1.weight":                                   c.want,
			"model.visual.position_ids":                                            safetensors.I64,
			"mtp.layers.0.mlp.experts.0.gate_proj.weight":                          c.want,
			"model.language_model.layers.0.self_attn.q_proj.weight":                c.want,
			"model.language_model.embed_tokens.weight":                             c.want,
			"model.language_model.layers.1.mlp.experts.7.gate_proj.weight":         safetensors.U8,
			"model.language_model.layers.1.mlp.experts.7.gate_proj.weight_scale":   safetensors.F8E4M3,
			"model.language_model.layers.1.self_attn.k_proj.k_scale":               safetensors.F32,
			"model.language_model.layers.0.mlp.experts.0.down_proj.input_scale":    safetensors.F32,
			"model.language_model.layers.0.mlp.experts.0.down_proj.weight_scale_2": safetensors.F32,
		} {
			if info, ok := ck.Tensor(n); !ok || info.DType != dt {
				t.Errorf("%s: %s %v, want %s", n, info.DType, ok, dt)
			}
		}
		qkv, _ := ck.ReadTensor("model.visual.blocks.0.attn.qkv.weight")
		vals, _ := numerics.DecodeFloats(string(c.want), qkv)
		if vals[5] != roundTo(c.want, 0.01*float32(5%7-3)) {
			t.Errorf("vision value %g", vals[5])
		}
		ck.Close()
		for _, e := range []string{"model.visual*", "mtp*", "lm_head", "model.language_model.layers.0.mlp.gate"} {
			if !slices.Contains(r.ExcludeModules, e) {
				t.Errorf("exclude_modules %q lacks %s", r.ExcludeModules, e)
			}
		}
		for _, e := range r.ExcludeModules {
			if strings.Contains(e, "embed") {
				t.Errorf("embedding excluded: %s", e)
			}
		}
		cfg := readJSON(t, filepath.Join(out, ConfigFile))
		if cfg["dtype"] != c.name {
			t.Errorf("config dtype %v, want %s", cfg["dtype"], c.name)
		}
		for _, f := range []string{"tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"} {
			a, _ := os.ReadFile(filepath.Join(src, f))
			b, err := os.ReadFile(filepath.Join(out, f))
			if err != nil || !bytes.Equal(a, b) {
				t.Errorf("%s not copied byte for byte: %v", f, err)
			}
		}
		if _, err := os.Stat(filepath.Join(out, "notes.txt")); err == nil {
			t.Error("notes.txt copied")
		}
	}
	if !maps.Equal(hash, sourceHashes(t, src)) {
		t.Error("the source checkpoint changed")
	}
}

// TestExportRefusals: requests the engines could not load are refused
// before anything is written (exit 2).
func TestExportRefusals(t *testing.T) {
	src := writeFixture(t, "qwen3-moe-tiny", nil)
	res := calibrate(t, src, "nvfp4_default", calib.Options{})
	dir := t.TempDir()
	cases := []struct {
		name   string
		change func(q *Quantizer)
		opt    Options
	}{
		{"q quantized, k and v not", func(q *Quantizer) {
			if strings.Contains(q.Name, "layers.0.self_attn.k_proj") || strings.Contains(q.Name, "layers.0.self_attn.v_proj") {
				q.Config.Enable = false
			}
		}, Options{}},
		{"one expert FP8", func(q *Quantizer) {
			if q.Name == "model.layers.0.mlp.experts.gate_up_proj_weight_quantizers.3" {
				q.Config = quant.FP8Config()
			}
		}, Options{}},
		{"per-channel amax", func(q *Quantizer) {
			if q.Name == "model.layers.0.self_attn.o_proj.weight_quantizer" {
				q.Amax = []float32{1, 2}
			}
		}, Options{}},
		{"unknown dtype", func(*Quantizer) {}, Options{DType: "f32"}},
		{"use_constant_amax on a Linear weight", func(q *Quantizer) {
			if q.Name == "model.layers.1.self_attn.o_proj.weight_quantizer" {
				q.Config.UseConstantAmax = true
			}
		}, Options{}},
		{"use_constant_amax on an expert weight", func(q *Quantizer) {
			if q.Name == "model.layers.1.mlp.experts.down_proj_weight_quantizers.5" {
				q.Config.UseConstantAmax = true
			}
		}, Options{}},
	}
	for _, c := range cases {
		in := FromCalibration(res)
		for i := range in.Quantizers {
			c.change(&in.Quantizers[i])
		}
		c.opt.Out = filepath.Join(dir, "out")
		if _, err := Export(in, res.Report, c.opt); exitCode(err) != 2 {
			t.Errorf("%s: %v (exit %d), want exit 2", c.name, err, exitCode(err))
		}
	}
	assertOnly(t, dir, nil)
}

// TestExportF32Reference exports testdata's float32 qwen3-moe-tiny (the
// transformers reference checkpoint, read in place and left untouched):
// --dtype auto writes the unquantized tensors in bf16, and the FP8 codes
// of a float32 model are one float32 quotient rounded to E4M3.
func TestExportF32Reference(t *testing.T) {
	src := refdata.Dir("qwen3-moe-tiny")
	hash := sourceHashes(t, src)
	res := calibrate(t, src, "fp8_default-fp8_kv", calib.Options{})
	out := filepath.Join(t.TempDir(), "out")
	if _, err := Export(FromCalibration(res), res.Report, Options{Out: out}); err != nil {
		t.Fatal(err)
	}
	ck, err := safetensors.OpenCheckpoint(out)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	for _, n := range []string{"model.embed_tokens.weight", "lm_head.weight", "model.layers.0.mlp.gate.weight", "model.norm.weight"} {
		if info, _ := ck.Tensor(n); info.DType != safetensors.BF16 {
			t.Errorf("%s: %s, want BF16", n, info.DType)
		}
	}
	ex, _ := res.Model.Experts("model.layers.1.mlp.experts")
	w := ex.DownWeight(7) // the expert no token reaches: weights are still quantized
	q, _ := res.Quantizer("model.layers.1.mlp.experts.down_proj_weight_quantizers.7")
	scale := float32(float64(q.Amax[0]) / 448)
	got, err := ck.ReadTensor("model.layers.1.mlp.experts.7.down_proj.weight")
	if err != nil {
		t.Fatal(err)
	}
	if s := scalar(t, ck, "model.layers.1.mlp.experts.7.down_proj.weight_scale"); s != scale {
		t.Errorf("weight_scale %g, want %g", s, scale)
	}
	for i, v := range w {
		if want := numerics.F32ToE4M3(v / scale); got[i] != want {
			t.Fatalf("code %d: %#x, want %#x", i, got[i], want)
		}
	}
	if cfg := readJSON(t, filepath.Join(out, ConfigFile)); cfg["dtype"] != "bfloat16" {
		t.Errorf("config dtype %v", cfg["dtype"])
	}
	if !maps.Equal(hash, sourceHashes(t, src)) {
		t.Error("the reference checkpoint changed")
	}
}
