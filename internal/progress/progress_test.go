package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func fixedClock(p *Printer) {
	t0 := time.Unix(0, 0)
	p.start = t0
	p.now = func() time.Time { return t0.Add(1500 * time.Millisecond) }
}

func TestPlainLines(t *testing.T) {
	var b bytes.Buffer
	p := New(&b, false)
	fixedClock(p)
	p.Note("loading %s", "m")
	p.Step("batch", 1, 2, "48 tokens")
	p.Step("batch", 2, 2, "96 tokens")
	p.Done()
	want := "loading m\nbatch 1/2: 48 tokens (1.5s)\nbatch 2/2: 96 tokens (1.5s)\n"
	if b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}

func TestBar(t *testing.T) {
	var b bytes.Buffer
	p := New(&b, true)
	fixedClock(p)
	p.Step("layer", 1, 4, "x")
	if strings.Contains(b.String(), "\n") || !strings.Contains(b.String(), "[######..................] 1/4") {
		t.Errorf("first step %q", b.String())
	}
	p.Note("note")
	if !strings.HasSuffix(b.String(), "\nnote\n") {
		t.Errorf("a note ends the bar line first: %q", b.String())
	}
	b.Reset()
	p.Step("layer", 4, 4, "x")
	if !strings.HasSuffix(b.String(), "\n") || !strings.Contains(b.String(), "[########################] 4/4") {
		t.Errorf("last step %q", b.String())
	}
	b.Reset()
	p.Done()
	if b.Len() != 0 {
		t.Errorf("Done after a finished bar wrote %q", b.String())
	}
}
