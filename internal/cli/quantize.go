package cli

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ptqgate/ptqgate/internal/buildinfo"
	"github.com/ptqgate/ptqgate/internal/progress"
	"github.com/ptqgate/ptqgate/ptqcore/backend"
	"github.com/ptqgate/ptqgate/ptqcore/backend/cpu"
	"github.com/ptqgate/ptqgate/ptqcore/calib"
	"github.com/ptqgate/ptqgate/ptqcore/model"
	"github.com/ptqgate/ptqgate/ptqcore/quant"
	"github.com/ptqgate/ptqgate/reports"
)

func init() { register(newQuantizeCmd) }

// faultFormatGate breaks the export (the export step handles it).
const faultFormatGate = "format-gate"

// quantizeFaults are the valid --inject-fault names (INTERFACES.md).
var quantizeFaults = []string{calib.FaultHookBypass, calib.FaultPluralMatch, faultFormatGate, calib.FaultVLMLayers}

// deviceBackends open the backend of a --device value. A build with the
// cuda tag adds "cuda".
var deviceBackends = map[string]func() (backend.Backend, error){
	"cpu": func() (backend.Backend, error) { return cpu.New(), nil },
}

// devices are the valid --device values.
var devices = []string{"cpu", "cuda"}

// quantizeOptions are the flags of quantize.
type quantizeOptions struct {
	out               Output
	modelDir          string
	recipe            string
	calibFile         string
	expertsImpl       string
	allExperts        bool
	allowUncalibrated bool
	device            string
	faults            []string
	export            *exportFlags
}

func newQuantizeCmd(a *App) *cobra.Command {
	o := &quantizeOptions{}
	c := &cobra.Command{
		Use:   "quantize --model DIR --recipe NAME|FILE --calib FILE [flags]",
		Short: "Calibrate a checkpoint with per-expert hook accounting",
		Long: `Load a Hugging Face checkpoint (config.json + safetensors, per-expert or fused
expert layout), apply a quantization recipe (a preset name, see
'ptqgate recipes', or a recipe YAML file) and run max calibration over the
token-id batches of --calib (JSON {"batches": [[[id, ...], ...], ...]}, one
forward per batch). Every quantizer input goes through one hook point that
counts calls per layer, expert and projection; weight amax come from the
weights of every expert, routed or not.

The run fails (exit 1, the report is still written) when an enabled quantizer
has no amax or an amax that is not finite and positive, when an enabling
recipe pattern matched nothing, or when routed experts' inputs never reached
the quantizer hook; --allow-uncalibrated turns the uncalibrated cases into
warnings. Experts that received no tokens are listed and reported.

--experts-impl selects how experts execute: grouped (default: tokens
permuted by expert, one segmented GEMM per projection, as transformers'
grouped_mm) or eager (one GEMM per expert that received tokens). Both give
identical amax and counts. --calib-all-experts adds a calibration-only pass
in which every token also reaches every expert, feeding the expert input
amax. --inject-fault NAME reproduces a toolkit bug (hook-bypass,
plural-match, format-gate, vlm-layers) to show that ptqgate catches it.

Progress goes to stderr; the summary table to stdout (stderr with --json).`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runQuantize(a, o)
		},
	}
	f := c.Flags()
	o.out.AddFlags(c)
	f.StringVar(&o.modelDir, "model", "", "checkpoint `DIR` (config.json + model.safetensors or shards)")
	f.StringVar(&o.recipe, "recipe", "", "recipe preset `NAME` or recipe YAML FILE")
	f.StringVar(&o.calibFile, "calib", "", "calibration token-id batches (JSON `FILE`)")
	f.StringVar(&o.expertsImpl, "experts-impl", "grouped", "expert execution: "+strings.Join(model.ExpertsModes, " or "))
	f.BoolVar(&o.allExperts, "calib-all-experts", false, "add a calibration-only pass in which every token reaches every expert")
	f.BoolVar(&o.allowUncalibrated, "allow-uncalibrated", false, "report uncalibrated quantizers as warnings instead of failing")
	f.StringVar(&o.device, "device", "cpu", "compute device: "+strings.Join(devices, " or "))
	f.StringArrayVar(&o.faults, "inject-fault", nil, "inject a fault `NAME` (repeatable): "+strings.Join(quantizeFaults, ", "))
	o.export = addExportFlags(c)
	return c
}

// quantizeRequest is the validated form of the flags.
type quantizeRequest struct {
	mode   model.ExpertsMode
	faults calib.Faults
	// exportFaults are faults that act on the export step.
	exportFaults []string
	newBackend   func() (backend.Backend, error)
}

// validate checks the flags (usage errors, exit 2) before anything is read.
func (o *quantizeOptions) validate() (*quantizeRequest, error) {
	for _, f := range []struct{ flag, value string }{{"--model", o.modelDir}, {"--recipe", o.recipe}, {"--calib", o.calibFile}} {
		if f.value == "" {
			return nil, Usagef("quantize: %s is required", f.flag)
		}
	}
	req := &quantizeRequest{}
	mode, err := model.ParseExpertsMode(o.expertsImpl)
	if err != nil {
		return nil, Usagef("quantize: --experts-impl: %v", err)
	}
	req.mode = mode
	if !slices.Contains(devices, o.device) {
		return nil, Usagef("quantize: --device: unknown device %q (valid: %s)", o.device, strings.Join(devices, ", "))
	}
	nb, ok := deviceBackends[o.device]
	if !ok {
		return nil, Usagef("quantize: --device %s: this ptqgate was built without CUDA; run make cuda", o.device)
	}
	req.newBackend = nb
	for _, f := range o.faults {
		switch f {
		case calib.FaultHookBypass:
			req.faults.HookBypass = true
		case calib.FaultPluralMatch:
			req.faults.PluralMatch = true
		case calib.FaultVLMLayers:
			req.faults.VLMLayers = true
		case faultFormatGate:
			req.exportFaults = append(req.exportFaults, f)
		default:
			return nil, Usagef("quantize: --inject-fault: unknown fault %q (valid: %s)", f, strings.Join(quantizeFaults, ", "))
		}
	}
	return req, nil
}

