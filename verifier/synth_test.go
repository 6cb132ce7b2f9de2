package verifier

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"

	"github.com/ptqgate/ptqgate/reports"
)

// synthSpec shapes a synthetic checkpoint with the tensor census of
// Qwen3.5-35B-A3B (VLM naming, 3 linear-attention : 1 full-attention
// layers, a shared expert, 256 routed experts, hidden 2048,
// moe_intermediate 512, vocab 248320). Only the header and the scale
// tensors are written for real; the weight regions are holes of a sparse
// file (Truncate), so a 35 GB checkpoint costs a few MB of disk.
type synthSpec struct {
	format  string // "FP8" or "NVFP4"
	layers  int
	experts int
	// realBlockScales writes the NVFP4 E4M3 block scales for real (1.0)
	// instead of leaving them as holes (which read as zeros).
	realBlockScales bool
}

const (
	synthH      = 2048
	synthI      = 512
	synthShared = 512
	synthVocab  = 248320
	synthHeads  = 16
	synthKV     = 2
	synthHD     = 256
	synthLinK   = 16
	synthLinV   = 32
	synthLinD   = 128
)

type synthTensor struct {
	name  string
	dtype string
	shape []int64
	fill  []byte // nil: hole (zeros); else the bytes (len = size)
}

func (t synthTensor) size() int64 {
	n := int64(1)
	for _, d := range t.shape {
		n *= d
	}
	switch t.dtype {
	case "F32":
		return 4 * n
	case "BF16":
		return 2 * n
	}
	return n
}

func f32bytes(v float32) []byte {
	b := make([]byte, 4)
	binary.LittleEndian.PutUint32(b, math.Float32bits(v))
	return b
}

// synthTensors lists the census.
func (s synthSpec) synthTensors() []synthTensor {
	var ts []synthTensor
	add := func(name, dtype string, fill []byte, shape ...int64) {
		ts = append(ts, synthTensor{name: name, dtype: dtype, shape: shape, fill: fill})
	}
	nvfp4 := s.format == "NVFP4"
	lin := func(m string, out, in int64, quant bool, inScale float32) {
		if !quant {
			add(m+".weight", "BF16", nil, out, in)
			return
		}
		if !nvfp4 {
			add(m+".weight", "F8_E4M3", nil, out, in)
			add(m+".weight_scale", "F32", f32bytes(0.0005+float32(len(ts)%97)*1e-6))
			add(m+".input_scale", "F32", f32bytes(inScale))
			return
		}
		add(m+".weight", "U8", nil, out, in/2)
		var bs []byte
		if s.realBlockScales {
			bs = bytes.Repeat([]byte{0x38}, int(out*in/16))
		}
		add(m+".weight_scale", "F8_E4M3", bs, out, in/16)
		add(m+".weight_scale_2", "F32", f32bytes(0.0001))
		add(m+".input_scale", "F32", f32bytes(inScale))
	}
	p := "model.language_model"
	add(p+".embed_tokens.weight", "BF16", nil, synthVocab, synthH)
	add(p+".norm.weight", "BF16", nil, synthH)
	add("lm_head.weight", "BF16", nil, synthVocab, synthH)
	for l := 0; l < s.layers; l++ {
		lp := fmt.Sprintf("%s.layers.%d", p, l)
		add(lp+".input_layernorm.weight", "BF16", nil, synthH)
		add(lp+".post_attention_layernorm.weight", "BF16", nil, synthH)
		if (l+1)%4 == 0 {
			a := lp + ".self_attn"
			lin(a+".q_proj", 2*synthHeads*synthHD, synthH, true, 0.01)
			lin(a+".k_proj", synthKV*synthHD, synthH, true, 0.01)
			lin(a+".v_proj", synthKV*synthHD, synthH, true, 0.01)
			lin(a+".o_proj", synthH, synthHeads*synthHD, true, 0.02)
			add(a+".q_norm.weight", "BF16", nil, synthHD)
			add(a+".k_norm.weight", "BF16", nil, synthHD)
			add(a+".k_proj.k_scale", "F32", f32bytes(0.05))
			add(a+".v_proj.v_scale", "F32", f32bytes(0.04))
		} else {
			a := lp + ".linear_attn"
			c := int64(2*synthLinK*synthLinD + synthLinV*synthLinD)
			lin(a+".in_proj_qkv", c, synthH, true, 0.01)
			lin(a+".in_proj_z", synthLinV*synthLinD, synthH, true, 0.01)
			lin(a+".in_proj_b", synthLinV, synthH, false, 0)
			lin(a+".in_proj_a", synthLinV, synthH, false, 0)
			lin(a+".out_proj", synthH, synthLinV*synthLinD, true, 0.02)
			add(a+".conv1d.weight", "BF16", nil, c, 1, 4)
			add(a+".A_log", "BF16", nil, synthLinV)
			add(a+".dt_bias", "BF16", nil, synthLinV)
			add(a+".norm.weight", "BF16", nil, synthLinD)
		}
		add(lp+".mlp.gate.weight", "BF16", nil, int64(s.experts), synthH)
		add(lp+".mlp.shared_expert_gate.weight", "BF16", nil, 1, synthH)
		se := lp + ".mlp.shared_expert"
		lin(se+".gate_proj", synthShared, synthH, true, 0.03)
		lin(se+".up_proj", synthShared, synthH, true, 0.03)
		lin(se+".down_proj", synthH, synthShared, true, 0.04)
		for e := 0; e < s.experts; e++ {
			m := lp + ".mlp.experts." + strconv.Itoa(e)
			lin(m+".gate_proj", synthI, synthH, true, 0.03)
			lin(m+".up_proj", synthI, synthH, true, 0.03)
			lin(m+".down_proj", synthH, synthI, true, 0.04)
		}
	}
	return ts
}

