package calib_test

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ptqgate/ptqgate/internal/refdata"
	"github.com/ptqgate/ptqgate/ptqcore/backend"
	"github.com/ptqgate/ptqgate/ptqcore/backend/cpu"
	"github.com/ptqgate/ptqgate/ptqcore/calib"
	"github.com/ptqgate/ptqgate/ptqcore/model"
	"github.com/ptqgate/ptqgate/ptqcore/quant"
)

// amaxRelTol is the amax tolerance of each reference case's README
// ("amax relative"): qwen3-moe-tiny 1e-5, qwen3-moe-dense-tiny 2e-5.
var amaxRelTol = map[string]float64{"qwen3-moe-tiny": 1e-5, "qwen3-moe-dense-tiny": 2e-5}

var referenceCases = []string{"qwen3-moe-tiny", "qwen3-moe-dense-tiny"}

// countingBackend counts the GEMM launches that reach the CPU backend.
type countingBackend struct {
	backend.Backend
	linear, grouped, norms int
}

func (c *countingBackend) RMSNorm(dst, x, w backend.Tensor, group int, eps float32, kind backend.NormKind, dt backend.DType) error {
	c.norms++
	return c.Backend.RMSNorm(dst, x, w, group, eps, kind, dt)
}

func (c *countingBackend) Linear(dst, x, w, bias backend.Tensor, dt backend.DType) error {
	c.linear++
	return c.Backend.Linear(dst, x, w, bias, dt)
}

func (c *countingBackend) GroupedLinear(dst, x, w backend.Tensor, offsets []int, dt backend.DType) ([]float32, error) {
	c.grouped++
	return c.Backend.GroupedLinear(dst, x, w, offsets, dt)
}

