package reports

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
)

// JUnit XML, in the dialect that Jenkins, GitLab, GitHub test reporters
// and Ginkgo's own reports share.

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Time     string       `xml:"time,attr,omitempty"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Timestamp  string          `xml:"timestamp,attr,omitempty"`
	Properties []junitProperty `xml:"properties>property,omitempty"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
	SystemOut *junitText    `xml:"system-out,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Body    string `xml:",cdata"`
}

// junitText is element text kept readable as CDATA (line breaks stay).
type junitText struct {
	Text string `xml:",cdata"`
}

// WriteJUnit writes the report as JUnit XML: one test suite per target and
// one test case per evaluated rule and target. The cases are the report's
// Checks when the producer recorded them (so passing checks show as
// passing tests), plus one per (rule, target) that has findings without a
// check; without Checks they are derived from the findings alone. Only
// error findings make a case fail (<failure>); warnings and infos go to
// the case's <system-out>, so the JUnit verdict matches the exit code. A
// report with neither checks nor findings gives one passing case.
func WriteJUnit(w io.Writer, r *Report) error {
	if r == nil {
		return fmt.Errorf("write junit: nil report")
	}
	kind := string(r.Kind)
	if kind == "" {
		kind = "report"
	}
	doc := junitSuites{Name: "ptqgate " + kind}
	if r.Run != nil && r.Run.DurationSeconds > 0 {
		doc.Time = fmt.Sprintf("%.3f", r.Run.DurationSeconds)
	}
	props := junitProperties(r)
	suiteIdx := map[string]int{}
	results := checkResults(r)
	if len(results) == 0 {
		results = []caseResult{{Rule: "no findings", Target: TargetAny}}
	}
	for _, c := range results {
		i, ok := suiteIdx[c.Target]
		if !ok {
			i = len(doc.Suites)
			suiteIdx[c.Target] = i
			s := junitSuite{Name: "ptqgate " + kind + " " + c.Target, Properties: append([]junitProperty{{Name: "target", Value: c.Target}}, props...)}
			if r.Run != nil {
				s.Timestamp = r.Run.StartedAt
			}
			doc.Suites = append(doc.Suites, s)
		}
		s := &doc.Suites[i]
		tc := junitCase{Name: c.Rule + " [" + c.Target + "]", Classname: "ptqgate." + kind}
		if c.Description != "" {
			tc.Name += ": " + c.Description
		}
		var errs, others []Finding
		for _, f := range c.Findings {
			if f.Severity == SeverityError {
				errs = append(errs, f)
			} else {
				others = append(others, f)
			}
		}
		if len(errs) > 0 {
			msg := errs[0].Message
			if len(errs) > 1 {
				msg = fmt.Sprintf("%s (and %d more)", msg, len(errs)-1)
			}
			tc.Failure = &junitFailure{Message: msg, Type: string(SeverityError), Body: junitFindings(errs)}
			s.Failures++
			doc.Failures++
		}
		if out := junitFindings(others); out != "" {
			tc.SystemOut = &junitText{Text: out}
		}
		s.Cases = append(s.Cases, tc)
		s.Tests++
		doc.Tests++
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return fmt.Errorf("write junit: %w", err)
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("write junit: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("write junit: %w", err)
	}
	if _, err := io.WriteString(w, "\n"); err != nil {
		return fmt.Errorf("write junit: %w", err)
	}
	return nil
}

func junitProperties(r *Report) []junitProperty {
	props := []junitProperty{{Name: "ptqgate.kind", Value: string(r.Kind)}, {Name: "ptqgate.version", Value: r.Tool.Version}}
	if m := r.Model; m != nil {
		props = append(props, junitProperty{Name: "model.path", Value: m.Path}, junitProperty{Name: "model.architecture", Value: m.Architecture})
	}
	if rc := r.Recipe; rc != nil {
		props = append(props, junitProperty{Name: "recipe", Value: rc.Name})
	}
	return props
}

// junitFindings writes findings as readable text for a failure body or
// system-out.
func junitFindings(fs []Finding) string {
	if len(fs) == 0 {
		return ""
	}
	var b strings.Builder
	for i, f := range fs {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "%s %s [%s]: %s\n", f.Severity, f.Rule, f.Target, f.Message)
		for _, kv := range [][2]string{{"tensor", f.Tensor}, {"module", f.Module}, {"engine behavior", f.EngineBehavior}, {"source", f.Source}} {
			if kv[1] != "" {
				fmt.Fprintf(&b, "  %s: %s\n", kv[0], kv[1])
			}
		}
	}
	return xmlSafe(b.String())
}

// xmlSafe replaces the characters XML 1.0 cannot hold (control characters
// other than tab and line breaks, invalid UTF-8) by U+FFFD; CDATA sections
// are written without escaping, so they must not contain them.
func xmlSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
			return r
		case r < 0x20, r == 0xFFFE, r == 0xFFFF, r >= 0xD800 && r <= 0xDFFF:
			return '\uFFFD'
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
}
