package numerics

import (
	"math"
	"sort"
	"testing"
)

// grid is an independent reference for round-to-nearest-even casts: the
// finite non-negative values of a format by code, found by search, with
// ties broken by the parity of the code, and values beyond the largest
// finite value rounding to overflowCode (NaN or Inf) when they reach the
// midpoint towards the next (absent) binade step.
type grid struct {
	vals         []float64 // value of code i, for codes 0..len-1, ascending
	codes        []uint32
	overflow     float64 // the first value that no longer rounds to the largest finite code (a tie goes to overflow iff overflowEven)
	overflowEven bool
	overflowCode uint32
}

func newGrid(decode func(uint32) float64, maxCode uint32, overflowCode uint32) grid {
	g := grid{overflowCode: overflowCode}
	for c := uint32(0); c <= maxCode; c++ {
		g.vals = append(g.vals, decode(c))
		g.codes = append(g.codes, c)
	}
	top, below := g.vals[len(g.vals)-1], g.vals[len(g.vals)-2]
	g.overflow = top + (top-below)/2
	g.overflowEven = overflowCode%2 == 0
	return g
}

// round returns the code of |x| (x ≥ 0).
func (g grid) round(x float64) uint32 {
	if x > g.overflow || (x == g.overflow && g.overflowEven) {
		return g.overflowCode
	}
	i := sort.SearchFloat64s(g.vals, x)
	if i == len(g.vals) {
		return g.codes[len(g.codes)-1]
	}
	if g.vals[i] == x || i == 0 {
		return g.codes[i]
	}
	lo, hi := g.vals[i-1], g.vals[i]
	switch {
	case x-lo < hi-x:
		return g.codes[i-1]
	case x-lo > hi-x:
		return g.codes[i]
	}
	if g.codes[i-1]%2 == 0 {
		return g.codes[i-1]
	}
	return g.codes[i]
}

// sweep calls f on a spread of float32 values covering every exponent:
// every 4099th finite non-negative bit pattern plus the patterns around each
// power of two.
func sweep(f func(x float32)) {
	for u := uint64(0); u < 0x7F800000; u += 4099 {
		f(math.Float32frombits(uint32(u)))
	}
	for e := uint32(0); e < 255; e++ {
		for d := int64(-3); d <= 3; d++ {
			u := int64(e)<<23 + d
			if u >= 0 && u < 0x7F800000 {
				f(math.Float32frombits(uint32(u)))
			}
		}
	}
}

func TestE4M3Table(t *testing.T) {
	want := map[uint8]float32{0x00: 0, 0x01: 0.001953125, 0x07: 7.0 / 512, 0x08: 1.0 / 64, 0x38: 1, 0x3C: 1.5, 0x44: 3, 0x4C: 6,
		0x78: 256, 0x7D: 416, 0x7E: 448, 0xB8: -1, 0xFE: -448, 0x1D: 0.1015625}
	for c, v := range want {
		if got := E4M3ToF32(c); got != v {
			t.Errorf("E4M3ToF32(%#02x) = %v, want %v", c, got, v)
		}
	}
	if got := E4M3ToF32(0x80); got != 0 || !math.Signbit(float64(got)) {
		t.Errorf("0x80 = %v, want -0", got)
	}
	nans := 0
	for c := 0; c < 256; c++ {
		v := E4M3ToF32(uint8(c))
		if v != v {
			nans++
			if c != 0x7F && c != 0xFF {
				t.Errorf("%#02x decodes to NaN", c)
			}
			continue
		}
		if math.IsInf(float64(v), 0) {
			t.Errorf("%#02x decodes to Inf", c)
		}
		// every finite code round-trips
		if got := F32ToE4M3(v); got != uint8(c) && !(v == 0 && got == uint8(c)) {
			t.Errorf("F32ToE4M3(E4M3ToF32(%#02x) = %v) = %#02x", c, v, got)
		}
	}
	if nans != 2 {
		t.Errorf("%d NaN codes, want 2", nans)
	}
}

