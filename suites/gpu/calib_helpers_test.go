//go:build cuda

package gpu_test

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"

	. "github.com/onsi/gomega"

	"github.com/ptqgate/ptqgate/internal/refdata"
	"github.com/ptqgate/ptqgate/ptqcore/backend"
	"github.com/ptqgate/ptqgate/ptqcore/calib"
	"github.com/ptqgate/ptqgate/ptqcore/model"
	"github.com/ptqgate/ptqgate/ptqcore/quant"
)

func readJSON(path string, v any) {
	data, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred())
	Expect(json.Unmarshal(data, v)).To(Succeed(), path)
}

// calibrate runs calib.Run with a recipe file or preset name.
func calibrate(m *model.Model, be backend.Backend, recipe string, b *calib.Batches, opt calib.Options) *calib.Result {
	r, err := quant.Load(recipe)
	Expect(err).NotTo(HaveOccurred())
	res, err := calib.Run(m, be, r, b, opt)
	Expect(err).NotTo(HaveOccurred(), "calibrate %s (%s) on %s", m.Dir, opt.Experts, be.Name())
	return res
}

// checkAmax compares every quantizer's amax and the per-expert input amax
// with amax.json.
func checkAmax(res *calib.Result, ref *refdata.Amax, tol float64) {
	seen := map[string]bool{}
	for name, want := range ref.Amax {
		if strings.Contains(name, ".mlp.gate.") {
			continue // routers have no quantizer
		}
		seen[name] = true
		q, ok := res.Quantizer(name)
		Expect(ok).To(BeTrue(), "no quantizer %s", name)
		Expect(q.Amax).To(HaveLen(1), name)
		Expect(relErr(float64(q.Amax[0]), want)).To(BeNumerically("<=", tol), "%s: amax %g, reference %g", name, q.Amax[0], want)
	}
	for _, q := range res.Quantizers {
		Expect(seen[q.Name]).To(BeTrue(), "quantizer %s is not in the reference", q.Name)
	}
	Expect(res.PerExpertInputAmax).To(HaveLen(len(ref.AmaxPerExpertInput)))
	for name, want := range ref.AmaxPerExpertInput {
		got, ok := res.PerExpertInputAmax[name]
		Expect(ok).To(BeTrue(), "no per-expert input amax %s", name)
		Expect(relErr(float64(got), want)).To(BeNumerically("<=", tol), "%s: %g, reference %g", name, got, want)
	}
	var gotEmpty, wantEmpty []string
	for _, e := range res.ExpertsWithoutTokens {
		gotEmpty = append(gotEmpty, e.Name)
	}
	for mod, experts := range ref.ExpertsWithoutTokens {
		for _, e := range experts {
			wantEmpty = append(wantEmpty, fmt.Sprintf("%s.%d", mod, e))
		}
	}
	slices.Sort(wantEmpty)
	Expect(fmt.Sprint(gotEmpty)).To(Equal(fmt.Sprint(wantEmpty)))
}

// checkCounts compares the per-expert tokens and hook calls with the eager
// section of counts.json and the quantizer call rules of INTERFACES.md.
func checkCounts(res *calib.Result, counts *refdata.Counts) {
	perExpert := map[string]calib.ExpertResult{}
	for _, e := range res.Experts {
		perExpert[e.Name] = e
	}
	Expect(counts.Eager.PerLayer).To(HaveLen(len(res.Model.MoEBlocks())))
	for mod, l := range counts.Eager.PerLayer {
		var sumGU, sumDown int64
		for e := 0; e < l.NumExperts; e++ {
			got, ok := perExpert[fmt.Sprintf("%s.%d", mod, e)]
			Expect(ok).To(BeTrue(), "no accounting for %s expert %d", mod, e)
			Expect([]int64{got.Tokens, got.GateUpCalls, got.DownCalls}).To(Equal(
				[]int64{int64(l.TokensRouted[e]), int64(l.GateUpLinearCalls[e]), int64(l.DownLinearCalls[e])}), "%s expert %d", mod, e)
			sumGU += got.GateUpCalls
			sumDown += got.DownCalls
		}
		for proj, sum := range map[string]int64{"gate_up_proj": sumGU, "down_proj": sumDown} {
			q, _ := res.Quantizer(mod + "." + proj + "_input_quantizer")
			Expect(q.Calls).To(Equal(sum), q.Name)
		}
	}
	for _, q := range res.Quantizers {
		if q.Proj == "" {
			Expect(q.Calls).To(Equal(int64(res.Batches)), q.Name)
		}
	}
}
