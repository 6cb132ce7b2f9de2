package cuda

import (
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/ptqgate/ptqgate/ptqcore/backend"
	"github.com/ptqgate/ptqgate/ptqcore/backend/cpu"
	"github.com/ptqgate/ptqgate/ptqcore/numerics"
)

func TestGemmTiles(t *testing.T) {
	got, err := gemmTiles([]int{0, 0, 130, 131, 131}, 128)
	if err != nil {
		t.Fatal(err)
	}
	want := []int32{0, 130, 1, 128, 130, 1, 130, 131, 2}
	if !slices.Equal(got, want) {
		t.Errorf("tiles %v, want %v", got, want)
	}
	for _, bad := range [][]int{{1, 2}, {0}, {0, 5, 3}} {
		if _, err := gemmTiles(bad, 64); err == nil {
			t.Errorf("offsets %v accepted", bad)
		}
	}
}

func TestAttentionTilesAndRowStarts(t *testing.T) {
	if got := attentionTiles([]int{1, 130}, 64); !slices.Equal(got, []int32{0, 1, 0, 1, 130, 0, 1, 130, 64, 1, 130, 128}) {
		t.Errorf("tiles %v", got)
	}
	if got := rowStarts([]int{2, 3}); !slices.Equal(got, []int32{0, 0, 2, 2, 2}) {
		t.Errorf("row starts %v", got)
	}
}

func TestScatterOrder(t *testing.T) {
	order, start, err := scatterOrder([]int32{2, 0, 2, 1, 2}, 4)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(start, []int32{0, 1, 2, 5, 5}) || !slices.Equal(order, []int32{1, 3, 0, 2, 4}) {
		t.Errorf("order %v start %v", order, start)
	}
	if _, _, err := scatterOrder([]int32{4}, 4); !errors.Is(err, backend.ErrShape) {
		t.Errorf("index out of range: %v", err)
	}
}

// TestRopeTablesMatchTheCPUBackend reads the CPU backend's cos/sin by
// rotating unit vectors (x1 = 1, x2 = 0 gives x1' = cos, x2' = sin).
func TestRopeTablesMatchTheCPUBackend(t *testing.T) {
	const rot, positions = 64, 300
	for _, dt := range []backend.DType{backend.F32, backend.BF16, backend.F16} {
		be := cpu.New()
		data := make([]float32, positions*rot)
		pos := make([]int32, positions)
		for p := range pos {
			pos[p] = int32(p)
			for i := 0; i < rot/2; i++ {
				data[p*rot+i] = 1
			}
		}
		x, err := be.Upload(positions, rot, data)
		if err != nil {
			t.Fatal(err)
		}
		if err := be.RoPE(x, backend.RoPESpec{Heads: 1, HeadDim: rot, RotaryDim: rot, Theta: 1e6, Positions: pos}, dt); err != nil {
			t.Fatal(err)
		}
		cos, sin := ropeTables(1e6, rot, positions, dt)
		out := x.(*cpu.Tensor).Data()
		for p := 0; p < positions; p++ {
			for i := 0; i < rot/2; i++ {
				c, s := out[p*rot+i], out[p*rot+rot/2+i]
				if math.Float32bits(c) != math.Float32bits(cos[p*rot/2+i]) || math.Float32bits(s) != math.Float32bits(sin[p*rot/2+i]) {
					t.Fatalf("%v position %d pair %d: table %g/%g, CPU backend %g/%g", dt, p, i, cos[p*rot/2+i], sin[p*rot/2+i], c, s)
				}
			}
		}
	}
}

func TestPackingRoundTrips(t *testing.T) {
	src := []float32{0, 1, -2.5, float32(math.Inf(-1)), numerics.RoundBF16(3.14159), 1e-30}
	if bf16Exact(src[:5]) != true || bf16Exact([]float32{1.0000001}) {
		t.Error("bf16Exact misjudges")
	}
	b := make([]byte, 2*len(src))
	packBF16(b, src)
	back := make([]float32, len(src))
	unpackBF16(back, b)
	for i, v := range src {
		if back[i] != numerics.RoundBF16(v) {
			t.Errorf("bf16 %d: %g → %g", i, v, back[i])
		}
	}
	f := make([]byte, 4*len(src))
	packF32(f, src)
	unpackF32(back, f)
	if !slices.Equal(back, src) {
		t.Errorf("f32 round trip %v", back)
	}
	got := amaxValues([]uint32{0, 0x3f800000, 0x7f800000, 0x7fc00000})
	if got[0] != 0 || got[1] != 1 || !math.IsInf(float64(got[2]), 1) || !math.IsNaN(float64(got[3])) {
		t.Errorf("amax values %v", got)
	}
}

func TestOptionsFromEnv(t *testing.T) {
	env := map[string]string{EnvDevices: "0, 2", EnvWeights: "stream", EnvWeightBudget: "1.5GiB", EnvStreamWindow: "512MiB", EnvReserve: "1024"}
	o, err := OptionsFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.Devices, []int{0, 2}) || o.Weights != WeightsStream || o.WeightBudget != 3<<29 || o.StreamWindow != 512<<20 || o.Reserve != 1024 {
		t.Errorf("options %+v", o)
	}
	for k, v := range map[string]string{EnvDevices: "a", EnvWeights: "disk", EnvWeightBudget: "lots", EnvReserve: "-1G"} {
		if _, err := OptionsFromEnv(func(key string) string {
			if key == k {
				return v
			}
			return ""
		}); err == nil {
			t.Errorf("%s=%q accepted", k, v)
		}
	}
	if o, err := OptionsFromEnv(func(string) string { return "" }); err != nil || o.Weights != WeightsAuto || o.Devices != nil {
		t.Errorf("defaults %+v %v", o, err)
	}
}

func TestStreamPolicyPlansAndEvicts(t *testing.T) {
	p := &streamPolicy{window: 100}
	a, b, c, d := p.add(40), p.add(30), p.add(50), p.add(20)
	// Before anything is learned the plan follows upload order.
	p.touch(a)
	if got := p.plan(); !slices.Equal(got, []*streamEntry{a, b}) {
		t.Errorf("plan %v", ids(got))
	}
	// The forward uses a, c, b, d: learn that order.
	for _, e := range []*streamEntry{c, b, d, a} {
		p.touch(e)
	}
	if got := p.plan(); !slices.Equal(got, []*streamEntry{a, c}) {
		t.Errorf("learned plan %v, want a then c", ids(got))
	}
	p.touch(c)
	if got := p.plan(); !slices.Equal(got, []*streamEntry{c, b, d}) {
		t.Errorf("plan from c %v", ids(got))
	}
	// Eviction: least recently used first, never pinned or protected.
	for _, e := range []*streamEntry{a, b, c, d} {
		e.state = stateResident
	}
	p.used = 140
	b.pins = 1
	v, ok := p.victims(20, map[*streamEntry]bool{c: true})
	// a (lastUse 5) then d (4) ... by lastUse: d=4, a=5; b pinned, c protected.
	if !ok || !slices.Equal(v, []*streamEntry{d, a}) {
		t.Errorf("victims %v ok %v", ids(v), ok)
	}
	if _, ok := p.victims(1000, nil); ok {
		t.Error("an impossible request reports ok")
	}
	a.dead = true
	if v, _ := p.victims(60, nil); slices.Contains(v, a) {
		t.Error("a dead entry was chosen")
	}
	if got := p.largest(); got != 50 {
		t.Errorf("largest %d", got)
	}
}

func ids(es []*streamEntry) []int {
	out := make([]int, len(es))
	for i, e := range es {
		out[i] = e.id
	}
	return out
}