// writeSynthetic writes the checkpoint into dir and returns its tensor
// count, file size and block-scale bytes.
func writeSynthetic(tb testing.TB, dir string, s synthSpec) (tensors int, fileSize, blockScaleBytes int64) {
	tb.Helper()
	ts := s.synthTensors()
	// Data order: real bytes first (scales), holes after, so the written
	// part is one prefix of the file.
	sort.SliceStable(ts, func(i, j int) bool { return ts[i].fill != nil && ts[j].fill == nil })
	var hdr bytes.Buffer
	hdr.WriteString(`{"__metadata__":{"format":"pt"}`)
	var off int64
	for _, t := range ts {
		sh, _ := json.Marshal(t.shape)
		if t.shape == nil {
			sh = []byte("[]")
		}
		fmt.Fprintf(&hdr, `,%q:{"dtype":%q,"shape":%s,"data_offsets":[%d,%d]}`, t.name, t.dtype, sh, off, off+t.size())
		off += t.size()
		if t.dtype == "F8_E4M3" {
			blockScaleBytes += t.size()
		}
	}
	hdr.WriteByte('}')
	for hdr.Len()%8 != 0 {
		hdr.WriteByte(' ')
	}
	path := filepath.Join(dir, "model.safetensors")
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(hdr.Len()))
	w := bytes.NewBuffer(nil)
	w.Write(lenBuf[:])
	w.Write(hdr.Bytes())
	for _, t := range ts {
		if t.fill == nil {
			break
		}
		w.Write(t.fill)
	}
	if _, err := f.Write(w.Bytes()); err != nil {
		tb.Fatal(err)
	}
	fileSize = 8 + int64(hdr.Len()) + off
	if err := f.Truncate(fileSize); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	var exclude []any
	exclude = append(exclude, "lm_head", "model.visual*")
	for l := 0; l < s.layers; l++ {
		lp := fmt.Sprintf("model.language_model.layers.%d", l)
		exclude = append(exclude, lp+".mlp.gate", lp+".mlp.shared_expert_gate")
		if (l+1)%4 != 0 {
			exclude = append(exclude, lp+".linear_attn.conv1d", lp+".linear_attn.in_proj_a", lp+".linear_attn.in_proj_b")
		}
	}
	var types []any
	for l := 0; l < s.layers; l++ {
		if (l+1)%4 == 0 {
			types = append(types, "full_attention")
		} else {
			types = append(types, "linear_attention")
		}
	}
	qc := map[string]any{"quant_method": "modelopt", "quant_algo": s.format, "ignore": exclude,
		"producer":        map[string]any{"name": "modelopt", "version": "0.47.0"},
		"kv_cache_scheme": map[string]any{"dynamic": false, "num_bits": 8, "type": "float"}}
	if s.format == "NVFP4" {
		qc["group_size"] = 16
	}
	cfg := map[string]any{
		"architectures": []any{"Qwen3_5MoeForConditionalGeneration"}, "model_type": "qwen3_5_moe", "dtype": "bfloat16",
		"quantization_config": qc,
		"text_config": map[string]any{"model_type": "qwen3_5_moe_text", "hidden_size": synthH, "num_hidden_layers": s.layers,
			"num_experts": s.experts, "num_experts_per_tok": 8, "moe_intermediate_size": synthI, "shared_expert_intermediate_size": synthShared,
			"num_attention_heads": synthHeads, "num_key_value_heads": synthKV, "head_dim": synthHD, "vocab_size": synthVocab,
			"linear_num_key_heads": synthLinK, "linear_num_value_heads": synthLinV, "linear_key_head_dim": synthLinD, "linear_value_head_dim": synthLinD,
			"layer_types": types},
	}
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		tb.Fatal(err)
	}
	return len(ts), fileSize, blockScaleBytes
}

