package reports

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"
)

// parsedJUnit is the part of a JUnit file that CI systems read.
type parsedJUnit struct {
	XMLName  xml.Name `xml:"testsuites"`
	Tests    int      `xml:"tests,attr"`
	Failures int      `xml:"failures,attr"`
	Errors   int      `xml:"errors,attr"`
	Suites   []struct {
		Name     string `xml:"name,attr"`
		Tests    int    `xml:"tests,attr"`
		Failures int    `xml:"failures,attr"`
		Props    []struct {
			Name  string `xml:"name,attr"`
			Value string `xml:"value,attr"`
		} `xml:"properties>property"`
		Cases []struct {
			Name      string `xml:"name,attr"`
			Classname string `xml:"classname,attr"`
			Failure   *struct {
				Message string `xml:"message,attr"`
				Type    string `xml:"type,attr"`
				Body    string `xml:",chardata"`
			} `xml:"failure"`
			SystemOut string `xml:"system-out"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

func parseJUnit(t *testing.T, r *Report) parsedJUnit {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteJUnit(&buf, r); err != nil {
		t.Fatal(err)
	}
	var p parsedJUnit
	dec := xml.NewDecoder(&buf)
	dec.Strict = true
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("JUnit does not parse: %v\n%s", err, buf.String())
	}
	return p
}

func TestJUnitVerdictMatchesFindings(t *testing.T) {
	for name, r := range sampleReports() {
		t.Run(name, func(t *testing.T) {
			p := parseJUnit(t, r)
			// A case fails iff its (rule, target) has an error finding.
			failing := map[string]bool{}
			for _, f := range r.Findings {
				if f.Severity == SeverityError {
					failing[f.Rule+" ["+f.Target+"]"] = true
				}
			}
			tests, failures := 0, 0
			for _, s := range p.Suites {
				sf := 0
				for _, c := range s.Cases {
					key, _, _ := strings.Cut(c.Name, ": ")
					if (c.Failure != nil) != failing[key] {
						t.Errorf("case %q failure=%v, error findings=%v", c.Name, c.Failure != nil, failing[key])
					}
					if c.Failure != nil {
						sf++
						if c.Failure.Type != "error" || c.Failure.Message == "" || c.Failure.Body == "" {
							t.Errorf("case %q failure %+v", c.Name, c.Failure)
						}
						if strings.Contains(c.Failure.Body, "warning ") {
							t.Errorf("warnings must not be in a failure: %q", c.Failure.Body)
						}
					}
				}
				if sf != s.Failures || len(s.Cases) != s.Tests {
					t.Errorf("suite %s counts tests %d failures %d, cases %d failing %d", s.Name, s.Tests, s.Failures, len(s.Cases), sf)
				}
				tests += s.Tests
				failures += sf
			}
			if p.Tests != tests || p.Failures != failures || p.Errors != 0 {
				t.Errorf("testsuites counts %d/%d/%d, cases %d/%d", p.Tests, p.Failures, p.Errors, tests, failures)
			}
			if failures != len(failing) || (failures == 0) != r.Clean() {
				t.Errorf("%d failing cases for %d failing (rule, target) pairs; clean=%v", failures, len(failing), r.Clean())
			}
		})
	}
}

func TestJUnitPassingChecksAndOutput(t *testing.T) {
	p := parseJUnit(t, sampleVerify())
	byName := map[string]string{} // case name → "fail" / "pass" / system-out
	suites := map[string]int{}
	for _, s := range p.Suites {
		suites[s.Name] = len(s.Cases)
		for _, c := range s.Cases {
			switch {
			case c.Failure != nil:
				byName[c.Name] = "fail"
			case c.SystemOut != "":
				byName[c.Name] = c.SystemOut
			default:
				byName[c.Name] = "pass"
			}
		}
	}
	if want := map[string]int{"ptqgate verify any": 1, "ptqgate verify sglang@main": 4, "ptqgate verify vllm@main": 4}; len(suites) != 3 ||
		suites["ptqgate verify any"] != want["ptqgate verify any"] || suites["ptqgate verify vllm@main"] != 4 || suites["ptqgate verify sglang@main"] != 4 {
		t.Errorf("suites %v, want %v", suites, want)
	}
	if got := byName["weight-scale-shape [vllm@main]: weight_scale shapes match the format"]; got != "pass" {
		t.Errorf("a check without findings must be a passing case, got %q", got)
	}
	if got := byName["expert-input-scale [vllm@main]: every routed expert has an input_scale the engine reads"]; got != "fail" {
		t.Errorf("error case = %q", got)
	}
	out := byName["kv-scale [vllm@main]: KV scales are present, finite and in range"]
	if !strings.Contains(out, "warning kv-scale [vllm@main]: k_scale is exactly 1.0") || !strings.Contains(out, "engine behavior: uses the scale as written") {
		t.Errorf("warning must pass with its text in system-out, got %q", out)
	}
}

func TestJUnitEmptyAndHostileText(t *testing.T) {
	p := parseJUnit(t, New(KindInspect, "1"))
	if p.Tests != 1 || p.Failures != 0 || p.Suites[0].Cases[0].Name != "no findings [any]" {
		t.Errorf("empty report: %+v", p)
	}
	r := New(KindVerify, "1")
	r.AddFinding(Finding{Rule: "r<&>", Severity: SeverityError, Target: "vllm@main", Message: "bad \x00\x1b byte ]]> end \"q\"", Tensor: "t\xff"})
	p = parseJUnit(t, r)
	c := p.Suites[0].Cases[0]
	if c.Name != "r<&> [vllm@main]" || c.Failure == nil || !strings.Contains(c.Failure.Body, "]]> end") || !strings.Contains(c.Failure.Body, "\uFFFD") {
		t.Errorf("hostile text: %+v", c)
	}
}
