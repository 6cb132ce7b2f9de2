package export

import (
	"strings"
	"testing"
)

func TestMarshalPy(t *testing.T) {
	v := object{
		{"b", 1},
		{"a", []any{1, "x\u00e9\U0001F600\"\\\n"}},
		{"c", object{}},
		{"d", []string{}},
		{"e", nil},
		{"f", true},
		{"g", object{{"h", []string{"y"}}}},
	}
	got, err := marshalPy(v)
	if err != nil {
		t.Fatal(err)
	}
	// What Python's json.dump(v, f, indent=4) writes (ensure_ascii, no trailing newline).
	want := `{
    "b": 1,
    "a": [
        1,
        "x\u00e9\ud83d\ude00\"\\\n"
    ],
    "c": {},
    "d": [],
    "e": null,
    "f": true,
    "g": {
        "h": [
            "y"
        ]
    }
}`
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestRewriteConfig(t *testing.T) {
	src := []byte(`{"vocab_size": 256, "rms_norm_eps": 1e-06, "rope_parameters": {"rope_theta": 10000.0},
		"dtype": "float32", "text_config": {"dtype": "float32", "x": [1, 2]}, "vision_config": {"depth": 1}}`)
	qc := object{{"quant_method", "modelopt"}}
	got, err := rewriteConfig(src, qc, "bfloat16")
	if err != nil {
		t.Fatal(err)
	}
	want := `{
    "vocab_size": 256,
    "rms_norm_eps": 1e-06,
    "rope_parameters": {
        "rope_theta": 10000.0
    },
    "dtype": "bfloat16",
    "text_config": {
        "dtype": "bfloat16",
        "x": [
            1,
            2
        ]
    },
    "vision_config": {
        "depth": 1
    },
    "quantization_config": {
        "quant_method": "modelopt"
    }
}`
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	// A config without a dtype key gets one; torch_dtype is updated in place.
	got, err = rewriteConfig([]byte(`{"torch_dtype": "float16"}`), nil, "float16")
	if err != nil || string(got) != "{\n    \"torch_dtype\": \"float16\"\n}" {
		t.Errorf("torch_dtype: %s, %v", got, err)
	}
	got, err = rewriteConfig([]byte(`{"a": 1}`), nil, "bfloat16")
	if err != nil || !strings.Contains(string(got), `"dtype": "bfloat16"`) {
		t.Errorf("missing dtype: %s, %v", got, err)
	}
	for _, bad := range []string{`[1]`, `{"a": 1} x`, `{"a"`} {
		if _, err := rewriteConfig([]byte(bad), nil, "bfloat16"); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// planWith builds a plan holding only what the config writers read.
func planWith(kv string, quantized []string, cfg map[string]layerConfig, unquantized []string) *plan {
	p := &plan{kvAlgo: kv, quantized: quantized, layerCfg: cfg, unquantized: unquantized}
	for _, q := range quantized {
		p.protected = append(p.protected, EngineAliases(q)...)
	}
	return p
}

func TestQuantConfigs(t *testing.T) {
	nv := layerConfig{Algo: "NVFP4", GroupSize: 16}
	fp8 := layerConfig{Algo: "FP8"}
	cases := []struct {
		name     string
		p        *plan
		hf, conf string // json.dump(indent=4) of hf_quant_config.json and quantization_config; "" = none
	}{
		{
			name: "nvfp4 experts only, fp8 kv",
			p: planWith("FP8", []string{"model.layers.0.mlp.experts"}, map[string]layerConfig{"model.layers.0.mlp.experts": nv},
				[]string{"model.layers.0.self_attn.q_proj", "model.layers.0.mlp.gate", "lm_head"}),
			hf: `{"producer": {"name": "modelopt", "version": "0.47.0"}, "quantization": {"quant_algo": "NVFP4", "kv_cache_quant_algo": "FP8", "group_size": 16,
				"exclude_modules": ["lm_head", "model.layers.0.mlp.gate", "model.layers.0.self_attn*"]}}`,
			conf: `{"config_groups": {"group_0": {"input_activations": {"dynamic": false, "num_bits": 4, "type": "float", "group_size": 16},
				"weights": {"dynamic": false, "num_bits": 4, "type": "float", "group_size": 16}, "targets": ["Linear"]}},
				"ignore": ["lm_head", "model.layers.0.mlp.gate", "model.layers.0.self_attn*"], "quant_algo": "NVFP4",
				"kv_cache_scheme": {"dynamic": false, "num_bits": 8, "type": "float"},
				"producer": {"name": "modelopt", "version": "0.47.0"}, "quant_method": "modelopt"}`,
		},
		{
			name: "fp8 everything, no kv",
			p: planWith("", []string{"model.layers.0.self_attn.q_proj", "model.layers.0.mlp.experts"},
				map[string]layerConfig{"model.layers.0.self_attn.q_proj": fp8, "model.layers.0.mlp.experts": fp8}, []string{"lm_head"}),
			hf: `{"producer": {"name": "modelopt", "version": "0.47.0"}, "quantization": {"quant_algo": "FP8", "kv_cache_quant_algo": null, "exclude_modules": ["lm_head"]}}`,
			conf: `{"config_groups": {"group_0": {"input_activations": {"dynamic": false, "num_bits": 8, "type": "float"},
				"weights": {"dynamic": false, "num_bits": 8, "type": "float"}, "targets": ["Linear"]}},
				"ignore": ["lm_head"], "quant_algo": "FP8", "producer": {"name": "modelopt", "version": "0.47.0"}, "quant_method": "modelopt"}`,
		},
		{
			name: "w4a16",
			p: planWith("", []string{"model.layers.0.mlp.experts"}, map[string]layerConfig{"model.layers.0.mlp.experts": {Algo: "W4A16_NVFP4", GroupSize: 16}},
				[]string{"lm_head"}),
			hf: `{"producer": {"name": "modelopt", "version": "0.47.0"}, "quantization": {"quant_algo": "W4A16_NVFP4", "kv_cache_quant_algo": null, "group_size": 16, "exclude_modules": ["lm_head"]}}`,
			conf: `{"config_groups": {"group_0": {"weights": {"dynamic": false, "num_bits": 4, "type": "float", "group_size": 16}, "targets": ["Linear"]}},
				"ignore": ["lm_head"], "quant_algo": "W4A16_NVFP4", "producer": {"name": "modelopt", "version": "0.47.0"}, "quant_method": "modelopt"}`,
		},
		{
			name: "mixed precision",
			p: planWith("FP8", []string{"model.layers.0.self_attn.q_proj", "model.layers.0.mlp.experts", "model.layers.1.mlp.experts", "model.layers.0.self_attn.k_proj"},
				map[string]layerConfig{"model.layers.0.self_attn.q_proj": fp8, "model.layers.0.self_attn.k_proj": fp8, "model.layers.0.mlp.experts": nv, "model.layers.1.mlp.experts": nv},
				[]string{"lm_head"}),
			hf: `{"producer": {"name": "modelopt", "version": "0.47.0"}, "quantization": {"quant_algo": "MIXED_PRECISION", "kv_cache_quant_algo": "FP8",
				"quantized_layers": {"model.layers.0.self_attn.q_proj": {"quant_algo": "FP8"}, "model.layers.0.mlp.experts": {"quant_algo": "NVFP4", "group_size": 16},
				"model.layers.1.mlp.experts": {"quant_algo": "NVFP4", "group_size": 16}, "model.layers.0.self_attn.k_proj": {"quant_algo": "FP8"}}}}`,
			conf: `{"config_groups": {"group_0": {"input_activations": {"dynamic": false, "num_bits": 8, "type": "float"}, "weights": {"dynamic": false, "num_bits": 8, "type": "float"},
				"targets": ["model.layers.0.self_attn.k_proj", "model.layers.0.self_attn.q_proj"]},
				"group_1": {"input_activations": {"dynamic": false, "num_bits": 4, "type": "float", "group_size": 16}, "weights": {"dynamic": false, "num_bits": 4, "type": "float", "group_size": 16},
				"targets": ["model.layers.0.mlp.experts", "model.layers.1.mlp.experts"]}},
				"quantized_layers": {"model.layers.0.self_attn.q_proj": {"quant_algo": "FP8"}, "model.layers.0.mlp.experts": {"quant_algo": "NVFP4", "group_size": 16},
				"model.layers.1.mlp.experts": {"quant_algo": "NVFP4", "group_size": 16}, "model.layers.0.self_attn.k_proj": {"quant_algo": "FP8"}},
				"ignore": [], "quant_algo": "MIXED_PRECISION", "kv_cache_scheme": {"dynamic": false, "num_bits": 8, "type": "float"},
				"producer": {"name": "modelopt", "version": "0.47.0"}, "quant_method": "modelopt"}`,
		},
		{
			name: "kv only (fused experts lost to the format gate)",
			p:    planWith("FP8", nil, map[string]layerConfig{}, []string{"lm_head"}),
			hf:   `{"producer": {"name": "modelopt", "version": "0.47.0"}, "quantization": {"quant_algo": null, "kv_cache_quant_algo": "FP8", "quantized_layers": {}}}`,
			conf: `{"ignore": [], "kv_cache_scheme": {"dynamic": false, "num_bits": 8, "type": "float"}, "producer": {"name": "modelopt", "version": "0.47.0"}, "quant_method": "modelopt"}`,
		},
		{name: "nothing quantized", p: planWith("", nil, map[string]layerConfig{}, []string{"lm_head"})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			section, err := c.p.quantSection()
			if err != nil {
				t.Fatal(err)
			}
			if c.hf == "" {
				if section != nil {
					t.Fatalf("section = %v, want none", section)
				}
				return
			}
			assertPyJSON(t, "hf_quant_config.json", hfQuantConfig(section), c.hf)
			qc, err := quantizationConfig(section)
			if err != nil {
				t.Fatal(err)
			}
			assertPyJSON(t, "quantization_config", qc, c.conf)
		})
	}
}

// assertPyJSON compares v, encoded, with want (compact JSON, reformatted
// by the same ordered parser, so key order matters).
func assertPyJSON(t *testing.T, what string, v any, want string) {
	t.Helper()
	got, err := marshalPy(v)
	if err != nil {
		t.Fatal(err)
	}
	wo, err := parseObject([]byte(want))
	if err != nil {
		t.Fatalf("bad expectation: %v", err)
	}
	wb, _ := marshalPy(wo)
	if string(got) != string(wb) {
		t.Errorf("%s:\n%s\nwant\n%s", what, got, wb)
	}
}