func TestE4M3Rounding(t *testing.T) {
	// Every midpoint between neighbouring codes rounds to the even code, and
	// the float32 values just below/above it round down/up.
	checked := 0
	for c := uint8(0); c < 0x7E; c++ {
		lo, hi := E4M3ToF32(c), E4M3ToF32(c+1)
		mid := (lo + hi) / 2 // exact in float32
		even := c
		if c%2 == 1 {
			even = c + 1
		}
		for _, sign := range []float32{1, -1} {
			s := uint8(0)
			if sign < 0 {
				s = 0x80
			}
			if got := F32ToE4M3(sign * mid); got != s|even {
				t.Errorf("F32ToE4M3(%v) = %#02x, want %#02x (tie to even)", sign*mid, got, s|even)
			}
			below := math.Nextafter32(mid, 0)
			above := math.Nextafter32(mid, float32(math.Inf(1)))
			if got := F32ToE4M3(sign * below); got != s|c {
				t.Errorf("F32ToE4M3(%v) = %#02x, want %#02x", sign*below, got, s|c)
			}
			if got := F32ToE4M3(sign * above); got != s|(c+1) {
				t.Errorf("F32ToE4M3(%v) = %#02x, want %#02x", sign*above, got, s|(c+1))
			}
		}
		checked++
	}
	if checked != 126 {
		t.Errorf("checked %d midpoints, want 126", checked)
	}
	inf := float32(math.Inf(1))
	cases := []struct {
		x    float32
		want uint8
	}{
		{448, 0x7E}, {449, 0x7E}, {456, 0x7E}, {464, 0x7E}, {math.Nextafter32(464, inf), 0x7F}, {465, 0x7F}, {479.99, 0x7F},
		{480, 0x7F}, {500, 0x7F}, {1e6, 0x7F}, {inf, 0x7F}, {-464, 0xFE}, {-465, 0xFF}, {-inf, 0xFF},
		{float32(math.NaN()), 0x7F}, {math.Float32frombits(0xFFC00000), 0xFF},
		{0.1, 0x1D}, {1.0 / 1024, 0x00}, {3.0 / 1024, 0x02}, {5.0 / 1024, 0x02}, {7.0 / 1024, 0x04}, {1e-10, 0x00}, {-1e-10, 0x80},
		{float32(math.Copysign(0, -1)), 0x80}, {0, 0x00}, {1, 0x38}, {-2, 0xC0},
	}
	for _, tc := range cases {
		if got := F32ToE4M3(tc.x); got != tc.want {
			t.Errorf("F32ToE4M3(%v) = %#02x, want %#02x", tc.x, got, tc.want)
		}
	}
	// against the independent reference over a sweep of float32 values
	g := newGrid(func(c uint32) float64 { return float64(E4M3ToF32(uint8(c))) }, 0x7E, 0x7F)
	sweep(func(x float32) {
		want := uint8(g.round(float64(x)))
		if got := F32ToE4M3(x); got != want {
			t.Fatalf("F32ToE4M3(%v = %#08x) = %#02x, reference %#02x", x, math.Float32bits(x), got, want)
		}
		if got := F32ToE4M3(-x); got != want|0x80 {
			t.Fatalf("F32ToE4M3(%v) = %#02x, reference %#02x", -x, got, want|0x80)
		}
	})
}

func TestE4M3Sat(t *testing.T) {
	for _, tc := range []struct {
		x    float32
		want uint8
	}{{465, 0x7E}, {1e9, 0x7E}, {float32(math.Inf(1)), 0x7E}, {-1e9, 0xFE}, {float32(math.NaN()), 0x7F}, {1.5, 0x3C}} {
		if got := F32ToE4M3Sat(tc.x); got != tc.want {
			t.Errorf("F32ToE4M3Sat(%v) = %#02x, want %#02x", tc.x, got, tc.want)
		}
	}
}

