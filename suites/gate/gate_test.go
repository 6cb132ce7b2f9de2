package gate_test

import (
	"fmt"
	"slices"
	"strings"

	. "github.com/onsi/ginkgo/v2"

	"github.com/ptqgate/ptqgate/reports"
	"github.com/ptqgate/ptqgate/verifier/contracts"
)

// familyTitles say in a few words what each rule family of the verifier
// checks; a family added to the verifier later gets a generic title.
var familyTitles = map[string]string{
	"census":    "tensor census: every quantized module and expert has its tensors, dtypes and shapes",
	"config":    "quantization config the engine reads",
	"exclude":   "exclusion lists",
	"kv":        "KV-cache scales reach the attention layers",
	"layout":    "expert and fused-layer layouts the loader maps",
	"names":     "every key maps to a loader parameter",
	"reference": "dequantized weights reproduce the reference checkpoint",
	"report":    "ptqgate_report.json cross-check",
	"shape":     "scale shapes the loader accepts",
	"tp":        "tensor-parallel divisibility",
	"values":    "scale values are finite, positive and consistent",
}

// family is the rule family: the rule ID up to its first dot.
func family(rule string) string {
	f, _, _ := strings.Cut(rule, ".")
	return f
}

// ruleFamily is a family of verifier rules: whether it has
// target-independent rules (target "any") and rules evaluated per target.
type ruleFamily struct {
	name           string
	any, perTarget bool
}

// families lists the verifier's rule families in rule-table order.
func families() []ruleFamily {
	var out []ruleFamily
	for _, r := range contracts.Rules() {
		f := family(r.ID)
		i := slices.IndexFunc(out, func(x ruleFamily) bool { return x.name == f })
		if i < 0 {
			out = append(out, ruleFamily{name: f})
			i = len(out) - 1
		}
		if r.Scope == contracts.ScopeAny {
			out[i].any = true
		} else {
			out[i].perTarget = true
		}
	}
	return out
}

func title(f string) string {
	if t, ok := familyTitles[f]; ok {
		return t
	}
	return f + " rules"
}

// gateFamily is the body of one (family, target) spec: every evaluated
// check of the family for the target passed. Warnings and infos are logged
// (they land in the JUnit case's output); errors fail the spec with the
// tensor, the message and what the engine would do.
func gateFamily(f, target string) {
	rep := gate.Report
	var checks int
	for _, c := range rep.Checks {
		if family(c.Rule) == f && c.Target == target {
			checks++
		}
	}
	var errs, other []reports.Finding
	for _, x := range rep.Findings {
		if family(x.Rule) != f || x.Target != target {
			continue
		}
		if x.Severity == reports.SeverityError {
			errs = append(errs, x)
		} else {
			other = append(other, x)
		}
	}
	if checks == 0 && len(errs)+len(other) == 0 {
		if f == "reference" && gate.Reference == "" {
			Skip("no reference checkpoint: set " + EnvReference + " to compare the dequantized weights with an unquantized checkpoint")
		}
		Skip(fmt.Sprintf("no %s check applies to this checkpoint for target %s", f, target))
	}
	for _, x := range other {
		fmt.Fprintf(GinkgoWriter, "%s %s: %s\n", x.Severity, x.Rule, describe(x))
	}
	if len(errs) > 0 {
		Fail(failures(errs))
	}
}

func describe(f reports.Finding) string {
	subject := f.Tensor
	if subject == "" {
		subject = f.Module
	}
	s := f.Message
	if subject != "" && !strings.Contains(s, subject) {
		s = subject + ": " + s
	}
	if f.EngineBehavior != "" {
		s += " — engine: " + f.EngineBehavior
	}
	if f.Source != "" {
		s += " [" + f.Source + "]"
	}
	return s
}

func failures(errs []reports.Finding) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d error finding(s):\n", len(errs))
	for _, f := range errs {
		fmt.Fprintf(&b, "  %s: %s\n", f.Rule, describe(f))
	}
	return b.String()
}

// The specs sit at the top level so that JUnit names them by family and
// target alone: "kv: KV-cache scales reach the attention layers [vllm@main]".
var _ = BeforeEach(func() {
	if gate.Checkpoint == "" {
		Skip(EnvCheckpoint + " is not set: the gate suite checks a quantized checkpoint you name, e.g. " +
			EnvCheckpoint + "=/path/to/ckpt go test ./suites/gate (or ci/ptqgate-gate.sh /path/to/ckpt)")
	}
})

var _ = func() bool {
	for _, f := range families() {
		if f.any {
			It(fmt.Sprintf("%s: %s [%s]", f.name, title(f.name), reports.TargetAny), func() {
				gateFamily(f.name, reports.TargetAny)
			})
		}
		if f.perTarget {
			for _, t := range gate.TargetTokens() {
				It(fmt.Sprintf("%s: %s [%s]", f.name, title(f.name), t), func() {
					gateFamily(f.name, t)
				})
			}
		}
	}
	return true
}()
