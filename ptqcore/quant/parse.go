package quant

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// errAt builds a RecipeError for a node.
func errAt(n *node, key, format string, args ...any) error {
	return &RecipeError{File: n.file.display(), Line: n.line, Key: key, Msg: fmt.Sprintf(format, args...)}
}

func unknownKey(n *node, key string, known []string) error {
	return errAt(n, key, "unknown key (known: %s)", strings.Join(known, ", "))
}

func checkKeys(n *node, prefix string, known ...string) error {
	for i, k := range n.keys {
		ok := false
		for _, kk := range known {
			if k == kk {
				ok = true
				break
			}
		}
		if !ok {
			return unknownKey(n.vals[i], join(prefix, k), known)
		}
	}
	return nil
}

func join(prefix, k string) string {
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}

func asBool(n *node, key string) (bool, error) {
	if n.kind == kindScalar && n.tag == "!!bool" {
		return strconv.ParseBool(strings.ToLower(n.text))
	}
	return false, errAt(n, key, "must be true or false, not %s", n.describe())
}

func asString(n *node, key string) (string, error) {
	if n.kind == kindScalar && n.tag == "!!str" {
		return n.text, nil
	}
	return "", errAt(n, key, "must be a string, not %s", n.describe())
}

func asInt(n *node, key string) (int, error) {
	if n.kind == kindScalar && n.tag == "!!int" {
		v, err := strconv.ParseInt(strings.ReplaceAll(n.text, "_", ""), 0, 32)
		if err == nil {
			return int(v), nil
		}
	}
	return 0, errAt(n, key, "must be an integer, not %s", n.describe())
}

func asFloat(n *node, key string) (float64, error) {
	if n.kind == kindScalar && (n.tag == "!!int" || n.tag == "!!float") {
		v, err := strconv.ParseFloat(strings.ReplaceAll(n.text, "_", ""), 64)
		if err == nil && !math.IsNaN(v) && !math.IsInf(v, 0) {
			return v, nil
		}
	}
	return 0, errAt(n, key, "must be a finite number, not %s", n.describe())
}

var exmy = regexp.MustCompile(`^[Ee](\d+)[Mm](\d+)$`)

// parseNumBits reads num_bits / scale_bits: an integer, an "eXmY" string or
// an [E, M] pair.
func parseNumBits(n *node, key string) (NumBits, error) {
	switch {
	case n.kind == kindScalar && n.tag == "!!int":
		v, err := asInt(n, key)
		if err != nil {
			return NumBits{}, err
		}
		if v < 1 {
			return NumBits{}, errAt(n, key, "must be a positive integer, not %d", v)
		}
		return NumBits{Integer: v}, nil
	case n.kind == kindScalar && n.tag == "!!str":
		m := exmy.FindStringSubmatch(n.text)
		if m == nil {
			return NumBits{}, errAt(n, key, "%q is not an eXmY float format (e.g. e4m3) or an integer", n.text)
		}
		e, _ := strconv.Atoi(m[1])
		mm, _ := strconv.Atoi(m[2])
		return NumBits{Exponent: e, Mantissa: mm}, nil
	case n.kind == kindList && len(n.items) == 2:
		e, err := asInt(n.items[0], key+"[0]")
		if err != nil {
			return NumBits{}, err
		}
		m, err := asInt(n.items[1], key+"[1]")
		if err != nil {
			return NumBits{}, err
		}
		return NumBits{Exponent: e, Mantissa: m}, nil
	}
	return NumBits{}, errAt(n, key, "must be an integer, an eXmY string or an [E, M] pair, not %s", n.describe())
}

var cfgKeys = []string{"enable", "num_bits", "effective_bits", "axis", "fake_quant", "unsigned", "narrow_range",
	"learn_amax", "type", "block_sizes", "bias", "trt_high_precision_dtype", "calibrator", "rotate",
	"pass_through_bwd", "backend", "backend_extra_args", "use_constant_amax", "constant_amax"}

// validFloatFormats are the (E,M) pairs ModelOpt accepts.
var validFloatFormats = map[NumBits]bool{
	{Exponent: 4, Mantissa: 3}: true, {Exponent: 5, Mantissa: 2}: true, {Exponent: 2, Mantissa: 1}: true,
	{Exponent: 1, Mantissa: 2}: true, {Exponent: 0, Mantissa: 3}: true, {Exponent: 3, Mantissa: 0}: true,
	{Exponent: 3, Mantissa: 2}: true, {Exponent: 2, Mantissa: 3}: true,
}

