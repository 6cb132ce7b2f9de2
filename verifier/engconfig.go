package verifier

import (
	"fmt"
	"sort"
	"strings"

	"github.com/ptqgate/ptqgate/reports"
	"github.com/ptqgate/ptqgate/verifier/contracts"
)

// vllmQuantAlgos is vLLM's QUANT_ALGOS (specs/vllm.md §1.2).
var vllmQuantAlgos = map[string]bool{"FP8": true, "FP8_PER_CHANNEL_PER_TOKEN": true, "FP8_PB_WO": true, "NVFP4": true,
	"W4A16_NVFP4": true, "MXFP8": true, "MIXED_PRECISION": true}

// vllmNestedAlgos are the algos the nested-layout normaliser maps.
var vllmNestedAlgos = map[string]bool{"FP8": true, "FP8_PER_CHANNEL_PER_TOKEN": true, "FP8_PB_WO": true, "NVFP4": true}

// quantSourceMissing handles a folder without any quantization config:
// an error when quantized tensors exist, an info otherwise. It reports
// whether verification stops.
func (v *run) quantSourceMissing() bool {
	v.evaluated("config.missing", reports.TargetAny)
	if v.cfgs.inConfig != nil || v.cfgs.inFile != nil {
		return false
	}
	var q []string
	for _, m := range v.mods.list {
		if m.stored().quantized() {
			q = append(q, m.name)
		}
	}
	if len(q) > 0 {
		v.addAny("config.missing", reports.SeverityError, "", q[0],
			fmt.Sprintf("%d modules are stored quantized (e.g. %s) but the folder has neither config.json quantization_config nor hf_quant_config.json", len(q), listNames(q)),
			"both engines build an unquantized model and value-cast the FP8/U8 codes into BF16 parameters: garbage, no error")
	} else {
		v.addAny("config.missing", reports.SeverityInfo, "", "", "the checkpoint has no quantization config and no quantized tensors: nothing to verify", "")
	}
	return true
}

// resolveTargets resolves the quantization config for every target,
// reporting config findings, and drops the targets that cannot load it.
func (v *run) resolveTargets() error {
	c := v.cfgs
	if c.inConfig == nil && c.inFile == nil {
		return nil
	}
	// A config.json quantization_config of another method is not ModelOpt.
	if s := c.inConfig; s != nil && s.top != nil && !s.nested {
		if qm, ok := s.top["quant_method"].(string); ok && !strings.HasPrefix(strings.ToLower(qm), "modelopt") {
			return errUnsupported("config.json quantization_config.quant_method is %q: ptqgate verify checks ModelOpt-format checkpoints (quant_method \"modelopt\")", qm)
		}
	}
	v.checkConflict()
	var kept []*target
	for _, t := range v.targets {
		var ec *engineConfig
		if t.Engine == contracts.VLLM {
			ec = v.resolveVLLM(t)
		} else {
			ec = v.resolveSGLang(t)
		}
		t.cfg = ec
		v.evaluated("config.read", t.Token())
		v.evaluated("config.quant-algo", t.Token())
		v.evaluated("config.invalid", t.Token())
		if ec.skip {
			continue
		}
		v.add("config.read", reports.SeverityInfo, t.Token(), "", "",
			fmt.Sprintf("%s reads %s (%s layout): quant_algo %s, KV cache %s, %d exclusion entries (%s)%s", t.Token(), ec.src.file, layoutName(ec.src),
				ec.algo, kvText(ec), len(ec.exclude), ec.excludeKey, fileIgnored(c, ec)),
			"", "")
		v.checkGroupSize(t)
		v.checkActDType(t)
		t.excl = contracts.NewExclusions(t.Target, v.geo.family, ec.exclude)
		kept = append(kept, t)
	}
	v.targets = kept
	// Algorithms without census tables: exit 2 unless no target loads them.
	for _, t := range v.targets {
		a := t.cfg.algo
		if !censusAlgos[a] && a != algoMixed {
			return errUnsupported("quant_algo %q: ptqgate verify has loader contracts for FP8, NVFP4, W4A16_NVFP4 and MIXED_PRECISION of those (%s loads %s)", a, t.Token(), a)
		}
	}
	return nil
}

func layoutName(s *quantSource) string {
	if s.nested {
		return "nested"
	}
	return "flat"
}

