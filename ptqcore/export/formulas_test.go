package export

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/ptqgate/ptqgate/ptqcore/numerics"
	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
)

// TestQuantizeFP8Hand checks FP8 weight codes computed by hand. With amax
// 3.5 the scale is 3.5/448 = 2^-7, exact in every dtype, so each quotient
// is w·128 and only the E4M3 rounding acts.
func TestQuantizeFP8Hand(t *testing.T) {
	scale := FP8WeightScale(3.5)
	if scale != 0.0078125 {
		t.Fatalf("FP8WeightScale(3.5) = %g, want 2^-7", scale)
	}
	w := []float32{
		1.0,                             // 128 = 2^7: e=14, m=0 → 0x70
		3.5,                             // 448: the largest code 0x7E
		-0.5,                            // -64 = -2^6: e=13 → 0x68 | sign 0x80 = 0xE8
		0.0078125,                       // 1.0: e=7 → 0x38
		0.010009765625,                  // bf16(0.01): 1.28125 → m = 2.25 → 2 → 1.25 → 0x3A
		0,                               // 0x00
		float32(math.Copysign(0, -1)),   // -0 keeps its sign: 0x80
		float32(math.Ldexp(1, -16)),     // 2^-9: the smallest subnormal 0x01
		float32(3 * math.Ldexp(1, -17)), // 3·2^-10 = 1.5 subnormal steps: tie → even → 0x02
		-3.4375,                         // -440 = -1.71875·2^8: m = 5.75 → 6 → -448 = 0xFE
	}
	want := []byte{0x70, 0x7E, 0xE8, 0x38, 0x3A, 0x00, 0x80, 0x01, 0x02, 0xFE}
	for _, dt := range []safetensors.DType{safetensors.BF16, safetensors.F16, safetensors.F32} {
		got, err := QuantizeFP8("w", w, scale, dt)
		if err != nil {
			t.Fatalf("%s: %v", dt, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: codes % x, want % x", dt, got, want)
		}
	}
}

// TestQuantizeFP8QuotientDType checks, by hand, the rounding points of the
// FP8 quotient for a bf16 model: the exporter divides on the weight's
// device, where torch casts the 0-d float32 scale to bf16 first.
func TestQuantizeFP8QuotientDType(t *testing.T) {
	// amax 1 → scale f32(1/448); bf16(scale) = 1.140625·2^-9 = 0.002227783203125.
	// w = 246·2^-10 = 0.240234375 (exact in bf16).
	//   bf16 rule: 0.240234375 / 0.002227783203125 = 107.8356 → bf16 108 → E4M3 tie
	//              between 104 (m=5) and 112 (m=6) → even → 112 = 0x6E.
	//   f32 scale: 0.240234375·448 = 107.625 → bf16 107.5 → E4M3 104 = 0x6D.
	//   f32 model: 107.625 → E4M3 104 = 0x6D.
	scale := FP8WeightScale(1)
	if numerics.RoundBF16(scale) != 0.002227783203125 {
		t.Fatalf("bf16(scale) = %g", numerics.RoundBF16(scale))
	}
	w := []float32{0.240234375}
	for _, c := range []struct {
		dt   safetensors.DType
		want byte
	}{{safetensors.BF16, 0x6E}, {safetensors.F32, 0x6D}} {
		got, err := QuantizeFP8("w", w, scale, c.dt)
		if err != nil {
			t.Fatal(err)
		}
		if got[0] != c.want {
			t.Errorf("%s: code %#x, want %#x", c.dt, got[0], c.want)
		}
	}
}

func TestQuantizeFP8Overflow(t *testing.T) {
	// A weight amax below max|W|: 1/(1/448) = 448 fits, 1.04/(1/448) ≈ 466 → NaN in torch.
	scale := FP8WeightScale(1)
	if _, err := QuantizeFP8("w", []float32{1, -1}, scale, safetensors.F32); err != nil {
		t.Fatalf("in range: %v", err)
	}
	_, err := QuantizeFP8("model.layers.0.mlp.down_proj.weight", []float32{0.5, 1.04}, scale, safetensors.F32)
	var oe *OverflowError
	if !errors.As(err, &oe) || oe.Index != 1 || oe.Tensor != "model.layers.0.mlp.down_proj.weight" || oe.ExitCode() != 1 {
		t.Fatalf("err = %v, want an OverflowError for element 1", err)
	}
	// A zero scale (all-zero weight) gives zero codes, not NaN.
	got, err := QuantizeFP8("w", []float32{0, 0}, 0, safetensors.BF16)
	if err != nil || !bytes.Equal(got, []byte{0, 0}) {
		t.Fatalf("zero scale: % x, %v", got, err)
	}
}

// TestQuantizeNVFP4Hand checks NVFP4 bytes computed by hand. amax 2.625 =
// 2688/1024 makes weight_scale_2 = 2^-10 and 6·weight_scale_2 = 0.005859375
// exact, so every step below is exact arithmetic.
func TestQuantizeNVFP4Hand(t *testing.T) {
	s2 := NVFP4WeightScale2(2.625)
	if s2 != 0.0009765625 {
		t.Fatalf("weight_scale_2 = %g, want 2^-10", s2)
	}
	// Block 0: amax 2.625 → s = 2.625/0.005859375 = 448 → 0x7E; d = 448·2^-10
	// = 0.4375; each w is 0.4375·x for the x in the comment.
	block0 := []float32{
		2.625,    // x=6 → code 7
		-2.625,   // x=-6 → 15
		0.109375, // x=0.25 (tie 0/0.5) → 0
		0.328125, // x=0.75 (tie 0.5/1) → 2
		0.546875, // x=1.25 (tie 1/1.5) → 2
		0.765625, // x=1.75 (tie 1.5/2) → 4
		1.09375,  // x=2.5 (tie 2/3) → 4
		1.53125,  // x=3.5 (tie 3/4) → 6
		2.1875,   // x=5 (tie 4/6) → 6
		2.40625,  // x=5.5 → 7 (6)
		-0.03125, // x=-0.0714 → rounds to zero, negative → 8 (-0)
		0,        // 0
		0.4375,   // x=1 → 2
		-1.3125,  // x=-3 → 13
		0.25,     // x=0.571 → 1 (0.5)
		-1.84375, // x=-4.214 → 14 (-4)
	}
	want0 := []byte{0xF7, 0x20, 0x42, 0x64, 0x76, 0x08, 0xD2, 0xE1}
	// Block 1: amax 0.21875 → s = 37.33 = 32·1.1667 → m=1 → 36 = 0x61; d =
	// 36·2^-10; 0.21875/d = 6.22 → 7.
	// Block 2: all zero → s = 0 → 1 → 0x38; codes 0.
	// Block 3: amax 2^-20 → s = 1.6e-4, clamped to 2^-9 → 0x01; d = 2^-19;
	// 2^-20/d = 0.5 → code 1.
	w := make([]float32, 64)
	copy(w, block0)
	w[16] = 0.21875
	w[48] = float32(math.Ldexp(1, -20))
	packed, scales := QuantizeNVFP4(w, 1, 64, s2)
	wantPacked := append(append([]byte{}, want0...),
		0x07, 0, 0, 0, 0, 0, 0, 0,
		0, 0, 0, 0, 0, 0, 0, 0,
		0x01, 0, 0, 0, 0, 0, 0, 0)
	if !bytes.Equal(packed, wantPacked) {
		t.Errorf("packed\n % x\nwant\n % x", packed, wantPacked)
	}
	if want := []byte{0x7E, 0x61, 0x38, 0x01}; !bytes.Equal(scales, want) {
		t.Errorf("block scales % x, want % x", scales, want)
	}

	// K = 20 is zero-padded to 32: block 1 holds 0.21875, 0, 0, -0.21875.
	wp := append(append([]float32{}, block0...), 0.21875, 0, 0, -0.21875)
	packed, scales = QuantizeNVFP4(wp, 1, 20, s2)
	if want := append(append([]byte{}, want0...), 0x07, 0xF0, 0, 0, 0, 0, 0, 0); !bytes.Equal(packed, want) {
		t.Errorf("padded packed % x, want % x", packed, want)
	}
	if want := []byte{0x7E, 0x61}; !bytes.Equal(scales, want) {
		t.Errorf("padded block scales % x, want % x", scales, want)
	}
	// Dequantization inverts the grid values exactly.
	deq := DequantizeNVFP4(packed, scales, 1, 20, s2)
	wantDeq := []float32{2.625, -2.625, 0, 0.4375, 0.4375, 0.875, 0.875, 1.75, 1.75, 2.625, 0, 0, 0.4375, -1.3125, 0.21875, -1.75,
		0.2109375, 0, 0, -0.2109375}
	for i := range wantDeq {
		if deq[i] != wantDeq[i] && !(wantDeq[i] == 0 && deq[i] == 0) {
			t.Errorf("dequantized[%d] = %g, want %g", i, deq[i], wantDeq[i])
		}
	}
}

func TestScalesHand(t *testing.T) {
	nan := float32(math.NaN())
	cases := []struct {
		name      string
		got, want float32
	}{
		{"fp8 input 3.5", FP8InputScale(3.5), 0.0078125},
		{"fp8 input 448", FP8InputScale(448), 1},
		{"fp8 input 0 → maxbound", FP8InputScale(0), 1},
		{"fp8 input NaN → maxbound", FP8InputScale(nan), 1},
		{"nvfp4 input 2.625", NVFP4InputScale(2.625), 0.0009765625},
		{"nvfp4 input 0 → 6/2688", NVFP4InputScale(0), float32(1.0 / 448)},
		{"nvfp4 input 2688", NVFP4InputScale(2688), 1},
		{"kv 3.5", KVScale(3.5), 0.0078125},
		{"kv 0 (no clamp)", KVScale(0), 0},
		{"kv 896", KVScale(896), 2},
		{"export_amax negative → tiny", ExportAmax(-1, 448), float32(math.Ldexp(1, -126))},
		{"export_amax +Inf → max", ExportAmax(float32(math.Inf(1)), 448), math.MaxFloat32},
		{"fp8 weight 0 stays 0", FP8WeightScale(0), 0},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s: %g, want %g", c.name, c.got, c.want)
		}
	}
}

