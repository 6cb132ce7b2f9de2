package reports

import (
	"bytes"
	"testing"
)

// The golden files under testdata/ pin every renderer's output for the
// small reports of every kind (samples_test.go). Review a change with
// git diff after go test ./reports -update.

func TestGoldenText(t *testing.T) {
	for _, name := range sampleNames {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := RenderText(&buf, sampleReports()[name], TextOptions{}); err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(buf.Bytes(), []byte("\x1b[")) {
				t.Errorf("colour escapes without Color")
			}
			golden(t, name+".txt", buf.Bytes())
		})
	}
}

func TestGoldenTextColor(t *testing.T) {
	var buf bytes.Buffer
	if err := RenderText(&buf, sampleCalibration(), TextOptions{Color: true, MaxRows: 6}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{ansiRed + ansiBold + "FAILED" + ansiReset, ansiRed + "null" + ansiReset, "more rows not shown"} {
		if !bytes.Contains(buf.Bytes(), []byte(want)) {
			t.Errorf("coloured text lacks %q", want)
		}
	}
	golden(t, "calibration.color.txt", buf.Bytes())
}

func TestGoldenMarkdown(t *testing.T) {
	for _, name := range sampleNames {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := RenderMarkdown(&buf, sampleReports()[name]); err != nil {
				t.Fatal(err)
			}
			golden(t, name+".md", buf.Bytes())
		})
	}
}

func TestGoldenJUnit(t *testing.T) {
	for _, name := range sampleNames {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteJUnit(&buf, sampleReports()[name]); err != nil {
				t.Fatal(err)
			}
			golden(t, name+".junit.xml", buf.Bytes())
		})
	}
}

func TestGoldenHTML(t *testing.T) {
	for _, name := range sampleNames {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := RenderHTML(&buf, sampleReports()[name]); err != nil {
				t.Fatal(err)
			}
			golden(t, name+".html", buf.Bytes())
		})
	}
}