func kvText(ec *engineConfig) string {
	if ec.kvFP8 {
		return "FP8 (auto-selected)"
	}
	if ec.kvAlgo != "" {
		return "not quantized by default (" + ec.kvAlgo + ")"
	}
	return "not quantized"
}

func fileIgnored(c *configs, ec *engineConfig) string {
	if ec.src == c.inConfig && c.inFile != nil {
		return "; hf_quant_config.json is ignored"
	}
	return ""
}

// algoFailure reports that target t cannot load the config at all:
// an error when the target was named, an info (and skip) for a default.
func (v *run) algoFailure(t *target, ec *engineConfig, kase, algo string) {
	f, ok := contracts.Lookup("config.quant-algo", kase, t.Target, v.geo.family)
	if !ok {
		return
	}
	sev := reports.SeverityError
	msg := fmt.Sprintf("%s cannot load quant_algo %q from %s", t.Token(), algo, ec.src.file)
	if !v.opt.Explicit {
		sev = reports.SeverityInfo
		msg += "; it is only a default target, so it is skipped"
	}
	v.add(f.Rule, sev, t.Token(), "", "", msg, strings.ReplaceAll(f.Behavior, "{algo}", algo), f.Source)
	ec.skip = true
}

// invalid reports a config.invalid fact for target t and skips it.
func (v *run) invalid(t *target, ec *engineConfig, kase, msg string, repl ...string) {
	f, ok := contracts.Lookup("config.invalid", kase, t.Target, v.geo.family)
	if !ok {
		return
	}
	b := f.Behavior
	for i := 0; i+1 < len(repl); i += 2 {
		b = strings.ReplaceAll(b, repl[i], repl[i+1])
	}
	v.add(f.Rule, reports.SeverityError, t.Token(), "", "", msg, b, f.Source)
	ec.skip = true
}

// resolveVLLM follows specs/vllm.md §1.1–§1.2.
func (v *run) resolveVLLM(t *target) *engineConfig {
	c := v.cfgs
	ec := &engineConfig{src: c.inConfig, groupSize: 16}
	if ec.src == nil {
		ec.src = c.inFile
	}
	s := ec.src
	if s.top == nil {
		v.invalid(t, ec, "quantization-not-dict", fmt.Sprintf("%s: the quantization config is not a JSON object", s.file))
		return ec
	}
	if s.nested {
		if s.q == nil {
			v.invalid(t, ec, "quantization-not-dict", fmt.Sprintf("%s: \"quantization\" is not an object", s.file))
			return ec
		}
		raw, present := s.q["quant_algo"]
		if !present {
			v.invalid(t, ec, "missing-algo", fmt.Sprintf("%s: quantization.quant_algo is missing", s.file))
			return ec
		}
		if raw == nil {
			v.algoFailure(t, ec, "null-algo", "null")
			return ec
		}
		a, _ := raw.(string)
		ec.algo = strings.ToUpper(a)
		if !vllmNestedAlgos[ec.algo] {
			v.algoFailure(t, ec, "nested-not-fp8-nvfp4", a)
			return ec
		}
		if kv, ok := s.q["kv_cache_quant_algo"]; ok && kv != nil {
			ks, isStr := kv.(string)
			if !isStr {
				v.invalid(t, ec, "kv-not-string", fmt.Sprintf("%s: kv_cache_quant_algo is not a string", s.file), "{type}", typeName(kv))
				return ec
			}
			ec.kvAlgo = strings.ToUpper(ks)
		}
		ex, ok := stringList(s.q["exclude_modules"])
		if !ok {
			v.invalid(t, ec, "exclude-not-list", fmt.Sprintf("%s: exclude_modules is not a list of strings", s.file), "{type}", typeName(s.q["exclude_modules"]))
			return ec
		}
		ec.exclude, ec.excludeKey = ex, "exclude_modules"
		if gs, ok := s.q["group_size"]; ok && gs != nil {
			n, ok := intCastable(gs)
			if !ok {
				v.invalid(t, ec, "group-size-type", fmt.Sprintf("%s: group_size is not an integer", s.file), "{type}", typeName(gs))
				return ec
			}
			ec.groupSize = n
		}
		if ec.algo == algoNVFP4 {
			var missing []string
			for _, k := range []string{"group_size", "kv_cache_quant_algo", "exclude_modules"} {
				if !s.has(k) {
					missing = append(missing, "'"+k+"'")
				}
			}
			if len(missing) > 0 {
				v.invalid(t, ec, "nvfp4-required-keys", fmt.Sprintf("%s lacks %s", s.file, strings.Join(missing, ", ")), "{missing}", "["+strings.Join(missing, ", ")+"]")
				return ec
			}
		}
	} else {
		if _, ok := s.top["quant_method"]; !ok {
			v.invalid(t, ec, "no-quant-method", "config.json quantization_config has no quant_method")
			return ec
		}
		raw, present := s.q["quant_algo"]
		if !present || raw == nil {
			v.invalid(t, ec, "missing-algo", "config.json quantization_config has no quant_algo")
			return ec
		}
		a, _ := raw.(string)
		ec.algo = strings.ToUpper(a)
		if !vllmQuantAlgos[ec.algo] {
			v.algoFailure(t, ec, "not-in-quant-algos", a)
			return ec
		}
		if kvAlgo, present := flatKVScheme(s.q["kv_cache_scheme"], false); present {
			ec.kvAlgo = kvAlgo
		} else if k, ok := s.q["kv_cache_quant_algo"].(string); ok && k != "" {
			f, _ := contracts.Lookup("config.kv-algo", "flat-key-ignored", t.Target, v.geo.family)
			v.addFact(f, t, "", "", "", fmt.Sprintf("config.json quantization_config has kv_cache_quant_algo %q but no kv_cache_scheme", k))
		}
		ex, ok := stringList(s.q["ignore"])
		if !ok {
			v.invalid(t, ec, "exclude-not-list", "config.json quantization_config.ignore is not a list of strings", "exclude_modules", "ignore", "{type}", typeName(s.q["ignore"]))
			return ec
		}
		ec.exclude, ec.excludeKey = ex, "ignore"
		if gs, ok := s.q["group_size"]; ok && gs != nil {
			n, ok := intCastable(gs)
			if !ok {
				v.invalid(t, ec, "group-size-type", "config.json quantization_config.group_size is not an integer", "{type}", typeName(gs))
				return ec
			}
			ec.groupSize = n
		}
	}
	if ec.algo == algoMixed {
		ec.layers = quantizedLayers(s.q["quantized_layers"])
		if len(ec.layers) == 0 {
			v.invalid(t, ec, "mixed-empty", fmt.Sprintf("%s: MIXED_PRECISION without quantized_layers", s.file))
			return ec
		}
		ec.groupSize = mixedGroupSize(s.q["quantized_layers"])
	}
	v.checkKVAlgo(t, ec)
	ec.kvFP8 = ec.kvAlgo == kvAlgoFP8
	return ec
}