func loadRecipe(t *testing.T, file string) *quant.Recipe {
	t.Helper()
	r, err := quant.Load(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func loadCase(t *testing.T, name string) (*model.Model, *calib.Batches) {
	t.Helper()
	m, err := model.Load(refdata.Dir(name))
	if err != nil {
		t.Fatal(err)
	}
	b, err := calib.LoadBatches(filepath.Join(refdata.Dir(name), "calib.json"))
	if err != nil {
		t.Fatal(err)
	}
	return m, b
}

func run(t *testing.T, m *model.Model, be backend.Backend, r *quant.Recipe, b *calib.Batches, opt calib.Options) *calib.Result {
	t.Helper()
	res, err := calib.Run(m, be, r, b, opt)
	if err != nil {
		t.Fatalf("calibrate %s (%s): %v", m.Dir, opt.Experts, err)
	}
	return res
}

func relErr(got, want float64) float64 {
	if want == 0 {
		return math.Abs(got)
	}
	return math.Abs(got-want) / math.Abs(want)
}

// TestMatchesReference compares every quantizer's amax, the per-expert
// input amax and the per-expert calls and tokens with the transformers
// reference (amax.json, counts.json "eager"), in both expert modes and in
// layerwise mode.
func TestMatchesReference(t *testing.T) {
	for _, name := range referenceCases {
		ref, err := refdata.LoadAmax(name)
		if err != nil {
			t.Fatal(err)
		}
		counts, err := refdata.LoadCounts(name)
		if err != nil {
			t.Fatal(err)
		}
		m, b := loadCase(t, name)
		tol := amaxRelTol[name]
		for _, tc := range []struct {
			mode   model.ExpertsMode
			recipe string
		}{
			{model.ExpertsGrouped, "fp8_all.yaml"},
			{model.ExpertsEager, "fp8_all.yaml"},
			{model.ExpertsGrouped, "fp8_all_layerwise.yaml"},
		} {
			t.Run(fmt.Sprintf("%s/%s/%s", name, tc.mode, strings.TrimSuffix(tc.recipe, ".yaml")), func(t *testing.T) {
				res := run(t, m, cpu.New(), loadRecipe(t, tc.recipe), b, calib.Options{Experts: tc.mode})
				checkAmax(t, res, ref, tol)
				checkCounts(t, res, counts, len(b.Batches))
				if len(res.Uncalibrated) != 0 {
					t.Errorf("uncalibrated: %v", res.Uncalibrated)
				}
			})
		}
	}
}

func checkAmax(t *testing.T, res *calib.Result, ref *refdata.Amax, tol float64) {
	t.Helper()
	seen := map[string]bool{}
	for name, want := range ref.Amax {
		if strings.Contains(name, ".mlp.gate.") {
			// Router statistics: a TopKRouter has no quantizer.
			if _, ok := res.Quantizer(name); ok {
				t.Errorf("router %s has a quantizer", name)
			}
			continue
		}
		seen[name] = true
		q, ok := res.Quantizer(name)
		if !ok {
			t.Errorf("no quantizer %s", name)
			continue
		}
		if len(q.Amax) != 1 {
			t.Errorf("%s: amax %v, want one value", name, q.Amax)
			continue
		}
		if e := relErr(float64(q.Amax[0]), want); e > tol {
			t.Errorf("%s: amax %g, reference %g (relative error %.2g > %g)", name, q.Amax[0], want, e, tol)
		}
	}
	for _, q := range res.Quantizers {
		if !seen[q.Name] {
			t.Errorf("quantizer %s is not in the reference (ModelOpt has no such quantizer)", q.Name)
		}
	}
	if len(res.PerExpertInputAmax) != len(ref.AmaxPerExpertInput) {
		t.Errorf("%d per-expert input amax, reference has %d", len(res.PerExpertInputAmax), len(ref.AmaxPerExpertInput))
	}
	for name, want := range ref.AmaxPerExpertInput {
		got, ok := res.PerExpertInputAmax[name]
		if !ok {
			t.Errorf("no per-expert input amax %s", name)
			continue
		}
		if e := relErr(float64(got), want); e > tol {
			t.Errorf("%s: per-expert input amax %g, reference %g (relative error %.2g > %g)", name, got, want, e, tol)
		}
	}
	var gotEmpty []string
	for _, e := range res.ExpertsWithoutTokens {
		gotEmpty = append(gotEmpty, e.Name)
	}
	var wantEmpty []string
	for mod, experts := range ref.ExpertsWithoutTokens {
		for _, e := range experts {
			wantEmpty = append(wantEmpty, fmt.Sprintf("%s.%d", mod, e))
		}
	}
	slices.Sort(wantEmpty)
	if fmt.Sprint(gotEmpty) != fmt.Sprint(wantEmpty) {
		t.Errorf("experts without tokens %v, reference %v", gotEmpty, wantEmpty)
	}
}

func checkCounts(t *testing.T, res *calib.Result, counts *refdata.Counts, batches int) {
	t.Helper()
	perExpert := map[string]calib.ExpertResult{}
	for _, e := range res.Experts {
		perExpert[e.Name] = e
	}
	if len(counts.Eager.PerLayer) != len(res.Model.MoEBlocks()) {
		t.Errorf("%d MoE layers, reference %d", len(res.Model.MoEBlocks()), len(counts.Eager.PerLayer))
	}
	for mod, l := range counts.Eager.PerLayer {
		sumGU, sumDown := int64(0), int64(0)
		for e := 0; e < l.NumExperts; e++ {
			got, ok := perExpert[fmt.Sprintf("%s.%d", mod, e)]
			if !ok {
				t.Errorf("no accounting for %s expert %d", mod, e)
				continue
			}
			if got.Tokens != int64(l.TokensRouted[e]) || got.GateUpCalls != int64(l.GateUpLinearCalls[e]) || got.DownCalls != int64(l.DownLinearCalls[e]) {
				t.Errorf("%s expert %d: tokens/gate_up/down calls %d/%d/%d, reference %d/%d/%d", mod, e,
					got.Tokens, got.GateUpCalls, got.DownCalls, l.TokensRouted[e], l.GateUpLinearCalls[e], l.DownLinearCalls[e])
			}
			for proj, calls := range map[string]int64{"gate_up_proj": got.GateUpCalls, "down_proj": got.DownCalls} {
				w, _ := res.Quantizer(fmt.Sprintf("%s.%s_weight_quantizers.%d", mod, proj, e))
				if w.Calls != calls {
					t.Errorf("%s: %d calls, expert had %d", w.Name, w.Calls, calls)
				}
			}
			sumGU += got.GateUpCalls
			sumDown += got.DownCalls
		}
		for proj, sum := range map[string]int64{"gate_up_proj": sumGU, "down_proj": sumDown} {
			q, _ := res.Quantizer(mod + "." + proj + "_input_quantizer")
			if q.Calls != sum {
				t.Errorf("%s: %d calls, want the sum of the experts' calls %d", q.Name, q.Calls, sum)
			}
		}
	}
	for _, q := range res.Quantizers {
		if q.Proj != "" {
			continue
		}
		// Dense Linear quantizers and KV quantizers: once per batch.
		if q.Calls != int64(batches) {
			t.Errorf("%s: %d calls, want one per batch (%d)", q.Name, q.Calls, batches)
		}
	}
}

// TestExpertModesDiffer proves that the two expert modes really run
// different GEMMs (counted at the backend) and still give identical amax
// (bit for bit) and counts.
func TestExpertModesDiffer(t *testing.T) {
	m, b := loadCase(t, "qwen3-moe-tiny")
	counts, err := refdata.LoadCounts("qwen3-moe-tiny")
	if err != nil {
		t.Fatal(err)
	}
	r := loadRecipe(t, "fp8_all.yaml")
	grouped := &countingBackend{Backend: cpu.New()}
	eager := &countingBackend{Backend: cpu.New()}
	rg := run(t, m, grouped, r, b, calib.Options{Experts: model.ExpertsGrouped})
	re := run(t, m, eager, r, b, calib.Options{Experts: model.ExpertsEager})

	batches := len(b.Batches)
	layers := len(m.Layers)
	moeLayers := len(m.MoEBlocks())
	// Per batch and layer: q, k, v, o and the router are Linear launches.
	dense := batches * layers * 5
	if grouped.grouped != 2*moeLayers*batches || grouped.linear != dense {
		t.Errorf("grouped mode: %d grouped GEMMs and %d Linear GEMMs, want %d and %d", grouped.grouped, grouped.linear, 2*moeLayers*batches, dense)
	}
	perExpert := counts.Eager.TotalPerExpertFLinearCalls // one GEMM per hit expert and projection
	if eager.grouped != 0 || eager.linear != dense+perExpert {
		t.Errorf("eager mode: %d grouped GEMMs and %d Linear GEMMs, want 0 and %d", eager.grouped, eager.linear, dense+perExpert)
	}
	for i := range rg.Quantizers {
		g, e := rg.Quantizers[i], re.Quantizers[i]
		if g.Name != e.Name || g.Calls != e.Calls || !slices.Equal(g.Amax, e.Amax) {
			t.Errorf("%s: grouped amax %v calls %d, eager %s amax %v calls %d", g.Name, g.Amax, g.Calls, e.Name, e.Amax, e.Calls)
		}
	}
	if !slices.EqualFunc(rg.Experts, re.Experts, equalExpert) {
		t.Errorf("expert accounting differs between modes:\ngrouped %+v\neager   %+v", rg.Experts, re.Experts)
	}
}

func equalExpert(a, b calib.ExpertResult) bool {
	return a.Name == b.Name && a.Tokens == b.Tokens && a.GateUpCalls == b.GateUpCalls && a.DownCalls == b.DownCalls &&
		sameBits(a.GateUpInputAmax, b.GateUpInputAmax) && sameBits(a.DownInputAmax, b.DownInputAmax) &&
		(a.AllExpertsRows == nil) == (b.AllExpertsRows == nil) && (a.AllExpertsRows == nil || *a.AllExpertsRows == *b.AllExpertsRows)
}

func sameBits(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) }
