// Package progress prints the progress of long commands on stderr: a bar
// redrawn in place on a terminal, plain one-line milestones otherwise (CI
// logs, pipes), so logs stay readable and terminals stay quiet.
package progress

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// barWidth is the number of cells of the bar.
const barWidth = 24

// Printer writes progress lines to one writer.
type Printer struct {
	w       io.Writer
	tty     bool
	start   time.Time
	now     func() time.Time
	barOpen bool
}

// New returns a printer writing to w; tty selects the in-place bar.
func New(w io.Writer, tty bool) *Printer {
	return &Printer{w: w, tty: tty, now: time.Now, start: time.Now()}
}

// Note prints a milestone line ("loading model …").
func (p *Printer) Note(format string, args ...any) {
	p.endBar()
	fmt.Fprintf(p.w, format+"\n", args...)
}

// Step reports step i of n of a stage ("batch", "layer") with a detail
// ("96 tokens"): a bar on a terminal, a line otherwise.
func (p *Printer) Step(stage string, i, n int, detail string) {
	elapsed := p.now().Sub(p.start).Round(10 * time.Millisecond)
	if !p.tty {
		fmt.Fprintf(p.w, "%s %d/%d: %s (%s)\n", stage, i, n, detail, elapsed)
		return
	}
	filled := 0
	if n > 0 {
		filled = barWidth * i / n
	}
	bar := strings.Repeat("#", filled) + strings.Repeat(".", barWidth-filled)
	fmt.Fprintf(p.w, "\r\x1b[2K%s [%s] %d/%d %s %s", stage, bar, i, n, detail, elapsed)
	p.barOpen = true
	if i >= n {
		p.endBar()
	}
}

// Done ends an open bar line.
func (p *Printer) Done() { p.endBar() }

func (p *Printer) endBar() {
	if p.barOpen {
		fmt.Fprintln(p.w)
		p.barOpen = false
	}
}
