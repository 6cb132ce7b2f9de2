package quant

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
)

// NumBits is a quantizer's num_bits: a float format (Exponent, Mantissa) or an
// integer format (Integer bits).
type NumBits struct {
	// Exponent and Mantissa give a float format: (4,3) = E4M3, (2,1) = E2M1,
	// (8,0) = E8M0. Both 0 for integer formats.
	Exponent, Mantissa int
	// Integer is the bit count of an integer format, 0 for floats.
	Integer int
}

// Common formats.
var (
	E4M3 = NumBits{Exponent: 4, Mantissa: 3}
	E2M1 = NumBits{Exponent: 2, Mantissa: 1}
	E8M0 = NumBits{Exponent: 8, Mantissa: 0}
	E5M2 = NumBits{Exponent: 5, Mantissa: 2}
)

// IsZero reports whether no format is set.
func (n NumBits) IsZero() bool { return n == NumBits{} }

// IsFloat reports whether n is a float (ExMy) format.
func (n NumBits) IsFloat() bool { return n.Integer == 0 && !n.IsZero() }

// String writes n as ModelOpt's YAML does: "e4m3", or the integer bit count.
func (n NumBits) String() string {
	if n.Integer != 0 {
		return fmt.Sprint(n.Integer)
	}
	if n.IsZero() {
		return "none"
	}
	return fmt.Sprintf("e%dm%d", n.Exponent, n.Mantissa)
}

// Block quantization types (block_sizes["type"]).
const (
	BlockDynamic = "dynamic"
	BlockStatic  = "static"
)

// BlockSizes is a quantizer's block_sizes.
type BlockSizes struct {
	// LastDim is the block size along the last axis (key -1); 0 when the key
	// is absent or null (null: the whole axis, e.g. per-token).
	LastDim int
	// Type is "dynamic" (block scales computed from data on every call) or
	// "static" (calibrated per-block amax).
	Type string
	// ScaleBits is the format of the per-block scales ((4,3) for NVFP4,
	// (8,0) for MX formats); zero when the scales are not quantized.
	ScaleBits NumBits
	// Other holds block sizes along other axes (e.g. -2 for 2-D blocks);
	// a null size is 0.
	Other map[int]int
	// ScaleBlockSizes is the raw scale_block_sizes value (double
	// quantization), nil when absent.
	ScaleBlockSizes map[int]int
	// FourOverSix is the four_over_six option.
	FourOverSix bool
}

// Default calibrator name.
const CalibratorMax = "max"

// Config is a quantizer configuration (ModelOpt's QuantizerAttributeConfig as
// stored on a TensorQuantizer).
type Config struct {
	// Enable is false for a pass-through quantizer.
	Enable bool
	// NumBits is the element format.
	NumBits NumBits
	// Axis is the kept axis of a per-channel quantizer; nil for per-tensor
	// (or for a tuple of axes, see Axes).
	Axis *int
	// Axes holds a tuple axis (several kept axes); nil otherwise.
	Axes []int
	// BlockSizes configures block quantization; nil for none.
	BlockSizes *BlockSizes
	// Dynamic is the top-level type: dynamic (no calibration; amax from data
	// on every call). Different from BlockSizes.Type.
	Dynamic bool
	// Calibrator is "max" or "histogram".
	Calibrator string
	// UseConstantAmax pins the amax to 448 (FP8 E4M3 max); no calibration
	// and, at export, no scale tensor.
	UseConstantAmax bool
	// ConstantAmax pins the amax to this value; no calibration; exported.
	ConstantAmax *float64
	// FakeQuant, Unsigned, NarrowRange, PassThroughBwd and Rotate are kept as
	// given; ptqgate does not act on them.
	FakeQuant, Unsigned, NarrowRange, PassThroughBwd, Rotate bool
	// Backend is the custom quantization backend name ("" for none).
	Backend string
	// EffectiveBits is the autoquant cost hint (0 when unset).
	EffectiveBits float64
	// HasBias is true when the cfg configured affine (bias) quantization.
	HasBias bool
	// Sequential is true for a list cfg (a SequentialQuantizer, e.g. W4A8),
	// which ptqgate does not model; the other fields are the first element's.
	Sequential bool
}

// DefaultConfig returns the toolkit's TensorQuantizer() default: INT8 (num_bits
// 8) per-tensor, enabled, max calibrator.
func DefaultConfig() Config {
	return Config{
		Enable:         true,
		NumBits:        NumBits{Integer: 8},
		Calibrator:     CalibratorMax,
		FakeQuant:      true,
		PassThroughBwd: true,
	}
}

// FP8Config returns the FP8 E4M3 per-tensor configuration (numerics/fp8).
func FP8Config() Config {
	c := DefaultConfig()
	c.NumBits = E4M3
	return c
}

// NVFP4Config returns the NVFP4 configuration (numerics/nvfp4): E2M1 with
// 16-element blocks and dynamic E4M3 block scales.
func NVFP4Config() Config {
	c := DefaultConfig()
	c.NumBits = E2M1
	c.BlockSizes = &BlockSizes{LastDim: 16, Type: BlockDynamic, ScaleBits: E4M3}
	return c
}

