package framework

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// CatalogueRow is one row of suites/regression/CATALOGUE.md, the
// human-maintained table of the regression catalogue (specs/anchors.md §3).
type CatalogueRow struct {
	ID         string
	Reference  string
	Breaks     string
	Reproduces string
	MustFire   string
	Status     string
	Line       int
}

// HasSpec reports whether the row's status says a regression spec
// replays the entry ("spec", possibly followed by where it comes from).
func (r CatalogueRow) HasSpec() bool {
	return r.Status == "spec" || strings.HasPrefix(r.Status, "spec ") || strings.HasPrefix(r.Status, "spec:")
}

// Reason returns the explanation of a row without a spec: the text after
// "not reproducible:" ("" when there is none).
func (r CatalogueRow) Reason() string {
	const p = "not reproducible:"
	if !strings.HasPrefix(r.Status, p) {
		return ""
	}
	return strings.TrimSpace(strings.TrimPrefix(r.Status, p))
}

// Rules returns the rule IDs the "rule that must fire" column names in
// backquotes (e.g. `census.missing-tensor`), in order.
func (r CatalogueRow) Rules() []string {
	var out []string
	for _, m := range codeSpan.FindAllStringSubmatch(r.MustFire, -1) {
		if ruleID.MatchString(m[1]) {
			out = append(out, m[1])
		}
	}
	return out
}

var (
	codeSpan = regexp.MustCompile("`([^`]+)`")
	ruleID   = regexp.MustCompile(`^[a-z0-9]+\.[a-z0-9-]+$`)
	rowID    = regexp.MustCompile(`^R[0-9]+$`)
)

// ReadCatalogue parses the catalogue table in path: every line that starts
// with "| R<n> |" is a row of six cells (ID, reference, what breaks, how
// ptqgate reproduces it, rule that must fire, status).
func ReadCatalogue(path string) ([]CatalogueRow, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rows []CatalogueRow
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "| R") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 6 {
			return nil, fmt.Errorf("%s:%d: %d cells, want 6 (ID, reference, what breaks, how reproduced, rule, status)", path, n, len(cells))
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if !rowID.MatchString(cells[0]) {
			return nil, fmt.Errorf("%s:%d: %q is not a catalogue ID", path, n, cells[0])
		}
		rows = append(rows, CatalogueRow{ID: cells[0], Reference: cells[1], Breaks: cells[2], Reproduces: cells[3],
			MustFire: cells[4], Status: cells[5], Line: n})
	}
	return rows, sc.Err()
}

// TrackRecordRow is one row of the README's etcd-style track record table
// (ID, reference, symptom, reproduced by, caught by, replay).
type TrackRecordRow struct {
	ID, Reference, Symptom, Reproduced, CaughtBy, Replay string
	Line                                                 int
}

// ReadTrackRecord parses the rows of the "## Track record" section of the
// README at path.
func ReadTrackRecord(path string) ([]TrackRecordRow, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var (
		rows []TrackRecordRow
		in   bool
	)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "## ") {
			in = line == "## Track record"
			continue
		}
		if !in || !strings.HasPrefix(line, "| R") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 6 {
			return nil, fmt.Errorf("%s:%d: %d cells, want 6 (ID, reference, symptom, reproduced by, caught by, replay)", path, n, len(cells))
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows = append(rows, TrackRecordRow{ID: cells[0], Reference: cells[1], Symptom: cells[2], Reproduced: cells[3],
			CaughtBy: cells[4], Replay: cells[5], Line: n})
	}
	return rows, sc.Err()
}
