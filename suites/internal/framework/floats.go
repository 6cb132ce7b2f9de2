package framework

import (
	"fmt"
	"math"

	"github.com/onsi/gomega/types"
)

// minNormal is the smallest normal float64.
const minNormal = 0x1p-1022

// EqualWithinAbs reports whether |a-b| ≤ tol.
func EqualWithinAbs(a, b, tol float64) bool {
	return a == b || math.Abs(a-b) <= tol
}

// EqualWithinRel reports whether a and b differ by at most tol relative to
// the larger magnitude, with gonum's semantics (floats/scalar): NaN equals
// nothing, equal infinities are equal, and values near zero compare
// absolutely against tol·minNormal so subnormals do not blow up the ratio.
func EqualWithinRel(a, b, tol float64) bool {
	if a == b {
		return true
	}
	delta := math.Abs(a - b)
	if delta <= minNormal {
		return delta <= tol*minNormal
	}
	return delta/math.Max(math.Abs(a), math.Abs(b)) <= tol
}

// BeWithinRel succeeds when a float32 or float64 actual is within relative
// tolerance tol of want (EqualWithinRel).
func BeWithinRel(want, tol float64) types.GomegaMatcher {
	return &relMatcher{want: want, tol: tol}
}

type relMatcher struct{ want, tol float64 }

func (m *relMatcher) Match(actual any) (bool, error) {
	v, err := toFloat(actual)
	if err != nil {
		return false, err
	}
	return EqualWithinRel(v, m.want, m.tol), nil
}

func (m *relMatcher) FailureMessage(actual any) string {
	v, _ := toFloat(actual)
	return fmt.Sprintf("expected %.9g to be within relative %g of %.9g (relative difference %.3g)", v, m.tol, m.want, relDiff(v, m.want))
}

func (m *relMatcher) NegatedFailureMessage(actual any) string {
	v, _ := toFloat(actual)
	return fmt.Sprintf("expected %.9g not to be within relative %g of %.9g", v, m.tol, m.want)
}

func relDiff(a, b float64) float64 {
	return math.Abs(a-b) / math.Max(math.Abs(a), math.Abs(b))
}

func toFloat(actual any) (float64, error) {
	switch v := actual.(type) {
	case float32:
		return float64(v), nil
	case float64:
		return v, nil
	}
	return 0, fmt.Errorf("expected a float32 or float64, got %T", actual)
}