func TestE5M2(t *testing.T) {
	want := map[uint8]float32{0x3C: 1, 0x7B: 57344, 0x01: 1.0 / 65536, 0x04: 1.0 / 16384, 0xBC: -1}
	for c, v := range want {
		if got := E5M2ToF32(c); got != v {
			t.Errorf("E5M2ToF32(%#02x) = %v, want %v", c, got, v)
		}
	}
	if !math.IsInf(float64(E5M2ToF32(0x7C)), 1) || !math.IsInf(float64(E5M2ToF32(0xFC)), -1) {
		t.Error("0x7C/0xFC are not ±Inf")
	}
	for c := 0; c < 256; c++ {
		v := E5M2ToF32(uint8(c))
		isNaN := c&0x7F > 0x7C
		if (v != v) != isNaN {
			t.Errorf("%#02x: NaN %v, want %v", c, v != v, isNaN)
		}
		if !isNaN {
			if got := F32ToE5M2(v); got != uint8(c) {
				t.Errorf("F32ToE5M2(E5M2ToF32(%#02x)) = %#02x", c, got)
			}
		}
	}
	inf := float32(math.Inf(1))
	for _, tc := range []struct {
		x    float32
		want uint8
	}{{61439, 0x7B}, {61440, 0x7C}, {1e6, 0x7C}, {inf, 0x7C}, {-inf, 0xFC}, {-61440, 0xFC}, {float32(math.NaN()), 0x7F},
		{1.0 / 131072, 0x00}, {3.0 / 131072, 0x02}, {-1e-9, 0x80}} {
		if got := F32ToE5M2(tc.x); got != tc.want {
			t.Errorf("F32ToE5M2(%v) = %#02x, want %#02x", tc.x, got, tc.want)
		}
	}
	g := newGrid(func(c uint32) float64 { return float64(E5M2ToF32(uint8(c))) }, 0x7B, 0x7C)
	sweep(func(x float32) {
		want := uint8(g.round(float64(x)))
		if got := F32ToE5M2(x); got != want {
			t.Fatalf("F32ToE5M2(%v) = %#02x, reference %#02x", x, got, want)
		}
	})
}

func TestBF16(t *testing.T) {
	for _, tc := range []struct {
		x    float32
		want uint16
	}{{1, 0x3F80}, {-2, 0xC000}, {float32(math.NaN()), 0x7FC0}, {math.Float32frombits(0xFF800001), 0x7FC0},
		{math.Float32frombits(0x3F808000), 0x3F80}, {math.Float32frombits(0x3F818000), 0x3F82}, {math.Float32frombits(0x3F808001), 0x3F81},
		{math.Float32frombits(0x7F7FFFFF), 0x7F80}, {float32(math.Inf(-1)), 0xFF80}, {465, 0x43E8}} {
		if got := F32ToBF16(tc.x); got != tc.want {
			t.Errorf("F32ToBF16(%v) = %#04x, want %#04x", tc.x, got, tc.want)
		}
	}
	// bf16(465) = 464, which E4M3 then rounds to 448 (transformers.md §9)
	if got := F32ToE4M3(RoundBF16(465)); got != 0x7E {
		t.Errorf("E4M3(bf16(465)) = %#02x, want 0x7E", got)
	}
	for c := 0; c < 1<<16; c++ {
		v := BF16ToF32(uint16(c))
		if v != v {
			continue
		}
		if got := F32ToBF16(v); got != uint16(c) {
			t.Fatalf("F32ToBF16(BF16ToF32(%#04x)) = %#04x", c, got)
		}
	}
	g := newGrid(func(c uint32) float64 { return float64(BF16ToF32(uint16(c))) }, 0x7F7F, 0x7F80)
	sweep(func(x float32) {
		want := uint16(g.round(float64(x)))
		if got := F32ToBF16(x); got != want {
			t.Fatalf("F32ToBF16(%v = %#08x) = %#04x, reference %#04x", x, math.Float32bits(x), got, want)
		}
		if got := RoundBF16(-x); got != -BF16ToF32(want) {
			t.Fatalf("RoundBF16(%v) = %v", -x, got)
		}
	})
}

