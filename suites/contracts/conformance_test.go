package contracts_test

import (
	"fmt"
	"slices"
	"strconv"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/ptqgate/ptqgate/fixtures/catalogue"
	"github.com/ptqgate/ptqgate/reports"
	"github.com/ptqgate/ptqgate/suites/internal/framework"
	"github.com/ptqgate/ptqgate/verifier/contracts"
)

// Verifier is the implementation under test: it verifies a checkpoint for
// one explicitly named target with tensor parallelism tp (0 = none).
type Verifier interface {
	Name() string
	Verify(dir string, target contracts.Target, tp int) (*reports.Report, error)
}

// library is the verifier package, in process.
type library struct{}

func (library) Name() string { return "verifier library" }

func (library) Verify(dir string, t contracts.Target, tp int) (*reports.Report, error) {
	return framework.Verify(dir, []string{t.Token()}, tp)
}

// binary is the built `ptqgate verify`. Its exit code must agree with the
// report it prints: 0 exactly when the report has no error finding.
type binary struct{ cli *framework.CLI }

func (binary) Name() string { return "ptqgate verify" }

func (b binary) Verify(dir string, t contracts.Target, tp int) (*reports.Report, error) {
	args := []string{"verify", dir, "--json", "--target", t.Token()}
	if tp > 0 {
		args = append(args, "--tp", strconv.Itoa(tp))
	}
	res, err := b.cli.Run(args...)
	if err != nil {
		return nil, err
	}
	rep, err := res.Report()
	if err != nil {
		return nil, err
	}
	if want := map[bool]int{true: 0, false: 1}[rep.Clean()]; res.ExitCode != want {
		return nil, fmt.Errorf("exit %d disagrees with the report (clean: %v), want exit %d\n%s", res.ExitCode, rep.Clean(), want, res)
	}
	return rep, nil
}

// canLoad says whether a target's loader accepts a quant_algo at all:
// SGLang's ModelOpt FP4 config accepts only NVFP4 and NVFP4_AWQ
// (specs/sglang.md §1.2: W4A16_NVFP4 raises "ModelOpt currently only
// supports: FP8, NVFP4, NVFP4_AWQ quantizations in sglang"); vLLM accepts
// FP8, NVFP4 and W4A16_NVFP4 (specs/vllm.md §1.2, QUANT_ALGOS).
func canLoad(t contracts.Target, f catalogue.Format) bool {
	return !(t.Engine == contracts.SGLang && f == catalogue.W4A16NVFP4)
}

// limitation is a clean checkpoint that a target version cannot load
// correctly because of a documented engine defect: the verifier must
// report it with exactly these rules.
type limitation struct {
	Model  catalogue.Model
	Format catalogue.Format
	Scope  catalogue.Scope
	From   string // first affected target token
	To     string // last affected target token
	Rules  []string
	Why    string
}

var limitations = []limitation{
	{catalogue.Qwen35MoE, catalogue.FP8, catalogue.ScopeAll, "sglang@0.5.10", "sglang@0.5.10", []string{"layout.gdn-packed-scale"},
		"R5: the packed GDN loader cannot broadcast one 0-d in_proj_qkv scale to its 3 slots (specs/sglang.md §4.1)"},
	{catalogue.Qwen35MoE, catalogue.NVFP4, catalogue.ScopeAll, "sglang@0.5.9", "sglang@0.5.16", []string{"census.bf16-only"},
		"before v0.5.17 SGLang builds Qwen3.5 attention and linear attention unquantized for NVFP4 (specs/sglang.md §4.1, §0)"},
}

// limitedRules returns the rules a clean case must report on target t.
func limitedRules(c cleanCase, t contracts.Target) []string {
	known := contracts.KnownTokens()
	i := slices.Index(known, t.Token())
	for _, l := range limitations {
		if l.Model == c.Model && l.Format == c.Format && l.Scope == c.Scope &&
			i >= slices.Index(known, l.From) && i <= slices.Index(known, l.To) {
			return l.Rules
		}
	}
	return nil
}

