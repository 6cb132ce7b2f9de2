package quant

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// PresetInfo describes a built-in preset.
type PresetInfo struct {
	// Name is the preset's canonical name (the toolkit's recipe basename).
	Name string `json:"name"`
	// Aliases are the newer toolkit spellings that also select it.
	Aliases []string `json:"aliases"`
	// Description is a one-line description.
	Description string `json:"description"`
	// Algorithm is the calibration algorithm ("max", "max (layerwise)").
	Algorithm string `json:"algorithm"`
}

// presets is the preset table of INTERFACES.md "Recipes"; each lives in
// recipes/general/ptq/<Name>.yaml with the same description.
var presets = []PresetInfo{
	{Name: "fp8_default-fp8_kv", Aliases: []string{"fp8_default-kv_fp8"}, Algorithm: "max",
		Description: "FP8 per-tensor weights and activations (W8A8), FP8 KV cache, max calibration."},
	{Name: "fp8_default", Aliases: []string{}, Algorithm: "max",
		Description: "FP8 per-tensor weights and activations (W8A8), max calibration."},
	{Name: "nvfp4_default-fp8_kv", Aliases: []string{"nvfp4_default-kv_fp8"}, Algorithm: "max",
		Description: "NVFP4 weights and activations of every linear layer (W4A4), FP8 KV cache, max calibration."},
	{Name: "nvfp4_default", Aliases: []string{}, Algorithm: "max",
		Description: "NVFP4 weights and activations of every linear layer (W4A4), max calibration."},
	{Name: "nvfp4_experts_only-fp8_kv", Aliases: []string{"nvfp4_experts_only-kv_fp8"}, Algorithm: "max",
		Description: "NVFP4 weights and activations of routed expert layers only (W4A4), FP8 KV cache, max calibration."},
	{Name: "nvfp4_experts_only", Aliases: []string{}, Algorithm: "max",
		Description: "NVFP4 weights and activations of routed expert layers only (W4A4), max calibration."},
	{Name: "nvfp4_mlp_only-fp8_kv", Aliases: []string{"nvfp4_mlp_only-kv_fp8"}, Algorithm: "max",
		Description: "NVFP4 weights and activations of MLP and MoE layers only (W4A4), FP8 KV cache, max calibration."},
	{Name: "nvfp4_mlp_only", Aliases: []string{}, Algorithm: "max",
		Description: "NVFP4 weights and activations of MLP and MoE layers only (W4A4), max calibration."},
	{Name: "w4a16_nvfp4", Aliases: []string{}, Algorithm: "max",
		Description: "NVFP4 weights of every linear layer, activations unquantized (W4A16), max calibration."},
	{Name: "nvfp4_experts_only-fp8_kv_layerwise", Aliases: []string{"nvfp4_experts_only-kv_fp8_layerwise"}, Algorithm: "max (layerwise)",
		Description: "NVFP4 weights and activations of routed expert layers only (W4A4), FP8 KV cache, layerwise max calibration."},
}

// Presets returns the built-in presets in INTERFACES.md order.
func Presets() []PresetInfo {
	out := make([]PresetInfo, len(presets))
	for i, p := range presets {
		p.Aliases = append([]string{}, p.Aliases...)
		out[i] = p
	}
	return out
}

// PresetName returns the canonical name of a preset name or alias.
func PresetName(ref string) (string, bool) {
	for _, p := range presets {
		if p.Name == ref {
			return p.Name, true
		}
		for _, a := range p.Aliases {
			if a == ref {
				return p.Name, true
			}
		}
	}
	return "", false
}

// presetNames lists every accepted preset spelling for messages.
func presetNames() string {
	var names []string
	for _, p := range presets {
		n := p.Name
		if len(p.Aliases) > 0 {
			n += " (" + strings.Join(p.Aliases, ", ") + ")"
		}
		names = append(names, n)
	}
	return strings.Join(names, ", ")
}