func TestF16(t *testing.T) {
	for _, tc := range []struct {
		x    float32
		want uint16
	}{{1, 0x3C00}, {65504, 0x7BFF}, {65519, 0x7BFF}, {65520, 0x7C00}, {float32(math.Inf(-1)), 0xFC00},
		{float32(math.NaN()), 0x7E00}, {1.0 / (1 << 24), 0x0001}, {1.0 / (1 << 25), 0x0000}, {3.0 / (1 << 25), 0x0002},
		{math.Nextafter32(1.0/(1<<25), 1), 0x0001}, {1e-30, 0}, {-1e-30, 0x8000}, {6.1035156e-05, 0x0400}} {
		if got := F32ToF16(tc.x); got != tc.want {
			t.Errorf("F32ToF16(%v) = %#04x, want %#04x", tc.x, got, tc.want)
		}
	}
	for c := 0; c < 1<<16; c++ {
		v := F16ToF32(uint16(c))
		isNaN := c&0x7C00 == 0x7C00 && c&0x3FF != 0
		if (v != v) != isNaN {
			t.Fatalf("%#04x: NaN %v", c, v != v)
		}
		if !isNaN {
			if got := F32ToF16(v); got != uint16(c) {
				t.Fatalf("F32ToF16(F16ToF32(%#04x) = %v) = %#04x", c, v, got)
			}
		}
	}
	// every midpoint between neighbouring halves, and its neighbours
	for c := uint16(0); c < 0x7BFF; c++ {
		lo, hi := F16ToF32(c), F16ToF32(c+1)
		mid := (lo + hi) / 2
		even := c + c%2
		if got := F32ToF16(mid); got != even {
			t.Fatalf("F32ToF16(mid %v) = %#04x, want %#04x", mid, got, even)
		}
		if got := F32ToF16(math.Nextafter32(mid, 0)); got != c {
			t.Fatalf("just below mid %v: %#04x, want %#04x", mid, got, c)
		}
		if got := F32ToF16(math.Nextafter32(mid, 1e9)); got != c+1 {
			t.Fatalf("just above mid %v: %#04x, want %#04x", mid, got, c+1)
		}
	}
	g := newGrid(func(c uint32) float64 { return float64(F16ToF32(uint16(c))) }, 0x7BFF, 0x7C00)
	sweep(func(x float32) {
		want := uint16(g.round(float64(x)))
		if got := F32ToF16(x); got != want {
			t.Fatalf("F32ToF16(%v) = %#04x, reference %#04x", x, got, want)
		}
		if got := RoundF16(x); got != F16ToF32(want) {
			t.Fatalf("RoundF16(%v) = %v", x, got)
		}
	})
}

func TestE8M0(t *testing.T) {
	for c := 0; c < 255; c++ {
		v := E8M0ToF32(uint8(c))
		if float64(v) != math.Ldexp(1, c-127) {
			t.Fatalf("E8M0ToF32(%d) = %v", c, v)
		}
		if got := F32ToE8M0(v); got != uint8(c) {
			t.Fatalf("F32ToE8M0(2^%d) = %d", c-127, got)
		}
	}
	if v := E8M0ToF32(0xFF); v == v {
		t.Error("0xFF is not NaN")
	}
	inf := float32(math.Inf(1))
	for _, tc := range []struct {
		x    float32
		want uint8
	}{{1.25, 127}, {1.414, 127}, {1.5, 128}, {1.75, 128}, {3, 129}, {0.75, 127}, {0.1, 124}, {1e38, 253}, {-1, 127}, {-1.5, 128},
		{0, 0}, {float32(math.Copysign(0, -1)), 0}, {inf, 0xFF}, {-inf, 0xFF}, {float32(math.NaN()), 0xFF},
		{math.Float32frombits(0x00400000), 0}, {math.Float32frombits(0x00600000), 1}, {math.Float32frombits(0x00400001), 1},
		{math.Nextafter32(1.5, 0), 127}, {3.0e38, 255}} {
		if got := F32ToE8M0(tc.x); got != tc.want {
			t.Errorf("F32ToE8M0(%v) = %d, want %d", tc.x, got, tc.want)
		}
	}
	// reference for normal numbers via Frexp: significand ≥ 1.5 rounds up
	sweep(func(x float32) {
		if x == 0 || math.Float32bits(x) < 0x00800000 {
			return
		}
		frac, exp := math.Frexp(float64(x))
		want := exp - 1 + 127
		if 2*frac >= 1.5 {
			want++
		}
		if got := F32ToE8M0(x); int(got) != want {
			t.Fatalf("F32ToE8M0(%v) = %d, reference %d", x, got, want)
		}
	})
}

