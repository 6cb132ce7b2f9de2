package export

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/ptqgate/ptqgate/internal/buildinfo"
	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
	"github.com/ptqgate/ptqgate/reports"
)

// --dtype values.
const (
	DTypeAuto = "auto"
	DTypeBF16 = "bf16"
	DTypeF16  = "f16"
)

// DTypes lists the valid --dtype values.
var DTypes = []string{DTypeAuto, DTypeBF16, DTypeF16}

// FaultFormatGate is the --inject-fault name that reproduces the toolkit's
// PR-state export: fused experts skipped because the format query on the
// container said "none" (specs/modelopt.md §5).
const FaultFormatGate = "format-gate"

// DefaultMaxShardSize is the shard size limit when Options.MaxShardSize is
// 0: tensors beyond 5 GB are split into model-0000K-of-0000N.safetensors
// files with model.safetensors.index.json.
const DefaultMaxShardSize = 5_000_000_000

// Options controls an export.
type Options struct {
	// Out is the export folder. It must not exist unless Force.
	Out string
	// Force replaces an existing Out folder, once the new one is complete.
	Force bool
	// DType is the dtype of unquantized tensors: "auto" (keep a bf16 or
	// f16 model's dtype, else bf16), "bf16" or "f16".
	DType string
	// AllowUncalibrated exports even when enabled quantizers have no valid
	// amax: their input and KV scales are omitted, as the toolkit did, and
	// weights fall back to max|W|.
	AllowUncalibrated bool
	// FormatGate injects the format-gate fault: fused experts are written
	// unquantized (output dtype) and listed nowhere in the quantization
	// config, as the toolkit's PR-state exporter did.
	FormatGate bool
	// MaxShardSize is the largest safetensors shard in bytes; 0 uses
	// DefaultMaxShardSize, a negative value always writes one file.
	MaxShardSize int64
	// Producer is the safetensors __metadata__ "producer"; "" uses
	// buildinfo.Producer() ("ptqgate <version>").
	Producer string
}

// Result describes a written export.
type Result struct {
	// Dir is the export folder (Options.Out).
	Dir string
	// Files are the files written, relative to Dir, sorted.
	Files []string
	// Tensors is the number of tensors written.
	Tensors int
	// QuantAlgo and KVCacheQuantAlgo are hf_quant_config.json's values
	// ("" for null).
	QuantAlgo, KVCacheQuantAlgo string
	// Formats maps every quantized module (Linears and fused experts
	// containers) to its quant_algo.
	Formats map[string]string
	// ExcludeModules is the exclude_modules / ignore list.
	ExcludeModules []string
	// Findings are the export's findings (also added to the report).
	Findings []reports.Finding
	// DequantErrors are the round-trip errors per quantized module, read
	// back from the written files (also in the report).
	DequantErrors []reports.DequantError
	// Report is the export report written as ptqgate_report.json (with
	// the run section of the calibration report, which the file omits): a
	// copy of the calibration report with kind "export", the findings, the
	// dequantization errors and the written tensors.
	Report *reports.Report
}

// CheckOut validates an export destination before any work is done: out
// must be given, must not exist unless force (then it must be a folder),
// and must neither be, contain, nor lie inside the source checkpoint
// folder (the source is never modified). Problems are *UsageError (exit 2).
func CheckOut(out string, force bool, source string) error {
	if out == "" {
		return &UsageError{Msg: "no output folder (--out)"}
	}
	absOut, err := canonical(out)
	if err != nil {
		return &UsageError{Msg: fmt.Sprintf("--out %s: %v", out, err)}
	}
	if source != "" {
		absSrc, err := canonical(source)
		if err != nil {
			return &UsageError{Msg: fmt.Sprintf("--model %s: %v", source, err)}
		}
		if absOut == absSrc || within(absOut, absSrc) || within(absSrc, absOut) {
			return &UsageError{Msg: fmt.Sprintf("--out %s would modify the source checkpoint %s; choose a folder outside it", out, source)}
		}
	}
	st, err := os.Lstat(out)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return &UsageError{Msg: fmt.Sprintf("--out %s: %v", out, err)}
	case !force:
		return &UsageError{Msg: fmt.Sprintf("--out %s already exists; pass --force to replace it", out)}
	case !st.IsDir():
		return &UsageError{Msg: fmt.Sprintf("--out %s exists and is not a folder; refusing to replace it", out)}
	}
	return nil
}

// canonical returns the absolute, symlink-resolved form of a path whose
// last elements may not exist yet.
func canonical(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	var rest []string
	for cur := abs; ; {
		if r, err := filepath.EvalSymlinks(cur); err == nil {
			return filepath.Join(append([]string{r}, rest...)...), nil
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return abs, nil
		}
		rest = append([]string{filepath.Base(cur)}, rest...)
		cur = parent
	}
}