// concerns reports whether catalogue entry e says something about target t:
// its rule fires on t (or on any target), or it must spare t.
func concerns(e catalogue.Entry, t contracts.Target) bool {
	return slices.Contains(e.Targets, reports.TargetAny) || slices.Contains(e.Targets, t.Token()) || slices.Contains(e.NotTargets, t.Token())
}

// LoaderContract registers the conformance specs of one target for one
// implementation. clean are the clean checkpoints to load.
func LoaderContract(t contracts.Target, impl Verifier, clean []cleanCase) {
	Describe(fmt.Sprintf("%s, through the %s", t.Token(), impl.Name()), Label(string(t.Engine)), func() {
		verify := func(dir string, tp int) *reports.Report {
			GinkgoHelper()
			rep, err := impl.Verify(dir, t, tp)
			Expect(err).NotTo(HaveOccurred())
			return rep
		}

		for _, c := range clean {
			switch rules := limitedRules(c, t); {
			case !canLoad(t, c.Format):
				It(fmt.Sprintf("refuses the %s format of %s with exactly one config.quant-algo error", c.Format, c.Name), func() {
					rep := verify(cleanDir(c), 0)
					Expect(framework.Rules(rep, reports.SeverityError)).To(Equal([]string{"config.quant-algo"}), framework.DescribeFindings(rep, 20))
					Expect(rep).To(framework.HaveFinding("config.quant-algo", t.Token(), reports.SeverityError))
				})
			case rules != nil:
				It(fmt.Sprintf("reports its documented limitation on %s with %v", c.Name, rules), func() {
					rep := verify(cleanDir(c), 0)
					Expect(framework.Rules(rep, reports.SeverityError)).To(ConsistOf(rules), framework.DescribeFindings(rep, 20))
					for _, r := range rules {
						Expect(rep).To(framework.HaveFinding(r, t.Token(), reports.SeverityError))
					}
				})
			default:
				It(fmt.Sprintf("loads %s clean", c.Name), func() {
					Expect(verify(cleanDir(c), 0)).To(framework.BeClean())
				})
			}
		}

		for _, e := range catalogue.Entries() {
			if !e.Crafted || !concerns(e, t) {
				continue
			}
			fires := slices.Contains(e.Targets, t.Token()) || slices.Contains(e.Targets, reports.TargetAny)
			verb := "catches"
			if !fires {
				verb = "does not flag"
			}
			It(fmt.Sprintf("%s the crafted %s checkpoint (%s) with %s", verb, e.ID, e.Reference, e.Rule), func() {
				dir, err := checkpoints.crafted(e.ID)
				Expect(err).NotTo(HaveOccurred())
				rep := verify(dir, e.TP)
				if !fires {
					Expect(rep).NotTo(framework.HaveFinding(e.Rule, t.Token(), ""), "%s loads %s right", t.Token(), e.ID)
					return
				}
				target := t.Token()
				if slices.Contains(e.Targets, reports.TargetAny) {
					target = reports.TargetAny
				}
				Expect(rep).To(framework.HaveFinding(e.Rule, target, e.Severity))
			})
		}
	})
}

// cleanDir builds (once) and returns a clean case's folder.
func cleanDir(c cleanCase) string {
	GinkgoHelper()
	dir, err := checkpoints.get(c.Name, c.Build)
	Expect(err).NotTo(HaveOccurred(), "building %s", c.Name)
	return dir
}

var _ = Describe("Loader contracts", func() {
	clean := append(builtClean(), exportedClean()...)
	for _, t := range contracts.AllTargets() {
		LoaderContract(t, library{}, clean)
	}
	// The binary runs the same conformance on every target, over one clean
	// checkpoint per model and format (the library covers the full matrix).
	var few []cleanCase
	for _, c := range clean {
		if !slices.ContainsFunc(few, func(x cleanCase) bool { return x.Model == c.Model && x.Format == c.Format }) {
			few = append(few, c)
		}
	}
	for _, t := range contracts.AllTargets() {
		LoaderContract(t, binary{cli: ptqgate}, few)
	}
})