func TestE2M1(t *testing.T) {
	vals := []float32{0, 0.5, 1, 1.5, 2, 3, 4, 6}
	for c := 0; c < 16; c++ {
		want := vals[c%8]
		if c >= 8 {
			want = -want
		}
		got := E2M1ToF32(uint8(c))
		if got != want || (c == 8) != (got == 0 && math.Signbit(float64(got))) {
			t.Errorf("E2M1ToF32(%d) = %v, want %v", c, got, want)
		}
		if F32ToE2M1(got) != uint8(c) && c != 8 {
			t.Errorf("F32ToE2M1(%v) = %d, want %d", got, F32ToE2M1(got), c)
		}
	}
	for _, tc := range []struct {
		x    float32
		want uint8
	}{{0.25, 0}, {0.26, 1}, {0.75, 2}, {0.74, 1}, {1.25, 2}, {1.26, 3}, {1.75, 4}, {1.74, 3}, {2.5, 4}, {2.51, 5}, {3.5, 6},
		{3.49, 5}, {5, 6}, {5.01, 7}, {100, 7}, {float32(math.Inf(1)), 7}, {-0.1, 8}, {-0.25, 8}, {-0.26, 9}, {-5, 14},
		{-7, 15}, {float32(math.Copysign(0, -1)), 0}, {0, 0}, {float32(math.NaN()), 0}} {
		if got := F32ToE2M1(tc.x); got != tc.want {
			t.Errorf("F32ToE2M1(%v) = %d, want %d", tc.x, got, tc.want)
		}
	}
	// reference: nearest on the grid, ties to the even code, saturating at 6
	g := newGrid(func(c uint32) float64 { return float64(vals[c]) }, 7, 7)
	g.overflow = math.Inf(1)
	sweep(func(x float32) {
		want := uint8(g.round(float64(x)))
		if got := F32ToE2M1(x); got != want {
			t.Fatalf("F32ToE2M1(%v) = %d, reference %d", x, got, want)
		}
		if x != 0 {
			if got := F32ToE2M1(-x); got != want|8 {
				t.Fatalf("F32ToE2M1(%v) = %d, reference %d", -x, got, want|8)
			}
		}
	})
}

func TestPackE2M1(t *testing.T) {
	codes := []uint8{1, 2, 3, 15, 8}
	packed := PackE2M1(codes)
	if len(packed) != 3 || packed[0] != 0x21 || packed[1] != 0xF3 || packed[2] != 0x08 {
		t.Fatalf("PackE2M1 = % x, want 21 f3 08 (element 2i in the low nibble)", packed)
	}
	got := UnpackE2M1(packed, 5)
	for i := range codes {
		if got[i] != codes[i] {
			t.Fatalf("UnpackE2M1 = %v, want %v", got, codes)
		}
	}
	if n := len(UnpackE2M1(packed, 99)); n != 6 {
		t.Errorf("UnpackE2M1 with n too large returned %d codes, want 6", n)
	}
	if n := len(UnpackE2M1(packed, -1)); n != 0 {
		t.Errorf("UnpackE2M1(-1) returned %d codes", n)
	}
}