// mixedGroupSize is the group_size of the first NVFP4-family entry (16).
func mixedGroupSize(v any) int {
	m, _ := v.(map[string]any)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		lm, _ := m[k].(map[string]any)
		a, _ := lm["quant_algo"].(string)
		if strings.Contains(strings.ToUpper(a), "NVFP4") {
			if n, ok := intCastable(lm["group_size"]); ok {
				return n
			}
			return 16
		}
	}
	return 16
}

// checkKVAlgo flags a KV algo other than FP8/NVFP4/none.
func (v *run) checkKVAlgo(t *target, ec *engineConfig) {
	v.evaluated("config.kv-algo", t.Token())
	switch ec.kvAlgo {
	case "", kvAlgoFP8, kvAlgoNVF4, "AUTO", "auto":
		return
	}
	f, ok := v.lookup("config.kv-algo", "unknown", t)
	if ok {
		v.addFact(f, t, "", "", "", fmt.Sprintf("%s: kv_cache_quant_algo %q is neither FP8 nor NVFP4", ec.src.file, ec.kvAlgo))
	}
}

// resolveSGLang follows specs/sglang.md §1.1–§1.3.
func (v *run) resolveSGLang(t *target) *engineConfig {
	c := v.cfgs
	ec := &engineConfig{src: c.inConfig, groupSize: 16}
	if s := c.inConfig; s != nil && c.inFile != nil && s.q != nil && !s.nested && s.str("quant_algo") == algoMixed {
		_, hasLayers := s.q["quantized_layers"]
		_, hasKV := s.q["kv_cache_quant_algo"]
		_, hasScheme := s.q["kv_cache_scheme"]
		if !hasLayers || (!hasKV && !hasScheme) {
			ec.src = c.inFile // modelopt_mixed falls through to the file
		}
	}
	if ec.src == nil {
		ec.src = c.inFile
	}
	s := ec.src
	if s.file == "hf_quant_config.json" && len(c.quantFiles) > 1 {
		v.invalid(t, ec, "multiple-files", fmt.Sprintf("the folder has %d files named *%s: %s", len(c.quantFiles), "hf_quant_config.json", strings.Join(c.quantFiles, ", ")))
		return ec
	}
	if s.top == nil || s.q == nil {
		v.invalid(t, ec, "quantization-not-dict", fmt.Sprintf("%s: the quantization config is not an object", s.file))
		return ec
	}
	raw, present := s.q["quant_algo"]
	if !present {
		v.invalid(t, ec, "missing-algo", fmt.Sprintf("%s: quant_algo is missing", s.file))
		return ec
	}
	if raw == nil {
		if s.file == "hf_quant_config.json" {
			v.algoFailure(t, ec, "null-algo", "null")
		} else {
			v.invalid(t, ec, "missing-algo", "config.json quantization_config.quant_algo is null")
		}
		return ec
	}
	a, _ := raw.(string)
	ec.algo = a
	fromFile := s.file == "hf_quant_config.json"
	fp4 := strings.Contains(a, "FP4") || strings.Contains(a, "NVFP4")
	switch {
	case a == algoFP8:
	case fp4:
		if a != algoNVFP4 && a != "NVFP4_AWQ" {
			v.algoFailure(t, ec, "fp4-variant", a)
			return ec
		}
	case a == algoMixed:
		ec.layers = quantizedLayers(s.q["quantized_layers"])
		if len(ec.layers) == 0 {
			v.invalid(t, ec, "mixed-empty", fmt.Sprintf("%s: MIXED_PRECISION without quantized_layers", s.file))
			return ec
		}
		hasFP4 := false
		for _, la := range ec.layers {
			if la == algoNVFP4 || la == algoW4A16 {
				hasFP4 = true
			}
		}
		if !hasFP4 {
			v.algoFailure(t, ec, "mixed-no-nvfp4", a)
			return ec
		}
	case a == "MXFP8":
		// Native mxfp8 (Fp8Config): loads, but ptqgate has no census for it.
	case fromFile:
		v.algoFailure(t, ec, "unknown-from-file", a)
		return ec
	case strings.Contains(a, "FP8"):
		v.algoFailure(t, ec, "fp8-variant", a)
		return ec
	default:
		v.algoFailure(t, ec, "unknown-from-config", a)
		return ec
	}
	// KV algo.
	if s.nested {
		if k, ok := s.q["kv_cache_quant_algo"].(string); ok {
			ec.kvAlgo = strings.ToUpper(k)
		}
	} else if kvAlgo, present := flatKVScheme(s.q["kv_cache_scheme"], fp4); present {
		ec.kvAlgo = kvAlgo
	} else if k, ok := s.q["kv_cache_quant_algo"].(string); ok {
		ec.kvAlgo = strings.ToUpper(k)
	}
	// Exclusions.
	key := "exclude_modules"
	if !s.nested {
		key = "ignore"
	}
	exRaw, hasEx := s.q[key]
	if !s.nested && a == algoMixed && !hasEx {
		key = "exclude_modules"
		exRaw, hasEx = s.q[key]
	}
	ex, ok := stringList(exRaw)
	if !ok {
		v.invalid(t, ec, "exclude-not-list", fmt.Sprintf("%s: %s is not a list of strings", s.file, key))
		return ec
	}
	ec.exclude, ec.excludeKey = ex, key
	if fp4 {
		if hasEx && exRaw == nil || s.nested && !hasEx {
			v.invalid(t, ec, "nvfp4-null-keys", fmt.Sprintf("%s: %s is null or missing", s.file, key))
			return ec
		}
		gs, found := sglangGroupSize(s)
		switch {
		case found && gs < 0:
			v.invalid(t, ec, "nvfp4-null-keys", fmt.Sprintf("%s: group_size is null", s.file))
			return ec
		case found:
			ec.groupSize = gs
		case s.nested:
			v.invalid(t, ec, "nvfp4-group-size-nested", fmt.Sprintf("%s: no group_size in the top level, quantization or config_groups", s.file))
			return ec
		}
	}
	if a == algoMixed {
		ec.groupSize = mixedGroupSize(s.q["quantized_layers"])
	}
	v.checkKVAlgo(t, ec)
	ec.kvFP8 = ec.kvAlgo == kvAlgoFP8
	return ec
}