// parseConfig reads a QuantizerAttributeConfig mapping: unspecified fields
// keep DefaultConfig's values (full replacement). It also reports whether the
// mapping set enable.
func parseConfig(n *node, key string) (Config, *bool, error) {
	c := DefaultConfig()
	if n.kind != kindMap {
		return c, nil, errAt(n, key, "must be a mapping of quantizer attributes, not %s", n.describe())
	}
	if err := checkKeys(n, key, cfgKeys...); err != nil {
		return c, nil, err
	}
	if len(n.keys) == 1 && n.keys[0] == "enable" {
		if v, err := asBool(n.vals[0], join(key, "enable")); err == nil && v {
			return c, nil, errAt(n, key, "cannot specify only {enable: true}; give the format's attributes (or drop cfg and use the entry's enable)")
		}
	}
	var enable *bool
	for i, k := range n.keys {
		v, kk := n.vals[i], join(key, k)
		var err error
		switch k {
		case "enable":
			var b bool
			b, err = asBool(v, kk)
			enable = &b
			c.Enable = b
		case "num_bits":
			c.NumBits, err = parseNumBits(v, kk)
		case "effective_bits":
			if v.kind != kindNull {
				c.EffectiveBits, err = asFloat(v, kk)
				if err == nil && (c.EffectiveBits <= 0 || c.EffectiveBits > 16) {
					err = errAt(v, kk, "must be in (0, 16], not %v", c.EffectiveBits)
				}
			}
		case "axis":
			switch v.kind {
			case kindNull:
			case kindList:
				for j, it := range v.items {
					a, e := asInt(it, fmt.Sprintf("%s[%d]", kk, j))
					if e != nil {
						return c, nil, e
					}
					c.Axes = append(c.Axes, a)
				}
				if c.Axes == nil {
					c.Axes = []int{}
				}
			default:
				var a int
				a, err = asInt(v, kk)
				c.Axis = &a
			}
		case "fake_quant":
			c.FakeQuant, err = asBool(v, kk)
		case "unsigned":
			c.Unsigned, err = asBool(v, kk)
		case "narrow_range":
			c.NarrowRange, err = asBool(v, kk)
		case "pass_through_bwd":
			c.PassThroughBwd, err = asBool(v, kk)
		case "learn_amax":
			var b bool
			if b, err = asBool(v, kk); err == nil && b {
				err = errAt(v, kk, "learn_amax is deprecated and must not be true")
			}
		case "type":
			var s string
			if s, err = asString(v, kk); err == nil {
				switch s {
				case "static":
				case "dynamic":
					c.Dynamic = true
				default:
					err = errAt(v, kk, "must be static or dynamic, not %q", s)
				}
			}
		case "block_sizes":
			if v.kind != kindNull {
				c.BlockSizes, err = parseBlockSizes(v, kk)
			}
		case "bias":
			if v.kind != kindNull {
				if v.kind != kindMap {
					err = errAt(v, kk, "must be a mapping, not %s", v.describe())
				}
				c.HasBias = true
			}
		case "trt_high_precision_dtype":
			var s string
			if s, err = asString(v, kk); err == nil && s != "Float" && s != "Half" && s != "BFloat16" {
				err = errAt(v, kk, "must be Float, Half or BFloat16, not %q", s)
			}
		case "calibrator":
			switch v.kind {
			case kindScalar:
				var s string
				if s, err = asString(v, kk); err == nil {
					if s != "max" && s != "histogram" {
						err = errAt(v, kk, "must be max or histogram, not %q", s)
					}
					c.Calibrator = s
				}
			case kindMap, kindList:
				c.Calibrator = "custom"
			default:
				err = errAt(v, kk, "must be max or histogram, not %s", v.describe())
			}
		case "rotate":
			switch v.kind {
			case kindMap:
				if err = checkKeys(v, kk, "enable", "mode", "rotate_fp32", "block_size"); err == nil {
					if en := v.get("enable"); en != nil {
						c.Rotate, err = asBool(en, kk+".enable")
					}
				}
			default:
				c.Rotate, err = asBool(v, kk)
			}
		case "backend":
			if v.kind != kindNull {
				c.Backend, err = asString(v, kk)
			}
		case "backend_extra_args":
			if v.kind != kindNull && v.kind != kindMap {
				err = errAt(v, kk, "must be a mapping, not %s", v.describe())
			}
		case "use_constant_amax":
			c.UseConstantAmax, err = asBool(v, kk)
		case "constant_amax":
			if v.kind != kindNull {
				var f float64
				if f, err = asFloat(v, kk); err == nil {
					if f <= 0 {
						err = errAt(v, kk, "must be positive, not %v", f)
					}
					c.ConstantAmax = &f
				}
			}
		}
		if err != nil {
			return c, nil, err
		}
	}
	if c.UseConstantAmax && c.ConstantAmax != nil {
		return c, nil, errAt(n, key, "use_constant_amax and constant_amax are mutually exclusive; set only one")
	}
	if c.BlockSizes != nil && (c.Axis != nil || c.Axes != nil) {
		return c, nil, errAt(n, key, "axis must be null when block_sizes is set")
	}
	if c.NumBits.IsFloat() && c.Backend == "" {
		if !validFloatFormats[c.NumBits] {
			return c, nil, errAt(n, join(key, "num_bits"), "unsupported float format %s (ModelOpt supports e4m3, e5m2, e2m1, e3m2, e2m3)", c.NumBits)
		}
		if c.NumBits != E4M3 && c.NumBits != E2M1 && (c.BlockSizes == nil || c.BlockSizes.Type != BlockDynamic) {
			return c, nil, errAt(n, join(key, "num_bits"), "format %s needs dynamic block quantization (block_sizes type: dynamic)", c.NumBits)
		}
	}
	return c, enable, nil
}