func TestDecodeEncode(t *testing.T) {
	vals := []float32{0, 1, -1.5, 448, 0.1, -3}
	for _, dt := range []string{"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "F4"} {
		raw, err := EncodeFloats(dt, vals)
		if err != nil {
			t.Fatalf("%s: %v", dt, err)
		}
		got, err := DecodeFloats(dt, raw)
		if err != nil {
			t.Fatalf("%s: %v", dt, err)
		}
		if len(got) != len(vals) {
			t.Fatalf("%s: %d values back, want %d", dt, len(got), len(vals))
		}
		for i, v := range vals {
			var want float32
			switch dt {
			case "F64", "F32":
				want = v
			case "F16":
				want = RoundF16(v)
			case "BF16":
				want = RoundBF16(v)
			case "F8_E4M3":
				want = E4M3ToF32(F32ToE4M3(v))
			case "F8_E5M2":
				want = E5M2ToF32(F32ToE5M2(v))
			case "F4":
				want = E2M1ToF32(F32ToE2M1(v))
			}
			if got[i] != want {
				t.Errorf("%s: value %d: %v, want %v", dt, i, got[i], want)
			}
		}
	}
	raw, _ := EncodeFloats("F8_E8M0", []float32{1, 1.5, 0.1})
	if raw[0] != 127 || raw[1] != 128 || raw[2] != 124 {
		t.Errorf("E8M0 bytes % x", raw)
	}
	got, _ := DecodeFloats("F8_E8M0", raw)
	if got[0] != 1 || got[1] != 2 || got[2] != 0.125 {
		t.Errorf("E8M0 decode %v", got)
	}
	// FNUZ decoding: bias 8 / 16, 0x80 is NaN
	fn, _ := DecodeFloats("F8_E4M3FNUZ", []byte{0x40, 0x7F, 0x80, 0x01})
	if fn[0] != 1 || fn[1] != 240 || fn[2] == fn[2] || fn[3] != 1.0/1024 {
		t.Errorf("E4M3FNUZ %v", fn)
	}
	fn, _ = DecodeFloats("F8_E5M2FNUZ", []byte{0x40, 0x7F, 0x80, 0x01})
	if fn[0] != 1 || fn[1] != 57344 || fn[2] == fn[2] || fn[3] != 1.0/(1<<17) {
		t.Errorf("E5M2FNUZ %v", fn)
	}
	for _, tc := range []struct {
		dt  string
		raw []byte
	}{{"F32", make([]byte, 6)}, {"BF16", make([]byte, 3)}, {"F64", make([]byte, 4)}, {"I32", make([]byte, 4)}, {"Q4", nil}} {
		if _, err := DecodeFloats(tc.dt, tc.raw); err == nil {
			t.Errorf("DecodeFloats(%s, %d bytes) accepted", tc.dt, len(tc.raw))
		}
	}
	if _, err := EncodeFloats("F4", []float32{1}); err == nil {
		t.Error("EncodeFloats(F4) accepted an odd count")
	}
	if _, err := EncodeFloats("I8", []float32{1}); err == nil {
		t.Error("EncodeFloats(I8) accepted")
	}
	if !IsFloatDType("F4") || !IsFloatDType("BF16") || IsFloatDType("I64") {
		t.Error("IsFloatDType")
	}
}

func BenchmarkDecodeBF16(b *testing.B) {
	raw := make([]byte, 2<<20)
	for i := range raw {
		raw[i] = byte(i * 31)
	}
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := DecodeFloats("BF16", raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkF32ToE4M3(b *testing.B) {
	vals := make([]float32, 1<<20)
	for i := range vals {
		vals[i] = float32(i%1000) * 0.37
	}
	b.SetBytes(int64(len(vals)) * 4)
	for b.Loop() {
		for _, v := range vals {
			_ = F32ToE4M3(v)
		}
	}
}