// sglangGroupSize finds group_size the way ModelOptFp4Config does: top
// level, then (nested) the quantization dict, then config_groups' first
// group's weights. It returns -1, true for an explicit null.
func sglangGroupSize(s *quantSource) (int, bool) {
	for _, m := range []map[string]any{s.top, s.q} {
		if gv, ok := m["group_size"]; ok {
			if gv == nil {
				return -1, true
			}
			if n, ok := intCastable(gv); ok {
				return n, true
			}
		}
	}
	if groups, ok := s.top["config_groups"].(map[string]any); ok {
		names := make([]string, 0, len(groups))
		for k := range groups {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			g, _ := groups[k].(map[string]any)
			wts, _ := g["weights"].(map[string]any)
			if n, ok := intCastable(wts["group_size"]); ok {
				return n, true
			}
		}
	}
	if !s.nested && strings.Contains(s.algo(), "NVFP4") {
		return 16, true
	}
	return 0, false
}

// checkGroupSize requires 16 for the NVFP4 family.
func (v *run) checkGroupSize(t *target) {
	ec := t.cfg
	nvfp4 := ec.algo == algoNVFP4 || ec.algo == algoW4A16
	if ec.algo == algoMixed {
		for _, la := range ec.layers {
			if la == algoNVFP4 || la == algoW4A16 {
				nvfp4 = true
			}
		}
	}
	if !nvfp4 {
		return
	}
	v.evaluated("config.group-size", t.Token())
	if ec.groupSize == 16 {
		return
	}
	if f, ok := v.lookup("config.group-size", "not-16", t); ok {
		v.add(f.Rule, f.Severity, t.Token(), "", "", fmt.Sprintf("%s: NVFP4 group_size is %d; the engines' kernels need 16", ec.src.file, ec.groupSize),
			strings.ReplaceAll(f.Behavior, "{group_size}", fmt.Sprint(ec.groupSize)), f.Source)
	}
}

