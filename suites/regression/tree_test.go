package regression_test

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/types"
	. "github.com/onsi/gomega"

	"github.com/ptqgate/ptqgate/fixtures/catalogue"
	"github.com/ptqgate/ptqgate/suites/internal/framework"
	"github.com/ptqgate/ptqgate/verifier/contracts"
)

// catalogueFile is the human-maintained table of the catalogue; readmeFile
// holds the user-facing track record.
const (
	catalogueFile = "CATALOGUE.md"
	readmeFile    = "../../README.md"
)

var catalogueID = regexp.MustCompile(`^R[0-9]+$`)

// specsByID groups the suite's specs by the catalogue ID among their labels.
func specsByID(r Report) map[string][]string {
	out := map[string][]string{}
	for _, s := range r.SpecReports {
		if s.LeafNodeType != types.NodeTypeIt {
			continue
		}
		for _, l := range s.Labels() {
			if catalogueID.MatchString(l) {
				out[l] = append(out[l], s.FullText())
			}
		}
	}
	return out
}

var _ = Describe("The regression catalogue", Label("catalogue"), func() {
	var rows []framework.CatalogueRow

	BeforeEach(func() {
		var err error
		rows, err = framework.ReadCatalogue(catalogueFile)
		Expect(err).NotTo(HaveOccurred())
	})

	It("lists R1 to R27 in order", func() {
		var ids []string
		for _, r := range rows {
			ids = append(ids, r.ID)
		}
		want := make([]string, 27)
		for i := range want {
			want[i] = fmt.Sprintf("R%d", i+1)
		}
		Expect(ids).To(Equal(want))
	})

	It("has exactly one spec for every entry whose status is spec, and a reason for every other entry", func() {
		Expect(tree.SpecReports).NotTo(BeEmpty(), "the spec tree was not previewed")
		specs := specsByID(tree)
		for _, r := range rows {
			if r.HasSpec() {
				Expect(specs[r.ID]).To(HaveLen(1), "%s:%d: status %q wants exactly one spec labelled %s", catalogueFile, r.Line, r.Status, r.ID)
			} else {
				Expect(r.Reason()).NotTo(BeEmpty(), "%s:%d: %s has neither status spec nor \"not reproducible: <reason>\" (status %q)", catalogueFile, r.Line, r.ID, r.Status)
				Expect(specs[r.ID]).To(BeEmpty(), "%s is not reproducible per %s but has specs", r.ID, catalogueFile)
			}
		}
		for id := range specs {
			Expect(slices.ContainsFunc(rows, func(r framework.CatalogueRow) bool { return r.ID == id })).To(BeTrue(),
				"specs labelled %s, which %s does not list: %v", id, catalogueFile, specs[id])
		}
	})

	It("labels every replay with regression and its ID, and names the ID first in the spec text", func() {
		for _, s := range tree.SpecReports {
			if s.LeafNodeType != types.NodeTypeIt {
				continue
			}
			var ids []string
			for _, l := range s.Labels() {
				if catalogueID.MatchString(l) {
					ids = append(ids, l)
				}
			}
			if len(ids) == 0 {
				continue
			}
			Expect(ids).To(HaveLen(1), "%q carries several catalogue IDs", s.FullText())
			Expect(s.Labels()).To(ContainElement(framework.LabelRegression))
			Expect(s.LeafNodeText).To(HavePrefix(ids[0]+" "), "spec text should start with its ID")
		}
	})

	It("is listed in the README's track record, with a replay command for every entry that has a spec", func() {
		track, err := framework.ReadTrackRecord(readmeFile)
		Expect(err).NotTo(HaveOccurred())
		Expect(track).To(HaveLen(len(rows)), "%s lists %d entries, %s %d", readmeFile, len(track), catalogueFile, len(rows))
		for i, r := range rows {
			t := track[i]
			Expect(t.ID).To(Equal(r.ID), "%s row %d", readmeFile, i+1)
			if r.HasSpec() {
				Expect(t.Replay).To(Equal("`make regression-"+r.ID+"`"), "%s:%d: the replay command of %s", readmeFile, t.Line, r.ID)
				for _, rule := range r.Rules() {
					if !isCoreRule(rule) {
						Expect(t.CaughtBy).To(ContainSubstring(rule), "%s:%d: %s is caught by %s (%s)", readmeFile, t.Line, r.ID, rule, catalogueFile)
					}
				}
			} else {
				Expect(t.Reproduced).To(HavePrefix("not reproducible:"), "%s:%d: %s", readmeFile, t.Line, r.ID)
			}
		}
	})

	It("agrees with the crafted-checkpoint catalogue of fixtures/catalogue", func() {
		entries := catalogue.Entries()
		Expect(entries).To(HaveLen(len(rows)))
		for i, e := range entries {
			r := rows[i]
			Expect(e.ID).To(Equal(r.ID))
			Expect(strings.HasPrefix(e.Status, "spec")).To(Equal(r.HasSpec()), "%s: catalogue.Entries status %q, %s status %q", e.ID, e.Status, catalogueFile, r.Status)
			if e.Crafted {
				Expect(r.Rules()).To(ContainElement(e.Rule), "%s: the crafted checkpoint's rule %s is not in %s's rule column (%q)", e.ID, e.Rule, catalogueFile, r.MustFire)
				Expect(catalogue.Build(e.ID, framework.TempDir()+"/"+e.ID)).To(Succeed())
			}
			for _, rule := range r.Rules() {
				_, ok := contracts.LookupRule(rule)
				Expect(ok || isCoreRule(rule)).To(BeTrue(), "%s: %s names rule %s, which neither the verifier nor the core defines", e.ID, catalogueFile, rule)
			}
		}
	})
})

// isCoreRule reports whether rule is a finding rule of the PTQ core
// (calibration or export) rather than of the verifier.
func isCoreRule(rule string) bool {
	return strings.HasPrefix(rule, "calib.") || strings.HasPrefix(rule, "export.")
}