// golden is testdata/golden.json, written by testdata/torch_golden.py:
// ModelOpt's export formulas run by torch 2.11 on CPU and on CUDA.
type golden struct {
	Torch string `json:"torch"`
	FP8   []struct {
		DType string `json:"dtype"`
		Shape []int  `json:"shape"`
		W     string `json:"w"`
		Amax  string `json:"amax"`
		Scale string `json:"scale"`
		QCPU  string `json:"q_cpu"`
		QCUDA string `json:"q_cuda"`
	} `json:"fp8"`
	NVFP4 []struct {
		DType      string `json:"dtype"`
		Shape      []int  `json:"shape"`
		W          string `json:"w"`
		Amax       string `json:"amax"`
		Scale2     string `json:"scale_2_cuda"`
		PackedCUDA string `json:"packed_cuda"`
		ScalesCUDA string `json:"block_scale_cuda"`
		PackedCPU  string `json:"packed_cpu"`
		ScalesCPU  string `json:"block_scale_cpu"`
	} `json:"nvfp4"`
	Scales []struct {
		Amax     string `json:"amax"`
		FP8      string `json:"fp8_cuda"`
		NVFP4    string `json:"nvfp4_cuda"`
		FP8CPU   string `json:"fp8_cpu"`
		NVFP4CPU string `json:"nvfp4_cpu"`
	} `json:"scales"`
}