func parseBlockSizes(n *node, key string) (*BlockSizes, error) {
	if n.kind != kindMap {
		return nil, errAt(n, key, "must be a mapping, not %s", n.describe())
	}
	b := &BlockSizes{Type: BlockStatic}
	axes := 0
	for i, k := range n.keys {
		v, kk := n.vals[i], join(key, k)
		switch k {
		case "type":
			s, err := asString(v, kk)
			if err != nil {
				return nil, err
			}
			if s != BlockStatic && s != BlockDynamic {
				return nil, errAt(v, kk, "must be static or dynamic, not %q", s)
			}
			b.Type = s
		case "scale_bits":
			if v.kind == kindNull {
				continue
			}
			nb, err := parseNumBits(v, kk)
			if err != nil {
				return nil, err
			}
			b.ScaleBits = nb
		case "scale_block_sizes":
			if v.kind == kindNull {
				continue
			}
			if v.kind != kindMap {
				return nil, errAt(v, kk, "must be a mapping of axis to block size, not %s", v.describe())
			}
			b.ScaleBlockSizes = map[int]int{}
			for j, sk := range v.keys {
				ax, err := strconv.Atoi(sk)
				if err != nil {
					return nil, errAt(v.vals[j], join(kk, sk), "keys must be integer axes")
				}
				sz, err := asInt(v.vals[j], join(kk, sk))
				if err != nil {
					return nil, err
				}
				b.ScaleBlockSizes[ax] = sz
			}
		case "four_over_six":
			f, err := asBool(v, kk)
			if err != nil {
				return nil, err
			}
			b.FourOverSix = f
		default:
			ax, err := strconv.Atoi(k)
			if err != nil {
				return nil, unknownKey(v, kk, []string{"<integer axis>", "type", "scale_bits", "scale_block_sizes", "four_over_six"})
			}
			sz := 0
			if v.kind != kindNull {
				if sz, err = asInt(v, kk); err != nil {
					return nil, err
				}
				if sz < 1 {
					return nil, errAt(v, kk, "block size must be positive, not %d", sz)
				}
			}
			axes++
			if ax == -1 {
				b.LastDim = sz
			} else {
				if b.Other == nil {
					b.Other = map[int]int{}
				}
				b.Other[ax] = sz
			}
		}
	}
	if b.Type == BlockDynamic && axes != 1 {
		return nil, errAt(n, key, "dynamic block quantization needs exactly one axis (the last), got %d", axes)
	}
	return b, nil
}

// supportedConfig says why an enabled configuration is not one ptqgate
// supports, or "".
func supportedConfig(c Config) string {
	switch {
	case c.Sequential:
		return "a list cfg (SequentialQuantizer, e.g. W4A8) is not supported"
	case c.NumBits.Integer != 0:
		return fmt.Sprintf("integer format (num_bits %d) is not supported (fp8 or nvfp4)", c.NumBits.Integer)
	case c.Dynamic:
		return "top-level type: dynamic (no calibration) is not supported"
	case c.Calibrator != CalibratorMax:
		return fmt.Sprintf("calibrator %q is not supported (max only)", c.Calibrator)
	case c.Backend != "":
		return fmt.Sprintf("custom backend %q is not supported", c.Backend)
	case c.HasBias:
		return "affine (bias) quantization is not supported"
	case c.Rotate:
		return "rotation is not supported"
	case !c.FakeQuant:
		return "fake_quant: false is not supported"
	case !c.IsFP8() && !c.IsNVFP4():
		return fmt.Sprintf("format %s is not supported (fp8: e4m3 per-tensor; nvfp4: e2m1 with 16-element dynamic e4m3 block scales)", c.Format())
	}
	return ""
}
