package reports

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/renderer"
	"github.com/olekukonko/tablewriter/tw"
)

// TextOptions controls the terminal renderer.
type TextOptions struct {
	// Color enables ANSI colour (only when the output is a terminal).
	Color bool
	// MaxRows limits long sections (tensors, quantizers, experts); 0 means all.
	MaxRows int
}

// RenderText writes the human-readable terminal form of a report: one
// table per non-empty section, then the summary line.
func RenderText(w io.Writer, r *Report, opt TextOptions) error {
	if r.Model != nil {
		m := r.Model
		fmt.Fprintf(w, "model: %s  (%s, %s, %d layers, %d experts, top-%d)\n", m.Path, m.Architecture, m.DType, m.Layers, m.Experts, m.TopK)
	}
	if r.Recipe != nil {
		fmt.Fprintf(w, "recipe: %s (%s, algorithm %s)\n", r.Recipe.Name, r.Recipe.Source, r.Recipe.Algorithm)
	}
	if len(r.Tensors) > 0 {
		rows := make([][]string, 0, len(r.Tensors))
		for _, t := range r.Tensors {
			rows = append(rows, []string{t.Name, t.DType, shapeString(t.Shape), strconv.FormatInt(t.Bytes, 10), t.File,
				optFloat(t.Min), optFloat(t.Max), optInt(t.NaN), optInt(t.Inf)})
		}
		if err := table(w, "tensors", []string{"name", "dtype", "shape", "bytes", "file", "min", "max", "nan", "inf"}, rows, opt.MaxRows); err != nil {
			return err
		}
	}
	if len(r.Findings) > 0 {
		rows := make([][]string, 0, len(r.Findings))
		for _, f := range r.Findings {
			where := f.Tensor
			if where == "" {
				where = f.Module
			}
			rows = append(rows, []string{severityText(f.Severity, opt.Color), f.Rule, f.Target, where, f.Message})
		}
		if err := table(w, "findings", []string{"severity", "rule", "target", "tensor/module", "message"}, rows, opt.MaxRows); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "summary: %d errors, %d warnings, %d infos\n", r.Summary.Errors, r.Summary.Warnings, r.Summary.Infos)
	return nil
}

func table(w io.Writer, title string, header []string, rows [][]string, maxRows int) error {
	fmt.Fprintf(w, "\n%s (%d)\n", title, len(rows))
	omitted := 0
	if maxRows > 0 && len(rows) > maxRows {
		omitted = len(rows) - maxRows
		rows = rows[:maxRows]
	}
	t := tablewriter.NewTable(w,
		tablewriter.WithRenderer(renderer.NewBlueprint()),
		tablewriter.WithHeaderAutoFormat(tw.Off),
		tablewriter.WithRowAlignment(tw.AlignLeft))
	t.Header(toAny(header)...)
	for _, r := range rows {
		if err := t.Append(toAny(r)...); err != nil {
			return err
		}
	}
	if err := t.Render(); err != nil {
		return err
	}
	if omitted > 0 {
		fmt.Fprintf(w, "… %d more rows (use --json for all)\n", omitted)
	}
	return nil
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

func shapeString(s []int64) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = strconv.FormatInt(d, 10)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func optFloat(f *Float) string {
	if f == nil {
		return "-"
	}
	b, _ := f.MarshalJSON()
	return strings.Trim(string(b), `"`)
}

func optInt(i *int64) string {
	if i == nil {
		return "-"
	}
	return strconv.FormatInt(*i, 10)
}

func severityText(s Severity, color bool) string {
	if !color {
		return string(s)
	}
	switch s {
	case SeverityError:
		return "\x1b[31m" + string(s) + "\x1b[0m"
	case SeverityWarning:
		return "\x1b[33m" + string(s) + "\x1b[0m"
	}
	return string(s)
}