func loadGolden(t *testing.T) *golden {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatal(err)
	}
	if len(g.FP8) == 0 || len(g.NVFP4) == 0 || g.FP8[0].QCUDA == "" {
		t.Fatal("golden.json lacks the CUDA results")
	}
	return &g
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func hexF32(t *testing.T, s string) float32 {
	return math.Float32frombits(binary.LittleEndian.Uint32(mustHex(t, s)))
}

func decodeGolden(t *testing.T, dtype, s string) []float32 {
	v, err := numerics.DecodeFloats(dtype, mustHex(t, s))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestFP8GoldenTorch compares QuantizeFP8 with torch's CUDA results byte
// for byte, and records how often torch's CPU kernel (float32 scale)
// differs.
func TestFP8GoldenTorch(t *testing.T) {
	g := loadGolden(t)
	for _, c := range g.FP8 {
		w := decodeGolden(t, c.DType, c.W)
		scale := FP8WeightScale(hexF32(t, c.Amax))
		if want := hexF32(t, c.Scale); scale != want {
			t.Errorf("%s: scale %g, torch %g", c.DType, scale, want)
		}
		got, err := QuantizeFP8("w", w, scale, safetensors.DType(c.DType))
		if err != nil {
			t.Fatal(err)
		}
		if want := mustHex(t, c.QCUDA); !bytes.Equal(got, want) {
			t.Errorf("%s: %d of %d codes differ from torch CUDA", c.DType, differing(got, want), len(want))
		}
		t.Logf("%s: torch CPU (float32 scale) differs from CUDA in %d of %d codes", c.DType, differing(mustHex(t, c.QCPU), mustHex(t, c.QCUDA)), len(got))
	}
}

func differing(a, b []byte) int {
	n := 0
	for i := range a {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}

func TestNVFP4GoldenTorch(t *testing.T) {
	g := loadGolden(t)
	for _, c := range g.NVFP4 {
		w := decodeGolden(t, c.DType, c.W)
		s2 := NVFP4WeightScale2(hexF32(t, c.Amax))
		if want := hexF32(t, c.Scale2); s2 != want {
			t.Errorf("%s %v: weight_scale_2 %g, torch %g", c.DType, c.Shape, s2, want)
		}
		packed, scales := QuantizeNVFP4(w, c.Shape[0], c.Shape[1], s2)
		for _, dev := range []struct{ name, packed, scales string }{{"cuda", c.PackedCUDA, c.ScalesCUDA}, {"cpu", c.PackedCPU, c.ScalesCPU}} {
			if want := mustHex(t, dev.packed); !bytes.Equal(packed, want) {
				t.Errorf("%s %v: %d of %d packed bytes differ from torch %s", c.DType, c.Shape, differing(packed, want), len(want), dev.name)
			}
			if want := mustHex(t, dev.scales); !bytes.Equal(scales, want) {
				t.Errorf("%s %v: block scales differ from torch %s", c.DType, c.Shape, dev.name)
			}
		}
	}
}

// TestScalesGoldenTorch compares the scalar scales with torch on CUDA
// (x · float32(1/c)) and counts how often torch's CPU division differs.
func TestScalesGoldenTorch(t *testing.T) {
	g := loadGolden(t)
	cpuDiff := 0
	for _, c := range g.Scales {
		a := hexF32(t, c.Amax)
		if got, want := FP8InputScale(a), hexF32(t, c.FP8); got != want {
			t.Errorf("amax %g: FP8 input scale %g, torch %g", a, got, want)
		}
		if got, want := NVFP4InputScale(a), hexF32(t, c.NVFP4); got != want {
			t.Errorf("amax %g: NVFP4 input scale %g, torch %g", a, got, want)
		}
		if got, want := NVFP4WeightScale2(a), hexF32(t, c.NVFP4); got != want {
			t.Errorf("amax %g: NVFP4 weight_scale_2 %g, torch %g", a, got, want)
		}
		if got, want := KVScale(a), hexF32(t, c.FP8); got != want {
			t.Errorf("amax %g: KV scale %g, torch %g", a, got, want)
		}
		if c.FP8CPU != c.FP8 || c.NVFP4CPU != c.NVFP4 {
			cpuDiff++
		}
	}
	t.Logf("torch's CPU division differs from CUDA in the last bit for %d of %d amax values", cpuDiff, len(g.Scales))
}

// TestFP8DoubleRounding measures how many FP8 codes of a bf16 model change
// because the quotient is rounded to bf16 (with the scale cast to bf16)
// before the E4M3 cast, against one float32 rounding e4m3(w/scale). On
// normal weights it is a few percent of the codes.
func TestFP8DoubleRounding(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	w := make([]float32, 1<<16)
	var amax float32
	for i := range w {
		w[i] = numerics.RoundBF16(float32(r.NormFloat64() * 0.02))
		amax = max(amax, float32(math.Abs(float64(w[i]))))
	}
	scale := FP8WeightScale(amax)
	got, err := QuantizeFP8("w", w, scale, safetensors.BF16)
	if err != nil {
		t.Fatal(err)
	}
	diff := 0
	for i, v := range w {
		if numerics.F32ToE4M3(v/scale) != got[i] {
			diff++
		}
	}
	frac := float64(diff) / float64(len(w))
	t.Logf("bf16 rounding points change %d of %d codes (%.2f%%) against one float32 rounding", diff, len(w), 100*frac)
	if frac < 0.005 || frac > 0.10 {
		t.Errorf("%.2f%% of codes differ; expected a few percent", 100*frac)
	}
}

func TestRelativeError(t *testing.T) {
	rel, mx := RelativeError([]float32{3, 4}, []float32{3, 3})
	if rel != 0.2 || mx != 1 {
		t.Errorf("RelativeError = %g, %g; want 0.2, 1", rel, mx)
	}
	if rel, _ := RelativeError([]float32{0, 0}, []float32{0, 0}); rel != 0 {
		t.Errorf("zero reference, equal: %g", rel)
	}
	if rel, _ := RelativeError([]float32{0}, []float32{1}); !math.IsInf(rel, 1) {
		t.Errorf("zero reference, different: %g", rel)
	}
}

// TestE2M1Fast checks the branch-free encoder against numerics.F32ToE2M1:
// every 211th float32 bit pattern, both signs, and every pattern within 64
// ulps of each boundary, of ±0, ±Inf and the NaNs.
func TestE2M1Fast(t *testing.T) {
	check := func(u uint32) {
		x := math.Float32frombits(u)
		if got, want := e2m1(x), numerics.F32ToE2M1(x); got != want {
			t.Fatalf("e2m1(%g, %#08x) = %d, numerics %d", x, u, got, want)
		}
	}
	for u := uint64(0); u < 1<<32; u += 211 {
		check(uint32(u))
	}
	centers := append(e2m1Bounds[:], 0, 0x7F800000, 0x7FC00000, 0x3F800000, 0x40C00000)
	for _, c := range centers {
		for d := uint32(0); d < 64; d++ {
			for _, sign := range []uint32{0, 0x80000000} {
				check((c + d) | sign)
				check((c - d) | sign)
			}
		}
	}
}

// TestParallelQuantization checks that large tensors, quantized over
// several goroutines, give the same bytes as row-by-row (single-goroutine)
// quantization, and that the first overflowing element is reported
// whatever the split.
func TestParallelQuantization(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	const rows, cols = 300, 1000 // 300000 elements: 4 chunks that split rows
	r := rand.New(rand.NewPCG(3, 4))
	w := make([]float32, rows*cols)
	var amax float32
	for i := range w {
		w[i] = numerics.RoundBF16(float32(r.NormFloat64() * 0.05))
		amax = max(amax, float32(math.Abs(float64(w[i]))))
	}
	s2 := NVFP4WeightScale2(amax)
	packed, scales := QuantizeNVFP4(w, rows, cols, s2)
	kp := PaddedCols(cols)
	for row := 0; row < rows; row++ {
		p, s := QuantizeNVFP4(w[row*cols:(row+1)*cols], 1, cols, s2)
		if !bytes.Equal(p, packed[row*kp/2:(row+1)*kp/2]) || !bytes.Equal(s, scales[row*kp/16:(row+1)*kp/16]) {
			t.Fatalf("row %d differs from its single-row quantization", row)
		}
	}
	scale := FP8WeightScale(amax)
	q, err := QuantizeFP8("w", w, scale, safetensors.BF16)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 77777, len(w) - 1} {
		one, _ := QuantizeFP8("w", w[i:i+1], scale, safetensors.BF16)
		if one[0] != q[i] {
			t.Errorf("FP8 element %d: %#x, alone %#x", i, q[i], one[0])
		}
	}
	bad := append([]float32(nil), w...)
	bad[250000], bad[160000] = 10*amax, -10*amax
	var oe *OverflowError
	if _, err := QuantizeFP8("w", bad, scale, safetensors.BF16); !errors.As(err, &oe) || oe.Index != 160000 {
		t.Errorf("overflow: %v, want element 160000", err)
	}
}
