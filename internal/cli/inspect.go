package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/tw"
	"github.com/spf13/cobra"

	"github.com/ptqgate/ptqgate/internal/buildinfo"
	"github.com/ptqgate/ptqgate/ptqcore/numerics"
	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
	"github.com/ptqgate/ptqgate/reports"
)

func init() { register(newInspectCmd) }

// inspectStatsLimit is the largest float tensor (in elements) whose values
// inspect decodes for min, max, NaN and Inf counts.
const inspectStatsLimit = 1 << 20

// Rules of the findings inspect reports.
const (
	ruleSafetensorsFormat = "safetensors-format"
	ruleConfigFormat      = "config-format"
	ruleNonFinite         = "non-finite-values"
)

func newInspectCmd(a *App) *cobra.Command {
	var out Output
	var all bool
	c := &cobra.Command{
		Use:   "inspect PATH",
		Short: "List the tensors of a safetensors file or checkpoint directory",
		Long: `List the tensors of a .safetensors file or of a checkpoint directory (read the
way transformers reads one: model.safetensors.index.json and its shards if
present, else model.safetensors; config.json is required) with dtype, shape,
bytes and file, and for floating-point tensors of up to 1,048,576 elements
the decoded minimum and maximum of the finite values and the NaN and Inf
counts. For a directory the model section (architecture, dtype, layers,
experts, top-k) comes from config.json.

The file is validated strictly: a malformed header, offsets that do not tile
the data, a shard index that disagrees with its shards, or a directory
without config.json is exit 1 with a message naming the file and tensor. A
missing PATH is exit 2. Tensors holding NaN or Inf values are warnings.

Large checkpoints are summarised per tensor role; --all also lists every
tensor.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return runInspect(a, &out, args[0], all)
		},
	}
	out.AddFlags(c)
	c.Flags().BoolVar(&all, "all", false, "list every tensor, also when the table is summarised per role")
	return c
}

func runInspect(a *App, out *Output, path string, all bool) error {
	start := time.Now()
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("inspect: %w", err)
	}
	r := reports.New(reports.KindInspect, buildinfo.Version)
	abs, _ := filepath.Abs(path)
	r.Run = &reports.Run{StartedAt: start.UTC().Format(time.RFC3339), Command: append([]string{"ptqgate", "inspect"}, path),
		Paths: map[string]string{"input": abs}}
	var tensors []safetensors.TensorInfo
	var reader func(safetensors.TensorInfo) ([]byte, error)
	var files []string
	if st.IsDir() {
		ck, err := safetensors.OpenCheckpoint(path)
		if err != nil {
			return inspectFailed(a, out, r, err)
		}
		defer ck.Close()
		model, err := readModelSection(filepath.Join(path, safetensors.ConfigFile))
		if err != nil {
			return inspectFailed(a, out, r, err)
		}
		model.Path = path
		r.Model = model
		tensors = ck.Tensors()
		reader = func(t safetensors.TensorInfo) ([]byte, error) { return ck.ReadTensor(t.Name) }
		files = ck.Files()
	} else {
		f, err := safetensors.Open(path)
		if err != nil {
			return inspectFailed(a, out, r, err)
		}
		defer f.Close()
		tensors = f.Tensors()
		reader = func(t safetensors.TensorInfo) ([]byte, error) { return f.ReadTensor(t.Name) }
		files = []string{path}
	}
	rows, err := tensorRows(tensors, reader)
	if err != nil {
		return inspectFailed(a, out, r, err)
	}
	r.Tensors = rows
	var total int64
	for _, t := range rows {
		total += t.Bytes
		if (t.NaN != nil && *t.NaN > 0) || (t.Inf != nil && *t.Inf > 0) {
			r.AddFinding(reports.Finding{Rule: ruleNonFinite, Severity: reports.SeverityWarning, Target: reports.TargetAny, Tensor: t.Name,
				Message: fmt.Sprintf("%s holds %d NaN and %d Inf values", t.Name, *t.NaN, *t.Inf)})
		}
	}
	r.SortFindings()
	r.Run.DurationSeconds = time.Since(start).Seconds()
	r.Run.Extra = map[string]any{"files": len(files), "tensor_bytes": total}
	human := out.Human(a)
	color := out.JSON && a.StderrTTY
	if err := reports.RenderText(human, r, reports.TextOptions{Color: color, Verbose: a.Verbose}); err != nil {
		return err
	}
	if all && len(rows) > reports.GroupThreshold {
		if err := renderAllTensors(human, rows); err != nil {
			return err
		}
	}
	return out.Emit(a, r)
}

// inspectFailed reports a malformed input: the error becomes an error
// finding of the report (still emitted with --json/--report), and the
// command fails with the error's own exit code and message.
func inspectFailed(a *App, out *Output, r *reports.Report, err error) error {
	rule := ruleSafetensorsFormat
	var ce *configError
	if errors.As(err, &ce) {
		rule = ruleConfigFormat
	}
	f := reports.Finding{Rule: rule, Severity: reports.SeverityError, Target: reports.TargetAny, Message: err.Error()}
	var fe *safetensors.FormatError
	if errors.As(err, &fe) {
		f.Tensor = fe.Tensor
	}
	r.AddFinding(f)
	if out.JSON || out.ReportFile != "" {
		if eerr := out.Emit(a, r); eerr != nil {
			return errors.Join(err, eerr)
		}
	}
	return err
}

// tensorRows describes every tensor, decoding the float tensors of up to
// inspectStatsLimit elements on all CPUs.
func tensorRows(tensors []safetensors.TensorInfo, read func(safetensors.TensorInfo) ([]byte, error)) ([]reports.Tensor, error) {
	rows := make([]reports.Tensor, len(tensors))
	var todo []int
	for i, t := range tensors {
		shape := t.Shape
		if shape == nil {
			shape = []int64{}
		}
		rows[i] = reports.Tensor{Name: t.Name, DType: string(t.DType), Shape: shape, Bytes: t.Size, File: filepath.Base(t.File)}
		if numerics.IsFloatDType(string(t.DType)) && t.NumElements() <= inspectStatsLimit {
			todo = append(todo, i)
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	next := make(chan int)
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Go(func() {
			for i := range next {
				raw, err := read(tensors[i])
				if err == nil {
					err = fillStats(&rows[i], raw)
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for _, i := range todo {
		next <- i
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name })
	return rows, nil
}

// fillStats sets min and max of the finite values (nil when there are
// none) and the NaN and Inf counts.
func fillStats(row *reports.Tensor, raw []byte) error {
	vals, err := numerics.DecodeFloats(row.DType, raw)
	if err != nil {
		return fmt.Errorf("tensor %q: %w", row.Name, err)
	}
	var nan, inf int64
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range vals {
		x := float64(v)
		switch {
		case x != x:
			nan++
		case math.IsInf(x, 0):
			inf++
		default:
			lo = math.Min(lo, x)
			hi = math.Max(hi, x)
		}
	}
	row.NaN, row.Inf = &nan, &inf
	if lo <= hi {
		row.Min, row.Max = reports.F(lo), reports.F(hi)
	}
	return nil
}

// configError is a config.json that cannot be read (exit 1).
type configError struct {
	path string
	key  string
	err  error
}

func (e *configError) Error() string {
	if e.key != "" {
		return fmt.Sprintf("%s: key %q: %v", e.path, e.key, e.err)
	}
	return fmt.Sprintf("%s: %v", e.path, e.err)
}
func (e *configError) Unwrap() error { return e.err }
func (e *configError) ExitCode() int { return ExitFailed }

// readModelSection reads the report's model section from config.json:
// architecture, dtype, layers, experts and top-k, looking into text_config
// for VLMs. Keys it does not find stay empty; a file that is not a JSON
// object or a key of the wrong type is a *configError.
func readModelSection(path string) (*reports.Model, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, &configError{path: path, err: err}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var cfg map[string]any
	if err := dec.Decode(&cfg); err != nil {
		return nil, &configError{path: path, err: fmt.Errorf("not a JSON object: %w", err)}
	}
	if cfg == nil {
		return nil, &configError{path: path, err: errors.New("not a JSON object")}
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &configError{path: path, err: errors.New("data after the JSON object")}
	}
	text, _ := cfg["text_config"].(map[string]any)
	lookup := func(keys ...string) (string, any) {
		for _, m := range []map[string]any{cfg, text} {
			for _, k := range keys {
				if v, ok := m[k]; ok && v != nil {
					return k, v
				}
			}
		}
		return "", nil
	}
	m := &reports.Model{}
	if v, ok := cfg["architectures"]; ok && v != nil {
		list, ok := v.([]any)
		if !ok {
			return nil, &configError{path: path, key: "architectures", err: errors.New("not a list")}
		}
		names := make([]string, 0, len(list))
		for _, x := range list {
			s, ok := x.(string)
			if !ok {
				return nil, &configError{path: path, key: "architectures", err: errors.New("not a list of strings")}
			}
			names = append(names, s)
		}
		m.Architecture = strings.Join(names, ",")
	}
	if k, v := lookup("dtype", "torch_dtype"); v != nil {
		s, ok := v.(string)
		if !ok {
			return nil, &configError{path: path, key: k, err: errors.New("not a string")}
		}
		m.DType = s
	}
	ints := []struct {
		dst  *int
		keys []string
	}{
		{&m.Layers, []string{"num_hidden_layers"}},
		{&m.Experts, []string{"num_experts", "num_local_experts", "n_routed_experts"}},
		{&m.TopK, []string{"num_experts_per_tok"}},
	}
	for _, x := range ints {
		k, v := lookup(x.keys...)
		if v == nil {
			continue
		}
		n, ok := v.(json.Number)
		i, err := strconv.Atoi(string(n))
		if !ok || err != nil || i < 0 {
			return nil, &configError{path: path, key: k, err: fmt.Errorf("not a non-negative integer: %v", v)}
		}
		*x.dst = i
	}
	return m, nil
}

// renderAllTensors lists every tensor in one table (the report renderer
// summarises long lists per role).
func renderAllTensors(w io.Writer, rows []reports.Tensor) error {
	fmt.Fprintf(w, "\nall tensors (%d)\n", len(rows))
	t := tablewriter.NewTable(w,
		tablewriter.WithHeaderAutoFormat(tw.Off),
		tablewriter.WithRowAlignment(tw.AlignLeft),
		tablewriter.WithRowAutoWrap(tw.WrapNone))
	t.Header("tensor", "dtype", "shape", "bytes", "file", "min", "max", "nan", "inf")
	for _, r := range rows {
		if err := t.Append(r.Name, r.DType, shapeText(r.Shape), strconv.FormatInt(r.Bytes, 10), r.File,
			floatText(r.Min), floatText(r.Max), intText(r.NaN), intText(r.Inf)); err != nil {
			return err
		}
	}
	return t.Render()
}

func shapeText(s []int64) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = strconv.FormatInt(d, 10)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func floatText(f *reports.Float) string {
	if f == nil {
		return "-"
	}
	return strconv.FormatFloat(float64(*f), 'g', 5, 64)
}

func intText(i *int64) string {
	if i == nil {
		return "-"
	}
	return strconv.FormatInt(*i, 10)
}
