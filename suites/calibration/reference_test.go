package calibration_test

import (
	"maps"
	"slices"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/ptqgate/ptqgate/internal/refdata"
	"github.com/ptqgate/ptqgate/ptqcore/calib"
	"github.com/ptqgate/ptqgate/ptqcore/model"
	"github.com/ptqgate/ptqgate/reports"
	"github.com/ptqgate/ptqgate/suites/internal/framework"
)

// amaxTolerance is the relative amax tolerance each reference case's
// README suggests for a float32 implementation.
var amaxTolerance = map[string]float64{
	framework.Qwen3MoETiny:      1e-5,
	framework.Qwen3MoEDenseTiny: 2e-5,
	framework.Qwen35MoETiny:     2e-5,
}

var _ = Describe("Calibration on the Hugging Face reference cases", func() {
	DescribeTableSubtree("reference case",
		func(name string) {
			var (
				dir, calibFile string
				counts         *refdata.Counts
				amax           *refdata.Amax
				grouped, eager *reports.Report
			)

			BeforeEach(func() {
				dir, calibFile = framework.Reference(name)
				var err error
				counts, err = refdata.LoadCounts(name)
				Expect(err).NotTo(HaveOccurred())
				amax, err = refdata.LoadAmax(name)
				Expect(err).NotTo(HaveOccurred())
				grouped = calibrated(dir, everyQuantizer, calibFile, calib.Options{Experts: model.ExpertsGrouped}).Report
				eager = calibrated(dir, everyQuantizer, calibFile, calib.Options{Experts: model.ExpertsEager}).Report
			})

			It("counts the (token, expert) pairs the router sent to each expert", func() {
				experts := expertsOf(grouped)
				for module, l := range counts.Eager.PerLayer {
					layer := layerOf(module)
					for e, want := range l.TokensRouted {
						Expect(experts).To(HaveKey(expertKey{layer, e}), "%s expert %d", module, e)
						Expect(experts[expertKey{layer, e}].Tokens).To(BeEquivalentTo(want), "%s expert %d tokens", module, e)
					}
				}
				Expect(grouped.Experts).To(HaveLen(len(counts.Eager.PerLayer) * grouped.Model.Experts))
			})

			It("sends each token to top_k experts", func() {
				tokens := int64(counts.Calibration.Batches * counts.Calibration.TokensPerBatch)
				perLayer := map[int]int64{}
				for _, e := range grouped.Experts {
					perLayer[e.Layer] += e.Tokens
				}
				for layer, n := range perLayer {
					Expect(n).To(Equal(tokens*int64(grouped.Model.TopK)), "layer %d", layer)
				}
			})

			It("counts one hook call per batch in which an expert received tokens, for both projections", func() {
				experts := expertsOf(grouped)
				for module, l := range counts.Eager.PerLayer {
					layer := layerOf(module)
					want := batchesWithTokens(l)
					for e := range l.NumExperts {
						got := experts[expertKey{layer, e}]
						Expect(got.GateUpCalls).To(Equal(want[e]), "%s expert %d gate_up calls", module, e)
						Expect(got.DownCalls).To(Equal(want[e]), "%s expert %d down calls", module, e)
						By("matching the eager per-expert F.linear hook of transformers")
						Expect(got.GateUpCalls).To(BeEquivalentTo(l.GateUpLinearCalls[e]))
						Expect(got.DownCalls).To(BeEquivalentTo(l.DownLinearCalls[e]))
					}
				}
			})

			It("keeps the accounting in grouped execution, where the toolkit's hook saw nothing", func() {
				Expect(counts.GroupedMM.TotalPerExpertFLinearCalls).To(BeZero(), "the reference records the toolkit's bug")
				Expect(counts.Eager.TotalPerExpertFLinearCalls).To(BeNumerically(">", 0))
				Expect(grouped.Experts).To(Equal(eager.Experts))
				var calls int64
				for _, e := range grouped.Experts {
					calls += e.GateUpCalls + e.DownCalls
				}
				Expect(calls).To(BeEquivalentTo(counts.Eager.TotalPerExpertFLinearCalls))
			})

			It("gives identical amax and calls in grouped and eager execution", func() {
				Expect(grouped.Quantizers).To(Equal(eager.Quantizers))
				Expect(grouped.PerExpertInputAmax).To(Equal(eager.PerExpertInputAmax))
			})

			It("calibrates every enabled quantizer to a finite, positive amax", func() {
				Expect(grouped.Uncalibrated).To(BeEmpty())
				Expect(grouped.Summary.Errors).To(BeZero(), framework.DescribeFindings(grouped, 20))
				for _, q := range grouped.Quantizers {
					Expect(q.Enabled).To(BeTrue(), "the recipe enables %s", q.Name)
					Expect(q.Amax).NotTo(BeNil(), "%s has no amax", q.Name)
					Expect(q.Amax.Valid()).To(BeTrue(), "%s amax %v", q.Name, q.Amax.Values)
				}
			})

			It("matches transformers' max calibration for every quantizer", func() {
				tol := amaxTolerance[name]
				got := quantizersOf(grouped)
				for key, want := range amax.Amax {
					if isRouter(key) {
						Expect(got).NotTo(HaveKey(key), "routers have no quantizers")
						continue
					}
					Expect(got).To(HaveKey(key))
					Expect(got[key].Amax.Values).To(HaveLen(1), "%s is per-tensor", key)
					Expect(float64(got[key].Amax.Values[0])).To(framework.BeWithinRel(want, tol), key)
				}
				names := slices.Collect(maps.Keys(got))
				for _, n := range names {
					Expect(amax.Amax).To(HaveKey(n), "a quantizer transformers' reference does not know")
				}
			})

			It("keeps each expert's own input amax beside the shared one", func() {
				tol := amaxTolerance[name]
				Expect(grouped.PerExpertInputAmax).To(HaveLen(len(amax.AmaxPerExpertInput)))
				for key, want := range amax.AmaxPerExpertInput {
					Expect(grouped.PerExpertInputAmax).To(HaveKey(key))
					Expect(float64(grouped.PerExpertInputAmax[key])).To(framework.BeWithinRel(want, tol), key)
				}
			})

			It("names the experts that received no tokens, with zero calls and a weight amax from the weights", func() {
				var want []reports.ExpertRef
				for module, es := range amax.ExpertsWithoutTokens {
					for _, e := range es {
						want = append(want, reports.ExpertRef{Layer: layerOf(module), Expert: e, Name: module + "." + itoa(e)})
					}
				}
				Expect(grouped.ExpertsWithoutTokens).To(ConsistOf(want))
				experts, qs := expertsOf(grouped), quantizersOf(grouped)
				for _, ref := range want {
					e := experts[expertKey{ref.Layer, ref.Expert}]
					Expect([]int64{e.Tokens, e.GateUpCalls, e.DownCalls}).To(Equal([]int64{0, 0, 0}), ref.Name)
					module := ref.Name[:len(ref.Name)-len(itoa(ref.Expert))-1]
					for _, proj := range []string{"gate_up_proj", "down_proj"} {
						q := qs[module+"."+proj+"_weight_quantizers."+itoa(ref.Expert)]
						Expect(q.Calls).To(BeZero())
						Expect(q.Amax.Valid()).To(BeTrue(), "%s has a weight amax although the expert saw no token", q.Name)
					}
				}
				if len(want) > 0 {
					Expect(grouped).To(framework.HaveFinding(calib.RuleExpertWithoutTokens, reports.TargetAny, reports.SeverityWarning))
				} else {
					Expect(grouped).NotTo(framework.HaveFinding(calib.RuleExpertWithoutTokens, "", ""))
				}
			})

			It("counts quantizer calls as INTERFACES.md defines them", func() {
				batches := int64(counts.Calibration.Batches)
				experts := expertsOf(grouped)
				for _, q := range grouped.Quantizers {
					switch role := reports.NamePattern(q.Name); {
					case isExpertWeight(role):
						layer, e := reports.LayerOf(q.Name), lastIndex(q.Name)
						ex := experts[expertKey{layer, e}]
						Expect(q.Calls).To(Equal(projectionCalls(ex, role)), "%s: the expert's own calls", q.Name)
					case isSharedExpertInput(role):
						var sum int64
						for _, ex := range grouped.Experts {
							if ex.Layer == reports.LayerOf(q.Name) {
								sum += projectionCalls(ex, role)
							}
						}
						Expect(q.Calls).To(Equal(sum), "%s: the sum of the per-expert calls", q.Name)
					default:
						Expect(q.Calls).To(Equal(batches), "%s: once per batch", q.Name)
					}
				}
			})
		},
		Entry(nil, framework.Qwen3MoETiny),
		Entry(nil, framework.Qwen3MoEDenseTiny),
		Entry(nil, Label("qwen3_5"), framework.Qwen35MoETiny),
	)
})
