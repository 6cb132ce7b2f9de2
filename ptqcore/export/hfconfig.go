package export

import (
	"fmt"
	"sort"

	"github.com/ptqgate/ptqgate/ptqcore/quant"
)

// The producer the engines key on (INTERFACES.md "Export"): vLLM and SGLang
// read a nested hf_quant_config.json only when producer.name is "modelopt".
const (
	ProducerName    = "modelopt"
	ProducerVersion = "0.47.0"
)

// Files of an export besides the safetensors.
const (
	ConfigFile      = "config.json"
	HFQuantConfig   = "hf_quant_config.json"
	ReportFile      = "ptqgate_report.json"
	quantConfigKey  = "quantization_config"
	quantMethodName = "modelopt"
)

func producer() object {
	return object{{"name", ProducerName}, {"version", ProducerVersion}}
}

// layerObject is one quantized_layers entry: {"quant_algo", "group_size"}.
func layerObject(lc layerConfig) object {
	o := object{{"quant_algo", lc.Algo}}
	if lc.GroupSize > 0 {
		o = append(o, member{"group_size", lc.GroupSize})
	}
	return o
}

// quantSection builds the "quantization" object of hf_quant_config.json the
// way ModelOpt's get_quant_config / process_layer_quant_config does
// (specs/modelopt.md §4.7): with one distinct layer config, {quant_algo,
// kv_cache_quant_algo, group_size (NVFP4 formats), exclude_modules}; with
// several, {quant_algo: MIXED_PRECISION, kv_cache_quant_algo,
// quantized_layers}; with none, {quant_algo: null, kv_cache_quant_algo,
// quantized_layers: {}}. It returns nil when neither weights nor the KV
// cache are quantized (no hf_quant_config.json is written then, #1375).
func (p *plan) quantSection() (object, error) {
	var kv any
	if p.kvAlgo != "" {
		kv = p.kvAlgo
	}
	distinct := map[layerConfig]bool{}
	for _, name := range p.quantized {
		distinct[p.layerCfg[name]] = true
	}
	switch {
	case len(distinct) == 0 && kv == nil:
		return nil, nil
	case len(distinct) == 0:
		return object{{"quant_algo", nil}, {"kv_cache_quant_algo", kv}, {"quantized_layers", object{}}}, nil
	case len(distinct) == 1:
		lc := p.layerCfg[p.quantized[0]]
		o := object{{"quant_algo", lc.Algo}, {"kv_cache_quant_algo", kv}}
		if lc.GroupSize > 0 {
			o = append(o, member{"group_size", lc.GroupSize})
		}
		excl, err := SummarizeExclude(p.unquantized, p.protected)
		if err != nil {
			return nil, &UnsupportedError{Subject: "exclude_modules", Reason: err.Error()}
		}
		return append(o, member{"exclude_modules", excl}), nil
	}
	layers := object{}
	for _, name := range p.quantized {
		layers = append(layers, member{name, layerObject(p.layerCfg[name])})
	}
	return object{{"quant_algo", quant.AlgoMixed}, {"kv_cache_quant_algo", kv}, {"quantized_layers", layers}}, nil
}

// hfQuantConfig is the whole hf_quant_config.json: {producer, quantization}.
func hfQuantConfig(section object) object {
	return object{{"producer", producer()}, {"quantization", section}}
}

// groupConfig is ModelOpt's _quant_algo_to_group_config for the formats
// ptqgate exports: input_activations (absent for weight-only) and weights.
func groupConfig(lc layerConfig) (object, error) {
	gs := lc.GroupSize
	if gs == 0 {
		gs = NVFP4Block
	}
	fp := func(bits int, group bool) object {
		o := object{{"dynamic", false}, {"num_bits", bits}, {"type", "float"}}
		if group {
			o = append(o, member{"group_size", gs})
		}
		return o
	}
	switch lc.Algo {
	case quant.AlgoFP8:
		return object{{"input_activations", fp(8, false)}, {"weights", fp(8, false)}}, nil
	case quant.AlgoNVFP4:
		return object{{"input_activations", fp(4, true)}, {"weights", fp(4, true)}}, nil
	case quant.AlgoW4A16NVFP4:
		return object{{"weights", fp(4, true)}}, nil
	}
	return nil, fmt.Errorf("export: no config group for quant_algo %q", lc.Algo)
}

