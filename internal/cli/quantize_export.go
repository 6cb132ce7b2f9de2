package cli

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ptqgate/ptqgate/ptqcore/calib"
	"github.com/ptqgate/ptqgate/ptqcore/export"
)

// exportFlags are the export flags of quantize: --out, --force, --dtype.
type exportFlags struct {
	out   string
	force bool
	dtype string
}

// addExportFlags registers --out, --force and --dtype on the quantize
// command and checks them before the command runs (chained in front of any
// PreRunE set earlier): an existing --out without --force, an --out inside,
// equal to or above --model, or an unknown --dtype is exit 2 before any
// calibration work.
func addExportFlags(c *cobra.Command) *exportFlags {
	f := &exportFlags{}
	fl := c.Flags()
	fl.StringVar(&f.out, "out", "", "write the quantized checkpoint (ModelOpt unified HF format) to `DIR`; it must not exist unless --force")
	fl.BoolVar(&f.force, "force", false, "replace an existing --out folder (only once the new export is complete)")
	fl.StringVar(&f.dtype, "dtype", export.DTypeAuto, "dtype of unquantized tensors: "+strings.Join(export.DTypes, ", ")+
		" (auto keeps a bf16 or f16 model's dtype, else bf16)")
	prev := c.PreRunE
	c.PreRunE = func(cmd *cobra.Command, args []string) error {
		model, _ := cmd.Flags().GetString("model")
		if err := f.validate(model); err != nil {
			return err
		}
		if prev != nil {
			return prev(cmd, args)
		}
		return nil
	}
	return f
}

// validate checks the export flags (usage errors, exit 2).
func (f *exportFlags) validate(model string) error {
	if !slices.Contains(export.DTypes, f.dtype) {
		return Usagef("quantize: --dtype: unknown dtype %q (valid: %s)", f.dtype, strings.Join(export.DTypes, ", "))
	}
	if f.out == "" {
		return nil
	}
	if err := export.CheckOut(f.out, f.force, model); err != nil {
		return &UsageError{Err: fmt.Errorf("quantize: %w", err)}
	}
	return nil
}

// run exports the calibrated model when --out is given and makes res.Report
// the export report (kind "export", with the export's findings,
// dequantization errors and tensors; ptqgate_report.json inside --out is
// that report without its run section). calErr is the calibration's
// result: when calibration failed its checks nothing is exported (the
// failure already decides the exit code). faults are the export faults of
// --inject-fault (format-gate). The error follows export.Export: a failed
// self-check is exit 1 with the folder written, a refused request exit 2,
// and any failure leaves nothing at --out.
func (f *exportFlags) run(a *App, res *calib.Result, calErr error, faults []string, allowUncalibrated bool) error {
	if f.out == "" || res == nil {
		return nil
	}
	if calErr != nil {
		fmt.Fprintf(a.Stderr, "export to %s skipped: calibration failed its checks\n", f.out)
		return nil
	}
	if err := f.validate(res.Model.Dir); err != nil {
		return err
	}
	start := time.Now()
	r, err := export.Export(export.FromCalibration(res), res.Report, export.Options{
		Out:               f.out,
		Force:             f.force,
		DType:             f.dtype,
		AllowUncalibrated: allowUncalibrated,
		FormatGate:        slices.Contains(faults, export.FaultFormatGate),
	})
	if r == nil {
		return err
	}
	res.Report = r.Report
	if run := res.Report.Run; run != nil {
		if run.Paths == nil {
			run.Paths = map[string]string{}
		}
		if abs, aerr := filepath.Abs(f.out); aerr == nil {
			run.Paths["out"] = abs
		} else {
			run.Paths["out"] = f.out
		}
		if run.Extra == nil {
			run.Extra = map[string]any{}
		}
		run.Extra["export_seconds"] = time.Since(start).Seconds()
	}
	algo, kv := r.QuantAlgo, r.KVCacheQuantAlgo
	if algo == "" {
		algo = "none"
	}
	if kv == "" {
		kv = "none"
	}
	fmt.Fprintf(a.Stderr, "exported %d tensors to %s (quant_algo %s, kv cache %s)\n", r.Tensors, f.out, algo, kv)
	return err
}