// within reports whether path lies strictly inside dir.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// testHookBeforeRename, when set by a test, runs after the export folder is
// complete and before it is renamed into place; an error aborts the export.
var testHookBeforeRename func(tmp string) error

// Export writes a ModelOpt unified Hugging Face checkpoint of the
// calibrated model to opt.Out (specs/modelopt.md §4): config.json with
// quantization_config, hf_quant_config.json, the safetensors (sharded with
// an index above opt.MaxShardSize) with per-expert projections for every
// fused expert, copies of the tokenizer, generation and processor files,
// and ptqgate_report.json (rep without its volatile run section).
//
// Everything is written to a temporary folder beside opt.Out and renamed
// into place when complete; an existing opt.Out (with Force) is replaced
// only then, and any failure leaves nothing at opt.Out (and the old folder
// untouched). The same input gives byte-identical files.
//
// rep (the calibration report; nil starts an empty one) is not changed: the
// export report (Result.Report) is a copy with kind "export", the export's
// findings, the round-trip dequantization errors and the written tensors. After writing, the folder
// is read back and every enabled quantizer must have produced its tensors;
// when that self-check finds errors the folder is still written and the
// error is a *CheckError (exit 1). Other errors: *UsageError and
// *UnsupportedError (exit 2), *UncalibratedError and *OverflowError (exit 1),
// safetensors and I/O errors.
func Export(in Input, rep *reports.Report, opt Options) (*Result, error) {
	if in.Model == nil {
		return nil, errors.New("export: no model")
	}
	if err := CheckOut(opt.Out, opt.Force, in.Model.Dir); err != nil {
		return nil, err
	}
	p, err := newPlan(in, opt)
	if err != nil {
		return nil, err
	}
	section, err := p.quantSection()
	if err != nil {
		return nil, err
	}
	var qc object
	if section != nil {
		if qc, err = quantizationConfig(section); err != nil {
			return nil, err
		}
	}
	cfgRaw, err := os.ReadFile(in.Model.Config.Path)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	cfgOut, err := rewriteConfig(cfgRaw, qc, configDTypeName(p.outDType))
	if err != nil {
		return nil, fmt.Errorf("export: %s: %w", in.Model.Config.Path, err)
	}
	if rep == nil {
		rep = reports.New(reports.KindExport, buildinfo.Version)
	}

	parent := filepath.Dir(filepath.Clean(opt.Out))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(filepath.Clean(opt.Out))+".ptqgate-tmp-*")
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	done := false
	defer func() {
		if p.source != nil {
			p.source.Close()
		}
		if !done {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}

	res, err := p.write(tmp, section, cfgOut, rep)
	if err != nil {
		return nil, err
	}
	res.Dir = opt.Out
	if testHookBeforeRename != nil {
		if err := testHookBeforeRename(tmp); err != nil {
			return nil, err
		}
	}
	if err := replaceDir(tmp, opt.Out, opt.Force); err != nil {
		return nil, err
	}
	done = true
	ce := &CheckError{Dir: opt.Out}
	for _, f := range res.Findings {
		if f.Severity == reports.SeverityError {
			ce.Errors++
			if len(ce.First) < 3 {
				ce.First = append(ce.First, f.Message)
			}
		}
	}
	if ce.Errors > 0 {
		return res, ce
	}
	return res, nil
}

// write fills the temporary folder: tensors, configs, copied files, the
// self-check and the report.
func (p *plan) write(dir string, section object, cfgOut []byte, rep *reports.Report) (*Result, error) {
	if err := p.buildTensors(); err != nil {
		return nil, err
	}
	producer := p.opt.Producer
	if producer == "" {
		producer = buildinfo.Producer()
	}
	shard := p.opt.MaxShardSize
	switch {
	case shard == 0:
		shard = DefaultMaxShardSize
	case shard < 0:
		shard = 0
	}
	if _, err := safetensors.WriteCheckpoint(dir, map[string]string{"format": "pt", "producer": producer}, p.tensors, safetensors.WriteOptions{MaxShardSize: shard}); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	if err := writeFileSync(filepath.Join(dir, ConfigFile), cfgOut); err != nil {
		return nil, err
	}
	res := &Result{Tensors: len(p.tensors), Formats: map[string]string{}}
	for _, n := range p.quantized {
		res.Formats[n] = p.layerCfg[n].Algo
	}
	if section != nil {
		raw, err := marshalPy(hfQuantConfig(section))
		if err != nil {
			return nil, fmt.Errorf("export: %s: %w", HFQuantConfig, err)
		}
		if err := writeFileSync(filepath.Join(dir, HFQuantConfig), raw); err != nil {
			return nil, err
		}
		if a, _ := section.get("quant_algo"); a != nil {
			res.QuantAlgo = a.(string)
		}
		if ex, ok := section.get("exclude_modules"); ok {
			res.ExcludeModules = ex.([]string)
		}
	}
	res.KVCacheQuantAlgo = p.kvAlgo
	if err := copySideFiles(p.m.Dir, dir); err != nil {
		return nil, err
	}

	findings, deq, tensors, err := p.selfCheck(dir)
	if err != nil {
		return nil, err
	}
	res.Findings = append(append([]reports.Finding(nil), p.findings...), findings...)
	res.DequantErrors = deq
	res.Report = exportReport(rep, res.Findings, deq, tensors)
	if err := writeReport(filepath.Join(dir, ReportFile), res.Report); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	for _, e := range entries {
		res.Files = append(res.Files, e.Name())
	}
	sort.Strings(res.Files)
	syncDir(dir)
	return res, nil
}