// Load loads a recipe: a preset name or alias (INTERFACES.md "Recipes"), a
// recipe YAML file in the toolkit's shape (specs/modelopt.md §1.4b; also a
// QuantizeConfig file with top-level algorithm and quant_cfg), or a directory
// recipe holding metadata.yaml and quantize.yaml.
//
// Errors: a malformed file is a *RecipeError (exit 1) naming the file, line
// and key; an unknown preset or an unsupported request (algorithm other than
// max, integer or other unsupported formats in an enabling entry, an enabling
// parent_class other than nn.Linear) is an *UnsupportedError (exit 2) naming
// the entry; a missing file wraps fs.ErrNotExist (exit 2).
func Load(ref string) (*Recipe, error) {
	if name, ok := PresetName(ref); ok {
		f := srcFile{path: builtinRoot + "/general/ptq/" + name + ".yaml", embedded: true}
		r, err := loadRecipeFile(f, "preset "+name)
		if err != nil {
			return nil, fmt.Errorf("preset %s: %w", name, err)
		}
		r.Name, r.Source = name, "preset"
		return r, nil
	}
	st, err := os.Stat(ref)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !strings.ContainsAny(ref, `/\`) && filepath.Ext(ref) != ".yaml" && filepath.Ext(ref) != ".yml" {
			return nil, unsupportedf("recipe "+ref, "unknown preset and no such file; presets: %s", presetNames())
		}
		return nil, fmt.Errorf("recipe %s: %w", ref, err)
	}
	abs, err := filepath.Abs(ref)
	if err != nil {
		return nil, fmt.Errorf("recipe %s: %w", ref, err)
	}
	var r *Recipe
	if st.IsDir() {
		r, err = loadRecipeDir(abs, ref)
	} else {
		r, err = loadRecipeFile(srcFile{path: abs}, filepath.Base(ref))
	}
	if err != nil {
		return nil, err
	}
	base := filepath.Base(filepath.Clean(ref))
	r.Name = strings.TrimSuffix(strings.TrimSuffix(base, ".yaml"), ".yml")
	r.Source = ref
	return r, nil
}

// loadRecipeFile loads a single-file recipe; origin prefixes entry origins.
func loadRecipeFile(f srcFile, origin string) (*Recipe, error) {
	yf, err := parseFile(f)
	if err != nil {
		return nil, err
	}
	res := newResolver()
	res.stack = []string{f.display()}
	top, err := res.resolve(yf.payload, yf)
	if err != nil {
		return nil, err
	}
	if top.kind != kindMap {
		return nil, errAt(top, "", "a recipe must be a mapping with metadata and quantize, not %s", top.describe())
	}
	r := &Recipe{}
	var quantize *node
	prefix := "quantize"
	if top.has("quantize") || top.has("metadata") {
		if err := checkKeys(top, "", "imports", "metadata", "quantize"); err != nil {
			return nil, err
		}
		if md := top.get("metadata"); md != nil {
			if r.Description, err = parseMetadata(md); err != nil {
				return nil, err
			}
		}
		quantize = top.get("quantize")
		if quantize == nil {
			return nil, errAt(top, "quantize", "missing (a PTQ recipe needs quantize: {algorithm, quant_cfg})")
		}
		if quantize.kind != kindMap {
			return nil, errAt(quantize, "quantize", "must be a mapping with algorithm and quant_cfg, not %s", quantize.describe())
		}
		if err := checkKeys(quantize, "quantize", "algorithm", "quant_cfg"); err != nil {
			return nil, err
		}
	} else {
		if err := checkKeys(top, "", "imports", "algorithm", "quant_cfg"); err != nil {
			return nil, err
		}
		quantize, prefix = top, ""
	}
	return buildRecipe(r, quantize, prefix, f, origin)
}

// loadRecipeDir loads a directory recipe: metadata.y(a)ml and quantize.y(a)ml.
func loadRecipeDir(dir, ref string) (*Recipe, error) {
	find := func(base string) (srcFile, error) {
		for _, e := range []string{".yaml", ".yml"} {
			p := filepath.Join(dir, base+e)
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
				return srcFile{path: p}, nil
			}
		}
		return srcFile{}, fmt.Errorf("recipe directory %s: no %s.yaml: %w", ref, base, fs.ErrNotExist)
	}
	qf, err := find("quantize")
	if err != nil {
		return nil, err
	}
	r := &Recipe{}
	if mf, err := find("metadata"); err == nil {
		yf, err := parseFile(mf)
		if err != nil {
			return nil, err
		}
		md := yf.payload
		if md.kind == kindMap && md.has("metadata") && len(md.keys) == 1 {
			md = md.get("metadata")
		}
		if r.Description, err = parseMetadata(md); err != nil {
			return nil, err
		}
	}
	yf, err := parseFile(qf)
	if err != nil {
		return nil, err
	}
	res := newResolver()
	res.stack = []string{qf.display()}
	q, err := res.resolve(yf.payload, yf)
	if err != nil {
		return nil, err
	}
	if q.kind != kindMap {
		return nil, errAt(q, "", "quantize file must be a mapping with algorithm and quant_cfg, not %s", q.describe())
	}
	if err := checkKeys(q, "", "imports", "algorithm", "quant_cfg"); err != nil {
		return nil, err
	}
	return buildRecipe(r, q, "", qf, filepath.Base(qf.path))
}

func parseMetadata(md *node) (string, error) {
	if md.kind != kindMap {
		return "", errAt(md, "metadata", "must be a mapping, not %s", md.describe())
	}
	if err := checkKeys(md, "metadata", "recipe_type", "description"); err != nil {
		return "", err
	}
	if rt := md.get("recipe_type"); rt != nil {
		s, err := asString(rt, "metadata.recipe_type")
		if err != nil {
			return "", err
		}
		if s != "ptq" {
			return "", unsupportedf(fmt.Sprintf("%s:%d: metadata.recipe_type", rt.file.display(), rt.line), "%q recipes are not supported (ptq only)", s)
		}
	}
	desc := ""
	if d := md.get("description"); d != nil && d.kind != kindNull {
		s, err := asString(d, "metadata.description")
		if err != nil {
			return "", err
		}
		desc = strings.Join(strings.Fields(s), " ")
	}
	return desc, nil
}

// buildRecipe reads algorithm and quant_cfg from the quantize mapping.
func buildRecipe(r *Recipe, q *node, prefix string, f srcFile, origin string) (*Recipe, error) {
	alg, err := parseAlgorithm(q, join(prefix, "algorithm"))
	if err != nil {
		return nil, err
	}
	r.Algorithm = alg
	qc := q.get("quant_cfg")
	if qc == nil {
		return nil, errAt(q, join(prefix, "quant_cfg"), "missing (the recipe must list its quantizer entries)")
	}
	if r.Entries, err = parseQuantCfg(qc, join(prefix, "quant_cfg"), f, origin); err != nil {
		return nil, err
	}
	return r, nil
}

// parseAlgorithm reads algorithm: absent (max), a string, a mapping
// {method, layerwise, ...}, or null / a list (unsupported).
func parseAlgorithm(q *node, key string) (Algorithm, error) {
	a := Algorithm{Method: "max"}
	n := q.get("algorithm")
	if n == nil {
		return a, nil
	}
	where := fmt.Sprintf("%s:%d: %s", n.file.display(), n.line, key)
	switch n.kind {
	case kindNull:
		return a, unsupportedf(where, "null (no calibration) is not supported; use max")
	case kindList:
		return a, unsupportedf(where, "a list of algorithms is not supported; use max")
	case kindScalar:
		s, err := asString(n, key)
		if err != nil {
			return a, err
		}
		if s != "max" {
			return a, unsupportedf(where, "algorithm %q is not supported (max only)", s)
		}
		return a, nil
	}
	m := n.get("method")
	if m == nil {
		return a, errAt(n, key+".method", "missing")
	}
	if m.kind == kindNull {
		return a, unsupportedf(where, "method null (no calibration) is not supported; use max")
	}
	s, err := asString(m, key+".method")
	if err != nil {
		return a, err
	}
	if s != "max" {
		return a, unsupportedf(where, "algorithm %q is not supported (max only)", s)
	}
	known := []string{"method", "layerwise", "distributed_sync", "skip_forward_without_activation_calib",
		"layerwise_checkpoint_dir", "sync_expert_weight_amax", "moe_calib_experts_ratio"}
	if err := checkKeys(n, key, known...); err != nil {
		return a, err
	}
	for i, k := range n.keys {
		v, kk := n.vals[i], key+"."+k
		switch k {
		case "layerwise":
			if v.kind == kindMap {
				if err := checkKeys(v, kk, "enable", "checkpoint_dir", "export_dir", "calib_mutates_weights"); err != nil {
					return a, err
				}
				for j, lk := range v.keys {
					lv := v.vals[j]
					switch lk {
					case "enable":
						if a.Layerwise, err = asBool(lv, kk+".enable"); err != nil {
							return a, err
						}
					case "calib_mutates_weights":
						if _, err := asBool(lv, kk+"."+lk); err != nil {
							return a, err
						}
					default:
						if lv.kind != kindNull {
							return a, unsupportedf(fmt.Sprintf("%s:%d: %s.%s", lv.file.display(), lv.line, kk, lk), "layerwise checkpointing and per-layer export are not supported")
						}
					}
				}
			} else if a.Layerwise, err = asBool(v, kk); err != nil {
				return a, err
			}
		case "distributed_sync":
			if v.kind != kindNull {
				if _, err := asBool(v, kk); err != nil {
					return a, err
				}
			}
		case "skip_forward_without_activation_calib":
			if a.SkipForwardWithoutActivationCalib, err = asBool(v, kk); err != nil {
				return a, err
			}
		case "sync_expert_weight_amax":
			b, err := asBool(v, kk)
			if err != nil {
				return a, err
			}
			if b {
				return a, unsupportedf(fmt.Sprintf("%s:%d: %s", v.file.display(), v.line, kk), "sharing weight amax across experts is not supported")
			}
		case "layerwise_checkpoint_dir", "moe_calib_experts_ratio":
			if v.kind != kindNull {
				hint := "layerwise checkpointing is not supported"
				if k == "moe_calib_experts_ratio" {
					hint = "not supported for fused experts; use quantize --calib-all-experts"
				}
				return a, unsupportedf(fmt.Sprintf("%s:%d: %s", v.file.display(), v.line, kk), "%s", hint)
			}
		}
	}
	return a, nil
}

// rawEntry is a quant_cfg entry before validation.
type rawEntry struct {
	at          *node // the entry's node (position for messages)
	key         string
	name        string
	parentClass string
	cfg         *node
	cfgSet      bool
	enable      *bool
}

// parseQuantCfg reads quant_cfg: an ordered list of entries (new format,
// legacy single-key dicts, legacy nn.*-scoped dicts) or a legacy flat dict,
// converted as ModelOpt's normalize_quant_cfg_list does.
func parseQuantCfg(n *node, key string, top srcFile, origin string) ([]Entry, error) {
	var raws []rawEntry
	switch n.kind {
	case kindMap:
		for i, k := range n.keys {
			rs, err := legacyEntries(n.vals[i], fmt.Sprintf("%s[%q]", key, k), k)
			if err != nil {
				return nil, err
			}
			raws = append(raws, rs...)
		}
	case kindList:
		for i, it := range n.items {
			ik := fmt.Sprintf("%s[%d]", key, i)
			if it.kind != kindMap {
				return nil, errAt(it, ik, "an entry must be a mapping, not %s", it.describe())
			}
			switch {
			case it.has("quantizer_name"):
				re, err := newEntry(it, ik)
				if err != nil {
					return nil, err
				}
				raws = append(raws, re)
			case len(it.keys) == 1:
				rs, err := legacyEntries(it.vals[0], ik, it.keys[0])
				if err != nil {
					return nil, err
				}
				raws = append(raws, rs...)
			case hasNNKey(it):
				for j, k := range it.keys {
					rs, err := legacyEntries(it.vals[j], ik, k)
					if err != nil {
						return nil, err
					}
					raws = append(raws, rs...)
				}
			default:
				return nil, errAt(it, ik, "invalid entry: needs quantizer_name (keys: %s)", strings.Join(it.keys, ", "))
			}
		}
	default:
		return nil, errAt(n, key, "must be a list of entries (or a legacy mapping), not %s", n.describe())
	}
	entries := make([]Entry, 0, len(raws))
	for i, re := range raws {
		e, err := finishEntry(re, i+1, top, origin)
		if err != nil {
			return nil, err
		}
		entries = append(entries, e)
	}
	return entries, nil
}

func hasNNKey(n *node) bool {
	for _, k := range n.keys {
		if strings.HasPrefix(k, "nn.") {
			return true
		}
	}
	return false
}

// newEntry reads a new-format entry.
func newEntry(it *node, key string) (rawEntry, error) {
	re := rawEntry{at: it, key: key}
	if err := checkKeys(it, key, "quantizer_name", "parent_class", "cfg", "enable"); err != nil {
		return re, err
	}
	var err error
	if re.name, err = asString(it.get("quantizer_name"), key+".quantizer_name"); err != nil {
		return re, err
	}
	if pc := it.get("parent_class"); pc != nil && pc.kind != kindNull {
		if re.parentClass, err = asString(pc, key+".parent_class"); err != nil {
			return re, err
		}
	}
	if it.has("cfg") {
		re.cfgSet = true
		if c := it.get("cfg"); c.kind != kindNull {
			re.cfg = c
		}
	}
	if en := it.get("enable"); en != nil {
		b, err := asBool(en, key+".enable")
		if err != nil {
			return re, err
		}
		re.enable = &b
	}
	return re, nil
}

// legacyEntries converts one legacy (key, value) pair: "default" means "*";
// "nn.X" keys scope a mapping of patterns to parent_class X; enable is popped
// out of the cfg.
func legacyEntries(v *node, key, k string) ([]rawEntry, error) {
	if k == "default" {
		k = "*"
	}
	split := func(val *node, kk string) (cfg *node, enable *bool, err error) {
		if val.kind != kindMap {
			if val.kind == kindNull {
				return nil, nil, nil
			}
			return val, nil, nil
		}
		rest := &node{kind: kindMap, file: val.file, line: val.line}
		for i, ck := range val.keys {
			if ck == "enable" {
				b, err := asBool(val.vals[i], kk+".enable")
				if err != nil {
					return nil, nil, err
				}
				enable = &b
				continue
			}
			rest.keys = append(rest.keys, ck)
			rest.vals = append(rest.vals, val.vals[i])
		}
		if len(rest.keys) > 0 {
			cfg = rest
		}
		return cfg, enable, nil
	}
	if strings.HasPrefix(k, "nn.") {
		if v.kind != kindMap {
			return nil, errAt(v, key, "an nn.* scoped entry must map quantizer patterns to cfgs, not %s", v.describe())
		}
		var out []rawEntry
		for i, qp := range v.keys {
			kk := fmt.Sprintf("%s.%s", key, qp)
			cfg, en, err := split(v.vals[i], kk)
			if err != nil {
				return nil, err
			}
			if v.vals[i].kind != kindMap && v.vals[i].kind != kindNull {
				return nil, errAt(v.vals[i], kk, "must be a mapping, not %s", v.vals[i].describe())
			}
			out = append(out, rawEntry{at: v.vals[i], key: kk, name: qp, parentClass: k, cfg: cfg, cfgSet: true, enable: en})
		}
		return out, nil
	}
	cfg, en, err := split(v, key)
	if err != nil {
		return nil, err
	}
	return []rawEntry{{at: v, key: key, name: k, cfg: cfg, cfgSet: true, enable: en}}, nil
}

// finishEntry validates an entry (ModelOpt's QuantizerCfgEntry rules) and
// builds the Entry; index is 1-based.
func finishEntry(re rawEntry, index int, top srcFile, origin string) (Entry, error) {
	e := Entry{QuantizerName: re.name, ParentClass: re.parentClass, Enable: true}
	e.Origin = fmt.Sprintf("%s entry %d", origin, index)
	if re.at.file != top {
		e.Origin += " (from " + re.at.file.display() + ")"
	}
	where := fmt.Sprintf("quant_cfg entry %d '%s' (%s:%d)", index, re.name, re.at.file.display(), re.at.line)
	if re.name == "" {
		return e, errAt(re.at, re.key+".quantizer_name", "must not be empty")
	}
	if !re.cfgSet && re.enable == nil {
		return e, errAt(re.at, re.key, "entry for '%s' must specify cfg, enable, or both (an implicit enable is not allowed)", re.name)
	}
	if re.enable != nil {
		e.Enable = *re.enable
	}
	cfg := re.cfg
	if cfg != nil && isEmptyCfg(cfg) {
		if re.enable != nil && !*re.enable {
			cfg = nil
		} else {
			return e, errAt(cfg, re.key+".cfg", "must specify at least one quantizer attribute for '%s'; drop cfg and use enable to keep existing attributes", re.name)
		}
	}
	if cfg != nil {
		var c Config
		switch cfg.kind {
		case kindMap:
			var en *bool
			var err error
			c, en, err = parseConfig(cfg, re.key+".cfg")
			if err != nil {
				return e, err
			}
			if re.enable == nil && en != nil {
				e.Enable = *en
			}
		case kindList:
			for j, it := range cfg.items {
				cj, _, err := parseConfig(it, fmt.Sprintf("%s.cfg[%d]", re.key, j))
				if err != nil {
					return e, err
				}
				if j == 0 {
					c = cj
				}
			}
			c.Sequential = true
		default:
			return e, errAt(cfg, re.key+".cfg", "must be a mapping of quantizer attributes, not %s", cfg.describe())
		}
		c.Enable = e.Enable
		e.Cfg = &c
	}
	if e.Enable {
		if e.ParentClass != "" && e.ParentClass != ClassLinear {
			return e, unsupportedf(where, "enabling parent_class %s is not supported (only nn.Linear; entries that disable are always accepted)", e.ParentClass)
		}
		if e.Cfg != nil {
			if why := supportedConfig(*e.Cfg); why != "" {
				return e, unsupportedf(where, "%s", why)
			}
		}
	}
	return e, nil
}

// isEmptyCfg reports an empty mapping, an empty list or a list of empty
// mappings.
func isEmptyCfg(n *node) bool {
	switch n.kind {
	case kindMap:
		return len(n.keys) == 0
	case kindList:
		for _, it := range n.items {
			if it.kind != kindMap || len(it.keys) != 0 {
				return false
			}
		}
		return true
	}
	return false
}