// TestSyntheticCensusIsClean keeps the benchmark honest: a small
// synthetic checkpoint of the same census verifies without errors, so
// the benchmark times the clean path.
func TestSyntheticCensusIsClean(t *testing.T) {
	for _, s := range []synthSpec{{format: "FP8", layers: 4, experts: 4}, {format: "NVFP4", layers: 4, experts: 4, realBlockScales: true}} {
		dir := t.TempDir()
		writeSynthetic(t, dir, s)
		r, err := Verify(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range r.Findings {
			if f.Severity == "error" {
				t.Errorf("%s: %s [%s] %s", s.format, f.Rule, f.Target, f.Message)
			}
		}
	}
}

// benchVerify times Verify on a synthetic 35B-A3B census.
func benchVerify(b *testing.B, s synthSpec, opt Options) {
	dir := b.TempDir()
	n, size, _ := writeSynthetic(b, dir, s)
	if _, err := Verify(dir, opt); err != nil { // warm the page cache
		b.Fatal(err)
	}
	for b.Loop() {
		r, err := Verify(dir, opt)
		if err != nil {
			b.Fatal(err)
		}
		if !r.Clean() {
			b.Fatalf("synthetic checkpoint is not clean: %+v", r.Findings[0])
		}
	}
	b.ReportMetric(float64(n), "tensors")
	b.ReportMetric(float64(size)/1e9, "ckpt-GB")
}

// BenchmarkVerifyFP8_35B: full verification (vllm and sglang) of an FP8
// per-tensor 40 × 256-expert checkpoint.
func BenchmarkVerifyFP8_35B(b *testing.B) {
	benchVerify(b, synthSpec{format: "FP8", layers: 40, experts: 256}, Options{})
}

// BenchmarkVerifyNVFP4_35B_Scalars: the same for NVFP4, header and
// per-tensor scale checks only (block-scale scan skipped).
func BenchmarkVerifyNVFP4_35B_Scalars(b *testing.B) {
	benchVerify(b, synthSpec{format: "NVFP4", layers: 40, experts: 256}, Options{SkipBlockScales: true})
}

// BenchmarkVerifyNVFP4_35B_Full: the complete NVFP4 verification with the
// block-scale scan (block scales written for real).
func BenchmarkVerifyNVFP4_35B_Full(b *testing.B) {
	benchVerify(b, synthSpec{format: "NVFP4", layers: 40, experts: 256, realBlockScales: true}, Options{})
}

// BenchmarkBlockScaleScan: the E4M3 block-scale scan alone over every
// block scale of the NVFP4 40 × 256 checkpoint (written for real, warm
// page cache); SetBytes makes the result a throughput.
func BenchmarkBlockScaleScan(b *testing.B) {
	dir := b.TempDir()
	_, _, bsBytes := writeSynthetic(b, dir, synthSpec{format: "NVFP4", layers: 40, experts: 256, realBlockScales: true})
	v := &run{opt: Options{}, checks: map[[2]string]int{}}
	v.rep = reports.New(reports.KindVerify, "bench")
	ck, err := v.openCheckpoint(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer ck.close()
	v.ck = ck
	cfgs, _ := v.loadConfigs(dir)
	v.cfgs = cfgs
	v.geo = &geometry{textPrefix: "model.language_model"}
	v.mods = indexModules(ck, v.geo)
	var ts []*tensor
	for _, m := range v.mods.list {
		if m.stored() == fmtNVFP4 && m.scale != nil {
			ts = append(ts, m.scale)
		}
	}
	scan := func() int {
		bad := 0
		v.scanTensors(ts, func(_ *tensor, piece []byte, _ int64) {
			z, n, g := badBlockScales(piece)
			bad += z + n + g
		})
		return bad
	}
	if bad := scan(); bad != 0 { // warm the page cache
		b.Fatalf("%d bad block scales in a clean file", bad)
	}
	b.SetBytes(bsBytes)
	for b.Loop() {
		scan()
	}
}

// BenchmarkBadBlockScalesCPU is the scan kernel on an in-memory buffer.
func BenchmarkBadBlockScalesCPU(b *testing.B) {
	buf := bytes.Repeat([]byte{0x38, 0x40, 0x30, 0x41}, 1<<20)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if z, n, g := badBlockScales(buf); z+n+g != 0 {
			b.Fatal("bad")
		}
	}
}