// quantizationConfig converts hf_quant_config.json into config.json's
// quantization_config as ModelOpt's convert_hf_quant_config_format does
// (specs/modelopt.md §4.7): config_groups (FP8, NVFP4, W4A16_NVFP4: one
// group targeting "Linear"; MIXED_PRECISION: one group per distinct layer
// config, in order of first appearance, targeting the sorted module names,
// followed by a copy of quantized_layers), ignore (exclude_modules or []),
// quant_algo (when not null), kv_cache_scheme ({dynamic false, num_bits 8,
// type float} for FP8), producer and quant_method "modelopt".
func quantizationConfig(section object) (object, error) {
	out := object{}
	algoV, _ := section.get("quant_algo")
	algo, _ := algoV.(string)
	switch algo {
	case quant.AlgoFP8, quant.AlgoNVFP4, quant.AlgoW4A16NVFP4:
		gsV, _ := section.get("group_size")
		gs, _ := gsV.(int)
		g, err := groupConfig(layerConfig{Algo: algo, GroupSize: gs})
		if err != nil {
			return nil, err
		}
		g = append(g, member{"targets", []string{"Linear"}})
		out = append(out, member{"config_groups", object{{"group_0", g}}})
	case quant.AlgoMixed:
		lv, _ := section.get("quantized_layers")
		layers, _ := lv.(object)
		var keys []layerConfig
		targets := map[layerConfig][]string{}
		for _, l := range layers {
			lo := l.Value.(object)
			a, _ := lo.get("quant_algo")
			gsV, _ := lo.get("group_size")
			gs, _ := gsV.(int)
			lc := layerConfig{Algo: a.(string), GroupSize: gs}
			if _, ok := targets[lc]; !ok {
				keys = append(keys, lc)
			}
			targets[lc] = append(targets[lc], l.Key)
		}
		groups := object{}
		for i, lc := range keys {
			g, err := groupConfig(lc)
			if err != nil {
				return nil, err
			}
			t := append([]string(nil), targets[lc]...)
			sort.Strings(t)
			groups = append(groups, member{fmt.Sprintf("group_%d", i), append(g, member{"targets", t})})
		}
		out = append(out, member{"config_groups", groups}, member{"quantized_layers", layers})
	}
	if excl, ok := section.get("exclude_modules"); ok && excl != nil {
		out = append(out, member{"ignore", excl})
	} else {
		out = append(out, member{"ignore", []string{}})
	}
	if algo != "" {
		out = append(out, member{"quant_algo", algo})
	}
	if kv, _ := section.get("kv_cache_quant_algo"); kv != nil {
		if kv == quant.AlgoFP8 {
			out = append(out, member{"kv_cache_scheme", object{{"dynamic", false}, {"num_bits", 8}, {"type", "float"}}})
		} else {
			out = append(out, member{"kv_cache_scheme", kv})
		}
	}
	out = append(out, member{"producer", producer()}, member{"quant_method", quantMethodName})
	return out, nil
}

// rewriteConfig returns the output config.json: the source's keys in their
// order with quantization_config set (appended, as ModelOpt's json.load /
// json.dump round trip does; nil qc leaves the key out) and the dtype keys
// ("dtype", "torch_dtype", at the top level and in text_config and
// vision_config) set to the unquantized tensors' dtype, written with
// json.dump(indent=4).
func rewriteConfig(src []byte, qc object, dtype string) ([]byte, error) {
	cfg, err := parseObject(src)
	if err != nil {
		return nil, err
	}
	setDType := func(o *object, always bool) {
		found := false
		for _, k := range []string{"dtype", "torch_dtype"} {
			if _, ok := o.get(k); ok {
				o.set(k, dtype)
				found = true
			}
		}
		if !found && always {
			o.set("dtype", dtype)
		}
	}
	setDType(&cfg, true)
	for _, sub := range []string{"text_config", "vision_config"} {
		if v, ok := cfg.get(sub); ok {
			if so, ok := v.(object); ok {
				setDType(&so, false)
				cfg.set(sub, so)
			}
		}
	}
	if qc != nil {
		cfg.set(quantConfigKey, qc)
	}
	return marshalPy(cfg)
}
