package quant

import "testing"

func intp(i int) *int { return &i }

func TestFormatAndMaxBound(t *testing.T) {
	off := NVFP4Config()
	off.Enable = false
	fp8pc := FP8Config()
	fp8pc.Axis = intp(0)
	static := NVFP4Config()
	static.BlockSizes.Type = BlockStatic
	bs32 := NVFP4Config()
	bs32.BlockSizes.LastDim = 32
	mx := FP8Config()
	mx.BlockSizes = &BlockSizes{LastDim: 32, Type: BlockDynamic, ScaleBits: E8M0}
	mxfp4 := NVFP4Config()
	mxfp4.BlockSizes = &BlockSizes{LastDim: 32, Type: BlockDynamic, ScaleBits: E8M0}
	dyn := FP8Config()
	dyn.Dynamic = true
	int4 := DefaultConfig()
	int4.NumBits = NumBits{Integer: 4}
	int4u := int4
	int4u.Unsigned = true
	e5m2 := DefaultConfig()
	e5m2.NumBits = E5M2
	tests := []struct {
		name   string
		c      Config
		format string
		max    float64
		fp8    bool
		nvfp4  bool
	}{
		{"fp8", FP8Config(), "fp8", 448, true, false},
		{"nvfp4", NVFP4Config(), "nvfp4", 6, false, true},
		{"disabled", off, "none", 6, false, false},
		{"int8 default", DefaultConfig(), "int8", 127, false, false},
		{"int4", int4, "int4", 7, false, false},
		{"uint4", int4u, "int4", 15, false, false},
		{"fp8 per-channel", fp8pc, "fp8_pc_pt", 448, false, false},
		{"nvfp4 static", static, "nvfp4_static", 6, false, false},
		{"nvfp4 bs32", bs32, "nvfp4_bs32", 6, false, false},
		{"mxfp8", mx, "mxfp8", 448, false, false},
		{"mxfp4", mxfp4, "mxfp4", 6, false, false},
		{"fp8 dynamic", dyn, "fp8_dynamic", 448, false, false},
		{"e5m2", e5m2, "e5m2", 57344, false, false},
	}
	for _, tt := range tests {
		if got := tt.c.Format(); got != tt.format {
			t.Errorf("%s: Format() = %q, want %q", tt.name, got, tt.format)
		}
		if got := tt.c.MaxBound(); got != tt.max {
			t.Errorf("%s: MaxBound() = %v, want %v", tt.name, got, tt.max)
		}
		if tt.c.IsFP8() != tt.fp8 || tt.c.IsNVFP4() != tt.nvfp4 {
			t.Errorf("%s: IsFP8 %v IsNVFP4 %v", tt.name, tt.c.IsFP8(), tt.c.IsNVFP4())
		}
	}
}

func TestModuleFormat(t *testing.T) {
	off := func(c Config) Config { c.Enable = false; return c }
	fp8pc := FP8Config()
	fp8pc.Axis = intp(0)
	mx := FP8Config()
	mx.BlockSizes = &BlockSizes{LastDim: 32, Type: BlockDynamic, ScaleBits: E8M0}
	mxfp4 := NVFP4Config()
	mxfp4.BlockSizes.ScaleBits = E8M0
	int4 := DefaultConfig()
	int4.NumBits = NumBits{Integer: 4}
	static := NVFP4Config()
	static.BlockSizes.Type = BlockStatic
	tests := []struct {
		name          string
		weight, input Config
		want          string
	}{
		{"fp8", FP8Config(), FP8Config(), "FP8"},
		{"nvfp4 w4a4", NVFP4Config(), NVFP4Config(), "NVFP4"},
		{"nvfp4 static weights", static, NVFP4Config(), "NVFP4"},
		{"w4a16 nvfp4", NVFP4Config(), off(NVFP4Config()), "W4A16_NVFP4"},
		{"w4a16 nvfp4, input never configured", NVFP4Config(), off(DefaultConfig()), "W4A16_NVFP4"},
		{"w4a8 nvfp4 fp8", NVFP4Config(), FP8Config(), "W4A8_NVFP4_FP8"},
		{"weight disabled", off(NVFP4Config()), NVFP4Config(), ""},
		{"all disabled", off(FP8Config()), off(FP8Config()), ""},
		{"fp8 per-channel", fp8pc, FP8Config(), "FP8_PER_CHANNEL_PER_TOKEN"},
		{"mxfp8", mx, mx, "MXFP8"},
		{"mxfp4", mxfp4, mxfp4, "MXFP4"},
		{"int4 awq", int4, off(DefaultConfig()), "W4A16_AWQ"},
		{"int8 sq", DefaultConfig(), DefaultConfig(), "W8A8_SQ_PER_CHANNEL"},
		{"int8 wo", DefaultConfig(), off(DefaultConfig()), "W8A16"},
	}
	for _, tt := range tests {
		if got := ModuleFormat(tt.weight, tt.input); got != tt.want {
			t.Errorf("%s: ModuleFormat = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestNumBitsString(t *testing.T) {
	for nb, want := range map[NumBits]string{E4M3: "e4m3", E2M1: "e2m1", {Integer: 8}: "8", {}: "none"} {
		if got := nb.String(); got != want {
			t.Errorf("%+v.String() = %q, want %q", nb, got, want)
		}
	}
}

func TestFixedAmax(t *testing.T) {
	x := 2688.0
	withX := NVFP4Config()
	withX.ConstantAmax = &x
	cast := FP8Config()
	cast.UseConstantAmax = true
	for _, tt := range []struct {
		c    Config
		amax float64
		ok   bool
	}{{FP8Config(), 0, false}, {cast, 448, true}, {withX, 2688, true}} {
		if a, ok := tt.c.FixedAmax(); a != tt.amax || ok != tt.ok {
			t.Errorf("%+v: FixedAmax = %v, %v; want %v, %v", tt.c, a, ok, tt.amax, tt.ok)
		}
	}
}