// IsDefault reports whether c is still the INT8 default of an untouched
// quantizer (ignoring Enable).
func (c Config) IsDefault() bool {
	d := DefaultConfig()
	d.Enable = c.Enable
	return c.Equal(d)
}

// Equal reports whether two configurations are identical.
func (c Config) Equal(o Config) bool {
	if c.Enable != o.Enable || c.NumBits != o.NumBits || c.Dynamic != o.Dynamic ||
		c.Calibrator != o.Calibrator || c.UseConstantAmax != o.UseConstantAmax ||
		c.FakeQuant != o.FakeQuant || c.Unsigned != o.Unsigned || c.NarrowRange != o.NarrowRange ||
		c.PassThroughBwd != o.PassThroughBwd || c.Rotate != o.Rotate || c.Backend != o.Backend ||
		c.EffectiveBits != o.EffectiveBits || c.HasBias != o.HasBias || c.Sequential != o.Sequential {
		return false
	}
	if (c.Axis == nil) != (o.Axis == nil) || (c.Axis != nil && *c.Axis != *o.Axis) {
		return false
	}
	if !slices.Equal(c.Axes, o.Axes) {
		return false
	}
	if (c.ConstantAmax == nil) != (o.ConstantAmax == nil) || (c.ConstantAmax != nil && *c.ConstantAmax != *o.ConstantAmax) {
		return false
	}
	if (c.BlockSizes == nil) != (o.BlockSizes == nil) {
		return false
	}
	if c.BlockSizes != nil {
		a, b := c.BlockSizes, o.BlockSizes
		if a.LastDim != b.LastDim || a.Type != b.Type || a.ScaleBits != b.ScaleBits || a.FourOverSix != b.FourOverSix ||
			!maps.Equal(a.Other, b.Other) || !maps.Equal(a.ScaleBlockSizes, b.ScaleBlockSizes) {
			return false
		}
	}
	return true
}

// PerTensor reports whether c has one scale for the whole tensor (no axis,
// no block sizes).
func (c Config) PerTensor() bool { return c.Axis == nil && c.Axes == nil && c.BlockSizes == nil }

// IsFP8 reports whether c is enabled FP8 E4M3 per-tensor (static).
func (c Config) IsFP8() bool {
	return c.Enable && c.NumBits == E4M3 && c.PerTensor() && !c.Dynamic
}

// IsNVFP4 reports whether c is enabled NVFP4: E2M1 in 16-element blocks along
// the last axis with dynamic E4M3 block scales and a per-tensor global amax.
func (c Config) IsNVFP4() bool {
	if !c.Enable || c.NumBits != E2M1 || c.Dynamic || c.Axis != nil || c.Axes != nil || c.BlockSizes == nil {
		return false
	}
	b := c.BlockSizes
	return b.LastDim == 16 && b.Type == BlockDynamic && b.ScaleBits == E4M3 && len(b.Other) == 0 &&
		b.ScaleBlockSizes == nil && !b.FourOverSix
}

// FixedAmax returns the amax a quantizer has without calibration:
// 448 (the E4M3 maximum) under use_constant_amax, X under constant_amax: X.
// Such quantizers count as calibrated; under use_constant_amax the toolkit
// exports no scale tensor, under constant_amax it exports the scale X implies.
func (c Config) FixedAmax() (amax float64, ok bool) {
	switch {
	case c.ConstantAmax != nil:
		return *c.ConstantAmax, true
	case c.UseConstantAmax:
		return 448, true
	}
	return 0, false
}

// Format names the quantizer format: "none" when disabled, "fp8" (E4M3
// per-tensor), "nvfp4" (E2M1, 16-element blocks, dynamic E4M3 block scales);
// other configurations get ModelOpt-style names ("fp8_pc_pt", "fp8_pb_wo",
// "mxfp8", "nvfp4_static", "mxfp4", "int8", "int4", "e5m2", ...). A top-level
// dynamic quantizer gets the suffix "_dynamic".
func (c Config) Format() string {
	if !c.Enable {
		return "none"
	}
	f := c.baseFormat()
	if c.Dynamic {
		f += "_dynamic"
	}
	return f
}

func (c Config) baseFormat() string {
	n := c.NumBits
	b := c.BlockSizes
	if n.Integer != 0 {
		switch {
		case b != nil && b.ScaleBits == E8M0:
			return fmt.Sprintf("mxint%d", n.Integer)
		case b != nil:
			return fmt.Sprintf("int%d_blockwise", n.Integer)
		case c.Axis != nil || c.Axes != nil:
			return fmt.Sprintf("int%d_per_channel", n.Integer)
		}
		return fmt.Sprintf("int%d", n.Integer)
	}
	switch n {
	case E4M3:
		switch {
		case b != nil && b.ScaleBits == E8M0:
			return "mxfp8"
		case b != nil:
			return "fp8_pb_wo"
		case c.Axis != nil || c.Axes != nil:
			return "fp8_pc_pt"
		}
		return "fp8"
	case E2M1:
		switch {
		case b == nil:
			return "fp4"
		case b.ScaleBits == E8M0:
			return "mxfp4"
		case b.ScaleBits == E4M3 && b.Type == BlockStatic:
			return "nvfp4_static"
		case b.ScaleBits == E4M3 && b.LastDim == 16:
			return "nvfp4"
		case b.ScaleBits == E4M3:
			return fmt.Sprintf("nvfp4_bs%d", b.LastDim)
		}
		return "fp4_blockwise"
	}
	if b != nil && b.ScaleBits == E8M0 {
		return fmt.Sprintf("mx%s", n)
	}
	return n.String()
}