// exportReport returns a copy of the calibration report made into the
// export report (rep itself is not changed): kind "export", the export's
// findings added (summary updated, findings sorted), the dequantization
// errors and the written tensors.
func exportReport(rep *reports.Report, findings []reports.Finding, deq []reports.DequantError, tensors []reports.Tensor) *reports.Report {
	r := *rep
	r.Kind = reports.KindExport
	r.Findings = slices.Clone(rep.Findings)
	r.DequantError = append(slices.Clone(rep.DequantError), deq...)
	r.Tensors = tensors
	for _, f := range findings {
		r.AddFinding(f)
	}
	r.SortFindings()
	return &r
}

// writeReport writes the report without its run section.
func writeReport(path string, rep *reports.Report) error {
	return createFile(path, rep.ForExport().WriteJSON)
}

// writeFileSync creates a new file with data and syncs it.
func writeFileSync(path string, data []byte) error {
	return createFile(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// createFile creates path, which must not exist yet, fills it with write
// and syncs it. Errors name the file.
func createFile(path string, write func(io.Writer) error) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	err = write(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("export: %s: %w", path, err)
	}
	return nil
}

// sideFiles are copied from the source checkpoint when present: tokenizer,
// generation and (for vision-language models) processor files.
var sideFiles = []string{
	"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
	"vocab.json", "vocab.txt", "merges.txt", "tokenizer.model", "spiece.model",
	"generation_config.json", "preprocessor_config.json", "processor_config.json", "video_preprocessor_config.json",
}

// sideFilePatterns are globs of further files to copy.
var sideFilePatterns = []string{"chat_template.*"}

// copySideFiles copies the side files of src that exist as regular files,
// byte for byte.
func copySideFiles(src, dst string) error {
	names := append([]string(nil), sideFiles...)
	for _, pat := range sideFilePatterns {
		m, err := filepath.Glob(filepath.Join(src, pat))
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		for _, f := range m {
			names = append(names, filepath.Base(f))
		}
	}
	sort.Strings(names)
	for i, n := range names {
		if i > 0 && n == names[i-1] {
			continue
		}
		st, err := os.Stat(filepath.Join(src, n))
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		if err := copyFile(filepath.Join(src, n), filepath.Join(dst, n)); err != nil {
			return err
		}
	}
	return nil
}

// copyFile copies src byte for byte to the new file dst.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer in.Close()
	return createFile(dst, func(w io.Writer) error {
		if _, err := io.Copy(w, in); err != nil {
			return fmt.Errorf("copy %s: %w", src, err)
		}
		return nil
	})
}

// replaceDir renames the complete folder tmp to out. With force and an
// existing out, the old folder is first moved aside, then removed once
// the new one is in place (and moved back if the rename fails).
func replaceDir(tmp, out string, force bool) error {
	parent := filepath.Dir(filepath.Clean(out))
	_, err := os.Lstat(out)
	exists := err == nil
	if exists && !force {
		return &UsageError{Msg: fmt.Sprintf("--out %s appeared while exporting; pass --force to replace it", out)}
	}
	old := ""
	if exists {
		// Reserve a unique name, then free it: os.Rename refuses an
		// existing directory as the target.
		if old, err = os.MkdirTemp(parent, "."+filepath.Base(filepath.Clean(out))+".ptqgate-old-*"); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		if err := os.Remove(old); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		if err := os.Rename(out, old); err != nil {
			return fmt.Errorf("export: move the old %s aside: %w", out, err)
		}
	}
	if err := os.Rename(tmp, out); err != nil {
		if old != "" {
			_ = os.Rename(old, out)
		}
		return fmt.Errorf("export: %w", err)
	}
	syncDir(parent)
	if old != "" {
		if err := os.RemoveAll(old); err != nil {
			return fmt.Errorf("export: the new %s is in place, but removing the old folder %s failed: %w", out, old, err)
		}
	}
	return nil
}

// syncDir makes renames inside dir durable; errors (file systems that
// cannot sync folders) are ignored.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
