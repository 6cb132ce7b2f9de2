package reports

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"flag"
	"io"
	"os"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// sampleHTML writes the realistic report's HTML for a look in a browser:
// go test ./reports -run TestSampleHTML -sample-html=/tmp/report.html
var sampleHTML = flag.String("sample-html", "", "write the HTML of a realistic 4-layer × 64-expert report to `FILE`")

func TestSampleHTML(t *testing.T) {
	if *sampleHTML == "" {
		t.Skip("no -sample-html")
	}
	f, err := os.Create(*sampleHTML)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := RenderHTML(f, realisticReport(4, 64)); err != nil {
		t.Fatal(err)
	}
}

func renderHTMLString(t *testing.T, r *Report) string {
	t.Helper()
	var buf bytes.Buffer
	if err := RenderHTML(&buf, r); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// checkHTML parses a page twice: as XML (every element closed, attributes
// quoted, entities known) and with the HTML5 parser, where it checks that
// the page is self-contained and that every in-page link has a target.
func checkHTML(t *testing.T, page string) {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(page))
	dec.Strict = true
	for {
		_, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			line := dec.InputPos
			l, _ := line()
			t.Fatalf("not well-formed at line %d: %v", l, err)
		}
	}

	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	var hrefs []string
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "script", "iframe", "object", "embed", "link", "img":
				t.Errorf("<%s> in a self-contained page", n.Data)
			}
			for _, a := range n.Attr {
				switch {
				case a.Key == "id":
					if ids[a.Val] {
						t.Errorf("duplicate id %q", a.Val)
					}
					ids[a.Val] = true
				case a.Key == "href":
					hrefs = append(hrefs, a.Val)
				case a.Key == "src", strings.HasPrefix(a.Key, "on"):
					t.Errorf("attribute %s=%q", a.Key, a.Val)
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	for _, h := range hrefs {
		if !strings.HasPrefix(h, "#") || !ids[h[1:]] {
			t.Errorf("link %q does not point into the page", h)
		}
	}
	for _, bad := range []string{"@import", "url(", "@font-face", "http://", "https://"} {
		page := strings.ReplaceAll(page, `xmlns="http://www.w3.org/2000/svg"`, "")
		if strings.Contains(page, bad) {
			t.Errorf("page refers outside itself: %q", bad)
		}
	}
}

func TestHTMLWellFormedAndSelfContained(t *testing.T) {
	reports := sampleReports()
	reports["realistic"] = realisticReport(3, 16)
	reports["empty"] = New(KindVerify, "1")
	for name, r := range reports {
		t.Run(name, func(t *testing.T) { checkHTML(t, renderHTMLString(t, r)) })
	}
}

func TestHTMLDeterministic(t *testing.T) {
	r := realisticReport(3, 16)
	a := renderHTMLString(t, r)
	if b := renderHTMLString(t, realisticReport(3, 16)); a != b {
		t.Fatalf("two renderings differ:\n%s", firstDiff([]byte(a), []byte(b)))
	}
	// The JSON round trip (what `ptqgate report FILE --format html` reads)
	// gives the same page.
	var js bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if c := renderHTMLString(t, &back); a != c {
		t.Fatalf("page differs after a JSON round trip:\n%s", firstDiff([]byte(a), []byte(c)))
	}
}

func TestHTMLEscapesReportText(t *testing.T) {
	r := sampleVerify()
	r.Model.Path = `</title><script>alert(1)</script>`
	r.AddFinding(Finding{Rule: `"><svg onload=x>`, Severity: SeverityError, Target: "vllm@main", Tensor: "a<b>.weight_scale", Message: "<script>alert(2)</script> & more"})
	r.Experts = []Expert{{Layer: 0, Expert: 0, Tokens: 1, GateUpCalls: 1, DownCalls: 1}}
	r.PerExpertInputAmax = map[string]Float{"m.layers.0.<q>.0": 1, "m.layers.0.<q>.1": 3}
	page := renderHTMLString(t, r)
	checkHTML(t, page)
	for _, bad := range []string{"<script", "<svg onload", "a<b>"} {
		if strings.Contains(page, bad) {
			t.Errorf("unescaped %q in the page", bad)
		}
	}
	if !strings.Contains(page, "&lt;script&gt;alert(2)&lt;/script&gt; &amp; more") {
		t.Errorf("message not shown escaped")
	}
}

func TestHTMLCharts(t *testing.T) {
	page := renderHTMLString(t, sampleCalibration())
	for _, want := range []string{
		`aria-label="routed tokens by layer and expert"`, `aria-label="gate_up hook calls by layer and expert"`, `aria-label="down hook calls by layer and expert"`,
		// the silent expert (layer 0, expert 3) and the expert without tokens stand out with their tooltip
		`<rect class="zero" x="164" y="18" width="39" height="25"><title>layer 0, expert 3: 5 tokens; hook calls gate_up 0, down 0</title></rect>`,
		`<title>layer 1, expert 2: 0 tokens; hook calls gate_up 0, down 0</title>`,
		`<li><i class="sw zero"></i>0</li>`,
		// input amax spread: the shared value of layer 1 and the uncalibrated one of layer 0
		`max 6.5 (expert 0), max/min 8.7x, shared amax 6.5`, `shared amax null; the shared input quantizer is uncalibrated`,
		`<path class="bad"`, `class="shr"`,
		// findings matrix
		`<td class="merr" title="uncalibrated [any]: 1 error.">1</td>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	verify := renderHTMLString(t, sampleVerify())
	for _, want := range []string{
		`title="weight-scale-shape [vllm@main] passed. weight_scale shapes match the format">pass</td>`,
		`<td class="na" title="not evaluated">·</td>`,
		`Findings about scales (4)`,
	} {
		if !strings.Contains(verify, want) {
			t.Errorf("verify page lacks %q", want)
		}
	}
	export := renderHTMLString(t, sampleExport())
	if !strings.Contains(export, `<td class="errc num">&#43;Inf</td><td><svg class="bar"`) || !strings.Contains(export, `<rect class="fill" width="86.2" height="10"/>`) {
		t.Errorf("dequantization bars missing or mis-scaled")
	}
}

func TestHTMLLargeModelStaysReasonable(t *testing.T) {
	r := realisticReport(40, 128)
	page := renderHTMLString(t, r)
	if n := len(page); n > 4<<20 {
		t.Errorf("40 x 128 report is %d bytes", n)
	}
	if got := strings.Count(page, "; hook calls gate_up "); got != 40*128 {
		t.Errorf("%d cell tooltips, want one per expert on the tokens map", got)
	}
}

func TestHTMLSurvivesCorruptExpertIndex(t *testing.T) {
	r := New(KindCalibration, "1")
	r.Experts = []Expert{{Layer: 0, Expert: 1 << 30, Tokens: 1}, {Layer: -1, Expert: 2}}
	page := renderHTMLString(t, r)
	checkHTML(t, page)
	if strings.Contains(page, `class="chart heat"`) {
		t.Errorf("a 2^30-column heatmap was drawn")
	}
}
