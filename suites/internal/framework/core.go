package framework

import (
	"github.com/ptqgate/ptqgate/ptqcore/backend/cpu"
	"github.com/ptqgate/ptqgate/ptqcore/calib"
	"github.com/ptqgate/ptqgate/ptqcore/export"
	"github.com/ptqgate/ptqgate/ptqcore/model"
	"github.com/ptqgate/ptqgate/ptqcore/quant"
	"github.com/ptqgate/ptqgate/reports"
	"github.com/ptqgate/ptqgate/verifier"
	"github.com/ptqgate/ptqgate/verifier/contracts"
)

// ToolVersion is the tool version the white-box tier writes into reports.
const ToolVersion = "suites"

// Calibrate loads the checkpoint in dir, the recipe (a preset name or a
// recipe file) and the calibration batches, and runs calibration on the
// CPU backend, as `ptqgate quantize` does. A run that completed but failed
// its checks returns the result together with a *calib.CheckError.
func Calibrate(dir, recipe, calibFile string, opt calib.Options) (*calib.Result, error) {
	r, err := quant.Load(recipe)
	if err != nil {
		return nil, err
	}
	b, err := calib.LoadBatches(calibFile)
	if err != nil {
		return nil, err
	}
	m, err := model.Load(dir)
	if err != nil {
		return nil, err
	}
	if opt.ToolVersion == "" {
		opt.ToolVersion = ToolVersion
	}
	be := cpu.New()
	defer be.Close()
	return calib.Run(m, be, r, b, opt)
}

// Export writes the calibrated model into out (which must not exist), as
// `ptqgate quantize --out` does after a calibration: the calibration report
// becomes the export report (Result.Report, written as ptqgate_report.json).
func Export(res *calib.Result, out string, opt export.Options) (*export.Result, error) {
	opt.Out = out
	return export.Export(export.FromCalibration(res), res.Report, opt)
}

// Verify verifies the checkpoint in dir against the target tokens (nil =
// the default targets, as when none is named) with tensor parallelism tp
// (0 = none), as `ptqgate verify` does.
func Verify(dir string, targets []string, tp int) (*reports.Report, error) {
	opt := verifier.Options{TP: tp, ToolVersion: ToolVersion}
	if targets != nil {
		ts, err := contracts.ParseTargets(targets)
		if err != nil {
			return nil, err
		}
		opt.Targets, opt.Explicit = ts, true
	}
	return verifier.Verify(dir, opt)
}