// MaxBound is the largest magnitude of the element format (ModelOpt's
// maxbound): 448 for E4M3, 6 for E2M1, 57344 for E5M2, 28 for E3M2, 7.5 for
// E2M3, 2^(b-1+unsigned)-1 for b-bit integers (127 for INT8); 0 for formats it
// does not know.
func (c Config) MaxBound() float64 {
	n := c.NumBits
	if n.Integer > 0 {
		u := 0
		if c.Unsigned {
			u = 1
		}
		return math.Ldexp(1, n.Integer-1+u) - 1
	}
	switch n {
	case E4M3:
		return 448
	case E2M1:
		return 6
	case E5M2:
		return 57344
	case NumBits{Exponent: 3, Mantissa: 2}:
		return 28
	case NumBits{Exponent: 2, Mantissa: 3}:
		return 7.5
	}
	return 0
}

// Module formats: the quant_algo strings of hf_quant_config.json.
const (
	AlgoFP8        = "FP8"
	AlgoNVFP4      = "NVFP4"
	AlgoW4A16NVFP4 = "W4A16_NVFP4"
	AlgoMixed      = "MIXED_PRECISION"
)

// ModuleFormat returns the quant_algo of a module for hf_quant_config.json
// from its (representative) weight quantizer and its input quantizer,
// following ModelOpt's get_quantization_format decision tree (specs/modelopt.md
// §5) and the §4.7 table: "FP8", "NVFP4", "W4A16_NVFP4" for the formats
// ptqgate exports, ModelOpt's other names ("FP8_PER_CHANNEL_PER_TOKEN",
// "MXFP8", "W4A8_NVFP4_FP8", "W4A16_AWQ", "W8A16", "W8A8_SQ_PER_CHANNEL", ...)
// for the rest, and "" when the module is unquantized (weight disabled).
func ModuleFormat(weight, input Config) string {
	if !weight.Enable {
		return ""
	}
	w := weight.NumBits
	if w.Integer != 0 {
		switch w.Integer {
		case 4:
			return "W4A16_AWQ"
		case 8:
			if input.Enable {
				return "W8A8_SQ_PER_CHANNEL"
			}
			return "W8A16"
		}
		return ""
	}
	switch w {
	case E4M3:
		if b := weight.BlockSizes; b != nil {
			if b.Type == BlockDynamic && b.ScaleBits == E8M0 {
				return "MXFP8"
			}
			return "FP8_PB_WO"
		}
		if weight.Axis != nil && *weight.Axis == 0 {
			return "FP8_PER_CHANNEL_PER_TOKEN"
		}
		return AlgoFP8
	case E2M1:
		b := weight.BlockSizes
		if b == nil {
			return ""
		}
		switch b.ScaleBits {
		case E4M3:
			if !input.Enable {
				return AlgoW4A16NVFP4
			}
			if b.Type == BlockDynamic && input.NumBits == E4M3 && input.PerTensor() {
				return "W4A8_NVFP4_FP8"
			}
			return AlgoNVFP4
		case E8M0:
			return "MXFP4"
		}
	}
	return ""
}

// key is a canonical text form of the configuration (no pointers).
func (c Config) key() string {
	var b strings.Builder
	fmt.Fprintf(&b, "en=%v nb=%v dyn=%v cal=%s uca=%v fq=%v u=%v nr=%v pt=%v rot=%v be=%s bias=%v seq=%v",
		c.Enable, c.NumBits, c.Dynamic, c.Calibrator, c.UseConstantAmax, c.FakeQuant, c.Unsigned, c.NarrowRange,
		c.PassThroughBwd, c.Rotate, c.Backend, c.HasBias, c.Sequential)
	if c.Axis != nil {
		fmt.Fprintf(&b, " axis=%d", *c.Axis)
	}
	if c.Axes != nil {
		fmt.Fprintf(&b, " axes=%v", c.Axes)
	}
	if c.ConstantAmax != nil {
		fmt.Fprintf(&b, " ca=%v", *c.ConstantAmax)
	}
	if bs := c.BlockSizes; bs != nil {
		fmt.Fprintf(&b, " bs={%d %s %v %v %v %v}", bs.LastDim, bs.Type, bs.ScaleBits, sortedIntMap(bs.Other), sortedIntMap(bs.ScaleBlockSizes), bs.FourOverSix)
	}
	return b.String()
}

func sortedIntMap(m map[int]int) string {
	if m == nil {
		return "nil"
	}
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%d:%d,", k, m[k])
	}
	return b.String()
}