// checkActDType flags a float32 config dtype for vLLM's ModelOpt methods.
func (v *run) checkActDType(t *target) {
	if t.Engine != contracts.VLLM {
		return
	}
	v.evaluated("config.act-dtype", t.Token())
	if d := strings.ToLower(v.geo.dtype); d == "float32" || d == "fp32" {
		if f, ok := v.lookup("config.act-dtype", "float32", t); ok {
			v.addFact(f, t, "", "", "", fmt.Sprintf("config.json dtype is %q; vLLM's ModelOpt %s method supports bfloat16/float16 activations only", v.geo.dtype, t.cfg.algo))
		}
	}
}

// checkConflict compares config.json quantization_config with
// hf_quant_config.json when both exist.
func (v *run) checkConflict() {
	a, b := v.cfgs.inConfig, v.cfgs.inFile
	if a == nil || b == nil || a.q == nil || b.q == nil {
		return
	}
	v.evaluated("config.conflict", reports.TargetAny)
	var diffs []string
	if x, y := strings.ToUpper(a.algo()), strings.ToUpper(b.algo()); x != y {
		diffs = append(diffs, fmt.Sprintf("quant_algo %q vs %q", a.algo(), b.algo()))
	}
	kvA, _ := flatKVScheme(a.q["kv_cache_scheme"], true)
	if kvA == "" {
		kvA = strings.ToUpper(a.str("kv_cache_quant_algo"))
	}
	if a.nested {
		kvA = strings.ToUpper(a.str("kv_cache_quant_algo"))
	}
	kvB := strings.ToUpper(b.str("kv_cache_quant_algo"))
	if kvA != kvB {
		diffs = append(diffs, fmt.Sprintf("KV algo %q vs %q", kvA, kvB))
	}
	exA, _ := stringList(a.q["ignore"])
	if a.nested {
		exA, _ = stringList(a.q["exclude_modules"])
	}
	exB, _ := stringList(b.q["exclude_modules"])
	if !sameSet(exA, exB) {
		diffs = append(diffs, fmt.Sprintf("exclusions differ (%d vs %d entries)", len(exA), len(exB)))
	}
	if len(diffs) > 0 {
		v.addAny("config.conflict", reports.SeverityWarning, "", "",
			"config.json quantization_config and hf_quant_config.json disagree: "+strings.Join(diffs, "; "),
			"vLLM and SGLang read config.json and ignore hf_quant_config.json; tools that read the file see another checkpoint")
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, x := range a {
		m[x]++
	}
	for _, x := range b {
		m[x]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return true
}
