//go:build cuda

// Command bench-cuda measures ptqgate's CUDA backend on the benchmark of
// /work/shared/bench/README.md (Qwen3-30B-A3B's layer shape in bfloat16,
// synthetic weights, 64 sequences of 512 tokens in batches of 8) and the
// flat GPU memory of layerwise weight streaming. bench/cuda/run.sh runs it
// beside the peer script on the same GPU.
//
// Modes:
//
//	-mode calib    calibration tokens/s as users run it (calib.Run, no
//	               logits), with the lm_head forced on, the expert GEMMs'
//	               TFLOP/s, the bf16 GEMM peak and a per-operation profile
//	-mode memory   peak GPU memory for -layers 4,12,48 with streamed weights
//
// It prints one JSON object per measurement and writes them all to -out.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/ptqgate/ptqgate/ptqcore/backend"
	"github.com/ptqgate/ptqgate/ptqcore/backend/cuda"
	"github.com/ptqgate/ptqgate/ptqcore/calib"
	"github.com/ptqgate/ptqgate/ptqcore/model"
	"github.com/ptqgate/ptqgate/ptqcore/quant"
)

func main() {
	mode := flag.String("mode", "calib", "calib or memory")
	layers := flag.String("layers", "4", "decoder layers (memory mode: a comma-separated list)")
	nseq := flag.Int("nseq", 64, "calibration sequences")
	seqLen := flag.Int("seq", 512, "tokens per sequence")
	bs := flag.Int("bs", 8, "sequences per batch")
	batches := flag.Int("batches", 2, "batches per layer count (memory mode)")
	out := flag.String("out", "", "write the results (JSON) to this file")
	cpuprofile := flag.String("cpuprofile", "", "write a Go CPU profile to this file")
	flag.Parse()
	if *cpuprofile != "" && *mode != "hostprof" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench-cuda:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	var res []map[string]any
	var err error
	switch *mode {
	case "calib":
		n, e := strconv.Atoi(*layers)
		if e != nil {
			err = fmt.Errorf("-layers %q: %w", *layers, e)
			break
		}
		res, err = benchCalib(n, *nseq, *seqLen, *bs)
	case "hostprof":
		res, err = benchHostProfile(*nseq, *seqLen, *bs, *cpuprofile)
	case "memory":
		var ls []int
		for _, f := range strings.Split(*layers, ",") {
			n, e := strconv.Atoi(strings.TrimSpace(f))
			if e != nil {
				err = fmt.Errorf("-layers %q: %w", *layers, e)
				break
			}
			ls = append(ls, n)
		}
		if err == nil {
			res, err = benchMemory(ls, *batches, *seqLen, *bs)
		}
	default:
		err = fmt.Errorf("unknown -mode %q", *mode)
	}
	if *out != "" && len(res) > 0 {
		data, e := json.MarshalIndent(res, "", " ")
		if e == nil {
			e = os.WriteFile(*out, data, 0o644)
		}
		if e != nil && err == nil {
			err = e
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-cuda:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func emit(res *[]map[string]any, m map[string]any) {
	*res = append(*res, m)
	b, _ := json.Marshal(m)
	fmt.Println(string(b))
}

// batchesOf splits sequences into calibration batches of bs sequences.
func batchesOf(seqs [][]int32, bs int) *calib.Batches {
	b := &calib.Batches{Path: "synthetic"}
	for i := 0; i < len(seqs); i += bs {
		b.Batches = append(b.Batches, seqs[i:min(i+bs, len(seqs))])
	}
	return b
}

// amaxObserver does what calibration does at each hook (a per-tensor amax
// of every input; the grouped GEMM's own amax for experts) and, when
// lmHead is set, runs the lm_head GEMM on its input as the peers' forward
// does (the logits stay on the GPU).
type amaxObserver struct {
	be     backend.Backend
	lmHead backend.Tensor
	vocab  int
}

func (o *amaxObserver) Input(in *model.Input) error {
	if in.Layer == -1 && o.lmHead != nil {
		logits, err := o.be.Alloc(in.X.Rows(), o.vocab)
		if err != nil {
			return err
		}
		defer o.be.Free(logits)
		if err := o.be.Linear(logits, in.X, o.lmHead, nil, backend.BF16); err != nil {
			return err
		}
	}
	if in.HasAmax {
		return nil
	}
	_, err := o.be.Amax(in.X, backend.Reduction{Kind: backend.PerTensor})
	return err
}

func (o *amaxObserver) Routed(int, string, []int) error { return nil }

// forwardLoop runs every batch with the observer and returns tokens/s.
func forwardLoop(m *model.Model, be *cuda.Backend, b *calib.Batches, head model.Head, obs model.Observer) (float64, error) {
	if err := be.Synchronize(); err != nil {
		return 0, err
	}
	t0 := time.Now()
	for i := range b.Batches {
		if _, err := m.Forward(be, b.Batch(i), model.PassOptions{Experts: model.ExpertsGrouped, Observer: obs, Head: head}); err != nil {
			return 0, err
		}
	}
	if err := be.Synchronize(); err != nil {
		return 0, err
	}
	return float64(b.Tokens()) / time.Since(t0).Seconds(), nil
}

func benchCalib(layers, nseq, seqLen, bs int) ([]map[string]any, error) {
	var res []map[string]any
	sh := qwen3_30b
	t0 := time.Now()
	m, err := sh.build(layers, layers, 1)
	if err != nil {
		return nil, err
	}
	be, err := cuda.New()
	if err != nil {
		return nil, err
	}
	defer be.Close()
	emit(&res, map[string]any{"what": "setup", "device": be.Name(), "layers": layers, "weights_gib": gib(weightBytes(m)), "build_seconds": time.Since(t0).Seconds()})

	all := batchesOf(tokens(nseq, seqLen, sh.Vocab, 42), bs)
	warm := &calib.Batches{Path: "warm-up", Batches: all.Batches[:1]}
	recipe, err := quant.Load("fp8_default-fp8_kv")
	if err != nil {
		return nil, err
	}
	// Warm-up (uploads the weights; the peer also runs one batch first).
	t0 = time.Now()
	if _, err := calib.Run(m, be, recipe, warm, calib.Options{}); err != nil {
		return nil, fmt.Errorf("warm-up calibration: %w", err)
	}
	emit(&res, map[string]any{"what": "warm-up calibration (weights upload + 1 batch)", "seconds": time.Since(t0).Seconds()})

	for _, mode := range []model.ExpertsMode{model.ExpertsGrouped, model.ExpertsEager} {
		t0 = time.Now()
		r, err := calib.Run(m, be, recipe, all, calib.Options{Experts: mode})
		if err != nil {
			return nil, fmt.Errorf("calibration: %w", err)
		}
		wall := time.Since(t0)
		emit(&res, map[string]any{
			"what": "calib.Run " + mode.String() + " (fp8_default-fp8_kv, no logits)", "tokens": r.Tokens, "batches": r.Batches,
			"forward_seconds": r.ForwardDuration.Seconds(), "tokens_per_s": float64(r.Tokens) / r.ForwardDuration.Seconds(),
			"run_seconds": wall.Seconds(), "tokens_per_s_incl_weight_amax": float64(r.Tokens) / wall.Seconds(),
		})
	}

	obs := &amaxObserver{be: be, lmHead: m.LMHead.Weight.Device(), vocab: sh.Vocab}
	tps, err := forwardLoop(m, be, all, model.HeadInput, obs)
	if err != nil {
		return nil, err
	}
	emit(&res, map[string]any{"what": "calibration forward with the lm_head GEMM (logits on the GPU)", "tokens_per_s": tps})
	tps, err = forwardLoop(m, be, all, model.HeadNone, &amaxObserver{be: be})
	if err != nil {
		return nil, err
	}
	expertFlopsTok := float64(sh.TopK * 3 * 2 * sh.Hidden * sh.MoEInter * layers)
	emit(&res, map[string]any{"what": "calibration forward without lm_head (same observer)", "tokens_per_s": tps,
		"expert_gemm_tflops_at_this_rate": expertFlopsTok * tps / 1e12})

	if stats, err := be.Stats(); err == nil {
		st := stats[0]
		emit(&res, map[string]any{"what": "GPU memory, resident weights (default placement)", "resident_gib": gib(st.ResidentWeights),
			"pool_used_high_gib": gib(st.PoolUsedHigh), "pool_reserved_high_gib": gib(st.PoolReservedHigh), "device_used_gib": gib(st.DeviceUsed)})
	} else {
		return nil, err
	}
	if err := profile(&res, m, be, all); err != nil {
		return nil, err
	}
	if err := gemmBench(&res, be, m, sh, bs*seqLen); err != nil {
		return nil, err
	}
	m.Release()
	return res, nil
}

// benchHostProfile profiles the host side (Go CPU profile) of repeated
// calibration forwards only, to find where the GPU waits for the host.
func benchHostProfile(nseq, seqLen, bs int, path string) ([]map[string]any, error) {
	var res []map[string]any
	sh := qwen3_30b
	m, err := sh.build(4, 4, 1)
	if err != nil {
		return nil, err
	}
	be, err := cuda.New()
	if err != nil {
		return nil, err
	}
	defer be.Close()
	if err := m.Prepare(be); err != nil {
		return nil, err
	}
	all := batchesOf(tokens(nseq, seqLen, sh.Vocab, 42), bs)
	if _, err := forwardLoop(m, be, all, model.HeadNone, &amaxObserver{be: be}); err != nil {
		return nil, err
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return nil, err
	}
	t0 := time.Now()
	var tps float64
	for i := 0; i < 6; i++ {
		if tps, err = forwardLoop(m, be, all, model.HeadNone, &amaxObserver{be: be}); err != nil {
			pprof.StopCPUProfile()
			return nil, err
		}
	}
	pprof.StopCPUProfile()
	emit(&res, map[string]any{"what": "host profile", "seconds": time.Since(t0).Seconds(), "tokens_per_s": tps})
	return res, nil
}

// gemmBench times the expert GEMMs of one batch in isolation, the
// attention projections, the lm_head and the 8192³ bf16 peak.
func gemmBench(res *[]map[string]any, be *cuda.Backend, m *model.Model, sh shape, tokensPerBatch int) error {
	timeIt := func(reps int, f func() error) (float64, error) {
		if err := f(); err != nil { // warm-up
			return 0, err
		}
		if err := be.Synchronize(); err != nil {
			return 0, err
		}
		t0 := time.Now()
		for i := 0; i < reps; i++ {
			if err := f(); err != nil {
				return 0, err
			}
		}
		if err := be.Synchronize(); err != nil {
			return 0, err
		}
		return time.Since(t0).Seconds() / float64(reps), nil
	}
	upload := func(rows, cols int, seed uint64) (backend.Tensor, error) {
		return be.Upload(rows, cols, randomBF16(rows*cols, 1, seed))
	}
	// Routing of one batch: every token to TopK distinct random experts.
	rows := tokensPerBatch * sh.TopK
	counts := make([]int, sh.Experts)
	seqs := tokens(tokensPerBatch, sh.TopK, sh.Experts, 5)
	for _, s := range seqs {
		seen := map[int32]bool{}
		for _, e := range s {
			for seen[e] {
				e = (e + 1) % int32(sh.Experts)
			}
			seen[e] = true
			counts[e]++
		}
	}
	offsets := make([]int, sh.Experts+1)
	for i, c := range counts {
		offsets[i+1] = offsets[i] + c
	}
	moe := m.Layers[0].FFN.(*model.MoE).Experts
	x, err := upload(rows, sh.Hidden, 11)
	if err != nil {
		return err
	}
	a, err := upload(rows, sh.MoEInter, 12)
	if err != nil {
		return err
	}
	gu, _ := be.Alloc(rows, 2*sh.MoEInter)
	y, _ := be.Alloc(rows, sh.Hidden)
	tGU, err := timeIt(10, func() error {
		_, err := be.GroupedLinear(gu, x, moe.GateUp.Device(), offsets, backend.BF16)
		return err
	})
	if err != nil {
		return err
	}
	tD, err := timeIt(10, func() error { _, err := be.GroupedLinear(y, a, moe.Down.Device(), offsets, backend.BF16); return err })
	if err != nil {
		return err
	}
	fGU := 2 * float64(rows) * float64(2*sh.MoEInter) * float64(sh.Hidden)
	fD := 2 * float64(rows) * float64(sh.Hidden) * float64(sh.MoEInter)
	emit(res, map[string]any{"what": "expert GEMMs of one batch (grouped, per-expert amax fused)", "rows": rows,
		"gate_up_ms": tGU * 1e3, "gate_up_tflops": fGU / tGU / 1e12, "down_ms": tD * 1e3, "down_tflops": fD / tD / 1e12,
		"both_tflops": (fGU + fD) / (tGU + tD) / 1e12})
	for _, t := range []backend.Tensor{x, a, gu, y} {
		be.Free(t)
	}
	lin := func(name string, mm, n, k int, w backend.Tensor) error {
		x, err := upload(mm, k, 21)
		if err != nil {
			return err
		}
		if w == nil {
			if w, err = upload(n, k, 22); err != nil {
				return err
			}
			defer be.Free(w)
		}
		out, _ := be.Alloc(mm, n)
		t, err := timeIt(5, func() error { return be.Linear(out, x, w, nil, backend.BF16) })
		if err != nil {
			return err
		}
		emit(res, map[string]any{"what": "linear " + name, "m": mm, "n": n, "k": k, "ms": t * 1e3, "tflops": 2 * float64(mm) * float64(n) * float64(k) / t / 1e12})
		be.Free(x)
		be.Free(out)
		return nil
	}
	// Per-operation costs on the batch shapes (each includes the worker
	// round trip; RouterTopK and Amax also wait for their results).
	logits, err := upload(tokensPerBatch, sh.Experts, 31)
	if err != nil {
		return err
	}
	tR, err := timeIt(10, func() error {
		_, _, err := be.RouterTopK(logits, backend.RouterSpec{TopK: sh.TopK, Normalize: true}, backend.BF16)
		return err
	})
	if err != nil {
		return err
	}
	hid, err := upload(tokensPerBatch, sh.Hidden, 32)
	if err != nil {
		return err
	}
	tA, err := timeIt(10, func() error {
		// A fresh view each time defeats the amax cache.
		v, err := be.View(hid, 0, tokensPerBatch)
		if err != nil {
			return err
		}
		_, err = be.Amax(v, backend.Reduction{Kind: backend.PerTensor})
		return err
	})
	if err != nil {
		return err
	}
	small, _ := be.Alloc(1, 8)
	tL, err := timeIt(50, func() error { return be.Add(small, small, small, backend.BF16) })
	if err != nil {
		return err
	}
	few, err := be.View(logits, 0, 512)
	if err != nil {
		return err
	}
	tR512, err := timeIt(10, func() error {
		_, _, err := be.RouterTopK(few, backend.RouterSpec{TopK: sh.TopK, Normalize: true}, backend.BF16)
		return err
	})
	if err != nil {
		return err
	}
	tR1, err := timeIt(10, func() error {
		_, _, err := be.RouterTopK(logits, backend.RouterSpec{TopK: 1}, backend.BF16)
		return err
	})
	if err != nil {
		return err
	}
	dl := make([]float32, 512*sh.Experts)
	tDl, err := timeIt(10, func() error { return be.Download(few, dl) })
	if err != nil {
		return err
	}
	emit(res, map[string]any{"what": "operation costs", "router_topk_ms": tR * 1e3, "router_topk_512rows_ms": tR512 * 1e3,
		"router_top1_ms": tR1 * 1e3, "download_64k_values_ms": tDl * 1e3, "amax_ms": tA * 1e3, "tiny_add_posted_us": tL * 1e6})
	be.Free(logits)
	be.Free(hid)
	be.Free(small)
	if err := lin("q_proj", tokensPerBatch, sh.Heads*sh.HeadDim, sh.Hidden, nil); err != nil {
		return err
	}
	if err := lin("lm_head", tokensPerBatch, sh.Vocab, sh.Hidden, m.LMHead.Weight.Device()); err != nil {
		return err
	}
	return lin("peak 8192^3", 8192, 8192, 8192, nil)
}

// profile runs two batches with the backend's kernel timing on: GPU time
// per kernel (CUDA events) and worker time per operation.
func profile(res *[]map[string]any, m *model.Model, be *cuda.Backend, b *calib.Batches) error {
	if err := be.SetProfiling(true); err != nil {
		return err
	}
	two := &calib.Batches{Batches: b.Batches[:min(2, len(b.Batches))]}
	tps, err := forwardLoop(m, be, two, model.HeadNone, &amaxObserver{be: be})
	if err != nil {
		return err
	}
	prof, err := be.Profile()
	if err != nil {
		return err
	}
	if err := be.SetProfiling(false); err != nil {
		return err
	}
	out := map[string]any{"what": "profile (2 batches; kernels: GPU ms, op: worker ms)", "tokens_per_s": tps}
	for _, p := range prof {
		out[p.Name] = fmt.Sprintf("%.3f ms / %d", p.Milliseconds, p.Calls)
	}
	emit(res, out)
	return nil
}

// benchMemory runs a few batches per layer count with every weight
// streamed and reports the GPU memory high-water marks.
func benchMemory(layerCounts []int, nb, seqLen, bs int) ([]map[string]any, error) {
	var res []map[string]any
	sh := qwen3_30b
	for _, layers := range layerCounts {
		t0 := time.Now()
		m, err := sh.build(layers, 2, 1)
		if err != nil {
			return nil, err
		}
		be, err := cuda.NewWithOptions(cuda.Options{Weights: cuda.WeightsStream})
		if err != nil {
			return nil, err
		}
		if err := be.ResetStats(); err != nil {
			return nil, err
		}
		if err := m.Prepare(be); err != nil {
			return nil, err
		}
		b := batchesOf(tokens(nb*bs, seqLen, sh.Vocab, 7), bs)
		tps, err := forwardLoop(m, be, b, model.HeadNone, &amaxObserver{be: be})
		if err != nil {
			return nil, err
		}
		stats, err := be.Stats()
		if err != nil {
			return nil, err
		}
		s := stats[0]
		emit(&res, map[string]any{"what": "streamed weights: peak GPU memory", "layers": layers, "weights_gib": gib(weightBytes(m)),
			"batches": nb, "tokens_per_batch": bs * seqLen, "tokens_per_s": tps,
			"pool_used_high_gib": gib(s.PoolUsedHigh), "pool_reserved_high_gib": gib(s.PoolReservedHigh),
			"device_used_gib": gib(s.DeviceUsed), "stream_window_gib": gib(s.StreamWindow), "streamed_gib": gib(s.StreamedWeights),
			"resident_gib": gib(s.ResidentWeights), "uploaded_gib": gib(s.UploadedBytes), "seconds": time.Since(t0).Seconds()})
		m.Release()
		if err := be.Close(); err != nil {
			return nil, err
		}
		m = nil
		runtime.GC()
		debug.FreeOSMemory()
	}
	return res, nil
}
