package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ptqgate/ptqgate/internal/buildinfo"
	"github.com/ptqgate/ptqgate/reports"
	"github.com/ptqgate/ptqgate/verifier"
	"github.com/ptqgate/ptqgate/verifier/contracts"
)

func init() { register(newVerifyCmd) }

// verifyOptions are the flags of ptqgate verify.
type verifyOptions struct {
	out       Output
	targets   []string
	tp        int
	reference string
	junit     string
}

func newVerifyCmd(a *App) *cobra.Command {
	var o verifyOptions
	c := &cobra.Command{
		Use:   "verify CKPT",
		Short: "Check a quantized checkpoint against the vLLM and SGLang loader contracts",
		Long: `Check a quantized checkpoint directory (ModelOpt unified HF format: FP8,
NVFP4, W4A16_NVFP4, MIXED_PRECISION, FP8 KV cache; sharded or not, made by
ptqgate or not) statically against what the vLLM and SGLang loaders of each
named version expect: the quantization config each engine reads, exclusion
matching, the tensor census (names, dtypes, shapes, every expert of every MoE
layer), scale values, KV-scale names, and per-rank divisibility for --tp.
Only headers and scale tensors are read, never the full weights (except with
--reference, which dequantizes every quantized weight and compares it with an
unquantized checkpoint).

Targets: ` + targetList() + `.
A bare engine means @main and the leading v of a version is optional; every
finding names its target with the canonical token (or "any"). Default targets:
vllm and sglang. A target that cannot load the checkpoint's quant_algo at all
is one error finding when named with --target, one info (and the target is
skipped) when it is only a default.

When the folder holds ptqgate_report.json, every quantizer it says was enabled
must have produced its tensors.

Exit codes: 0 no error finding (warnings allowed); 1 at least one error
finding (the report and JUnit are still written); 2 usage error, unknown
target, missing path, or a quantization format without contract tables.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return runVerify(a, &o, args[0])
		},
	}
	o.out.AddFlags(c)
	c.Flags().StringArrayVar(&o.targets, "target", nil, "verify against `ENGINE[@VERSION]` (repeatable; also comma-separated); default vllm and sglang")
	c.Flags().IntVar(&o.tp, "tp", 0, "check per-rank divisibility for tensor parallelism `N`")
	c.Flags().StringVar(&o.reference, "reference", "", "unquantized checkpoint `DIR` to measure the dequantization error against")
	c.Flags().StringVar(&o.junit, "junit", "", "also write a JUnit XML report to `FILE` (one case per evaluated rule and target)")
	return c
}

// targetList lists the known target tokens for the help text.
func targetList() string {
	var s string
	for i, t := range contracts.KnownTokens() {
		if i > 0 {
			s += ", "
		}
		s += t
	}
	return s
}

func runVerify(a *App, o *verifyOptions, path string) error {
	if o.tp < 0 {
		return Usagef("verify: --tp must be ≥ 1, got %d", o.tp)
	}
	opt := verifier.Options{TP: o.tp, ToolVersion: buildinfo.Version}
	if len(o.targets) > 0 {
		ts, err := contracts.ParseTargets(o.targets)
		if err != nil {
			return &UsageError{Err: fmt.Errorf("verify: %w", err)}
		}
		if len(ts) == 0 {
			return Usagef("verify: --target names no target; known targets: %s", targetList())
		}
		opt.Targets, opt.Explicit = ts, true
	}
	if o.reference != "" {
		if _, err := os.Stat(o.reference); err != nil {
			return fmt.Errorf("verify: --reference: %w", err)
		}
		opt.Reference = o.reference
	}
	r, err := verifier.Verify(path, opt)
	if err != nil {
		var u *verifier.UnsupportedError
		if errors.As(err, &u) {
			return &UsageError{Err: fmt.Errorf("verify %s: %w", path, err)}
		}
		return err
	}
	abs, _ := filepath.Abs(path)
	r.Run.Command = []string{"ptqgate", "verify", path}
	r.Run.Paths["checkpoint"] = abs
	color := o.out.JSON && a.StderrTTY
	if err := reports.RenderText(o.out.Human(a), r, reports.TextOptions{Color: color, MaxRows: 40, Verbose: a.Verbose}); err != nil {
		return err
	}
	if err := o.out.Emit(a, r); err != nil {
		return err
	}
	if o.junit != "" {
		if err := writeJUnitFile(o.junit, r); err != nil {
			return err
		}
	}
	if !r.Clean() {
		return ErrChecksFailed
	}
	return nil
}

// writeJUnitFile writes the report's JUnit XML to path.
func writeJUnitFile(path string, r *reports.Report) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("verify: --junit: %w", err)
	}
	if err := reports.WriteJUnit(f, r); err != nil {
		f.Close()
		return fmt.Errorf("verify: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("verify: write %s: %w", path, err)
	}
	return nil
}