// runQuantize is the command: calibration, then (with --out) export, then
// the report.
func runQuantize(a *App, o *quantizeOptions) error {
	if handled, err := deviceDispatch(a, o.device); handled {
		return err
	}
	req, err := o.validate()
	if err != nil {
		return err
	}
	prog := progress.New(a.Stderr, a.StderrTTY)
	res, calErr := calibrateStep(a, o, req, prog)
	if res == nil {
		return quantizeInputFailed(a, o, calErr)
	}
	expErr := o.export.run(a, res, calErr, req.exportFaults, o.allowUncalibrated)
	return finishQuantize(a, o, res, errors.Join(calErr, expErr))
}

// calibrateStep loads the recipe, the calibration batches and the model,
// and calibrates. A nil result means nothing to report (the error says
// why); a result with a *calib.CheckError failed its checks.
func calibrateStep(a *App, o *quantizeOptions, req *quantizeRequest, prog *progress.Printer) (*calib.Result, error) {
	recipe, err := quant.Load(o.recipe)
	if err != nil {
		return nil, err
	}
	batches, err := calib.LoadBatches(o.calibFile)
	if err != nil {
		return nil, err
	}
	prog.Note("loading %s", o.modelDir)
	m, err := model.Load(o.modelDir)
	if err != nil {
		return nil, err
	}
	be, err := req.newBackend()
	if err != nil {
		return nil, err
	}
	defer be.Close()
	prog.Note("calibrating %s (%d layers, %d experts, top-%d, %s) with recipe %s (%s): %d batches, %d tokens, experts %s, device %s",
		m.Architecture(), len(m.Layers), m.NumExperts(), m.TopK(), m.DType, recipe.Name, recipe.Algorithm, len(batches.Batches),
		batches.Tokens(), req.mode, be.Name())
	res, err := calib.Run(m, be, recipe, batches, calib.Options{
		Experts:           req.mode,
		AllExperts:        o.allExperts,
		AllowUncalibrated: o.allowUncalibrated,
		Faults:            req.faults,
		ToolVersion:       buildinfo.Version,
		Progress: func(ev calib.Event) {
			switch ev.Stage {
			case "weights":
				prog.Note("weight amax computed for every expert (%s)", ev.Elapsed.Round(1e6))
			case "batch":
				prog.Step("batch", ev.Index, ev.Total, fmt.Sprintf("%d tokens", ev.Tokens))
			case "layer":
				prog.Step("layer", ev.Index, ev.Total, fmt.Sprintf("%d tokens", ev.Tokens))
			}
		},
	})
	prog.Done()
	var ce *calib.CheckError
	if err != nil && !errors.As(err, &ce) {
		return nil, err
	}
	if tps, ok := res.Report.Run.Extra["tokens_per_second"].(float64); ok {
		prog.Note("calibrated %d quantizers over %d batches (%d tokens) in %s: %.0f tokens/s",
			len(res.Quantizers), res.Batches, res.Tokens, res.Duration.Round(1e6), tps)
	}
	if len(req.exportFaults) > 0 {
		res.Report.Run.Extra["export_faults"] = req.exportFaults
	}
	abs := func(p string) string {
		if ap, err := filepath.Abs(p); err == nil {
			return ap
		}
		return p
	}
	res.Report.Run.Paths = map[string]string{"model": abs(o.modelDir), "calib": abs(o.calibFile)}
	if recipe.Source != "preset" {
		res.Report.Run.Paths["recipe"] = abs(o.recipe)
	}
	return res, err
}

// finishQuantize prints the summary table and emits the report; the
// calibration's check failure (if any) is the command's result.
func finishQuantize(a *App, o *quantizeOptions, res *calib.Result, calErr error) error {
	color := o.out.JSON && a.StderrTTY
	if err := reports.RenderText(o.out.Human(a), res.Report, reports.TextOptions{Color: color, MaxRows: 20, Verbose: a.Verbose}); err != nil {
		return err
	}
	if err := o.out.Emit(a, res.Report); err != nil {
		return errors.Join(calErr, err)
	}
	return calErr
}

// quantizeInputFailed reports a malformed input that stopped the run
// (exit 1: a bad checkpoint, config, recipe file or calibration file): with
// --json or --report a calibration report holding that error as a finding
// is still emitted. Other errors (usage, unsupported requests) are
// returned as they are.
func quantizeInputFailed(a *App, o *quantizeOptions, err error) error {
	if ExitCodeOf(err) != ExitFailed || (!o.out.JSON && o.out.ReportFile == "") {
		return err
	}
	r := reports.New(reports.KindCalibration, buildinfo.Version)
	r.AddFinding(reports.Finding{Rule: calib.RuleInvalidInput, Severity: reports.SeverityError, Target: reports.TargetAny,
		Message: err.Error(), Source: "INTERFACES.md Exit codes"})
	if eerr := o.out.Emit(a, r); eerr != nil {
		return errors.Join(err, eerr)
	}
	return err
}
