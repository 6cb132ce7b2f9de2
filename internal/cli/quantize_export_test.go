package cli

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/ptqgate/ptqgate/fixtures"
	"github.com/ptqgate/ptqgate/internal/refdata"
	"github.com/ptqgate/ptqgate/ptqcore/backend/cpu"
	"github.com/ptqgate/ptqgate/ptqcore/calib"
	"github.com/ptqgate/ptqgate/ptqcore/export"
	"github.com/ptqgate/ptqgate/ptqcore/model"
	"github.com/ptqgate/ptqgate/ptqcore/quant"
	"github.com/ptqgate/ptqgate/reports"
)

// exportCmd is a command with --model and the export flags, whose run
// records that it ran.
func exportCmd(ran *bool) (*cobra.Command, *exportFlags) {
	c := &cobra.Command{Use: "q", SilenceErrors: true, SilenceUsage: true, RunE: func(*cobra.Command, []string) error { *ran = true; return nil }}
	c.Flags().String("model", "", "")
	c.SetOut(&bytes.Buffer{})
	c.SetErr(&bytes.Buffer{})
	return c, addExportFlags(c)
}

func TestExportFlagsValidation(t *testing.T) {
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	existing := filepath.Join(tmp, "existing")
	for _, d := range []string{src, existing} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name string
		args []string
		code int
	}{
		{"no --out", []string{"--model", src}, ExitOK},
		{"new --out", []string{"--model", src, "--out", filepath.Join(tmp, "new")}, ExitOK},
		{"existing --out", []string{"--model", src, "--out", existing}, ExitUsage},
		{"existing --out --force", []string{"--model", src, "--out", existing, "--force"}, ExitOK},
		{"--out inside --model", []string{"--model", src, "--out", filepath.Join(src, "q")}, ExitUsage},
		{"--out is --model", []string{"--model", src, "--out", src, "--force"}, ExitUsage},
		{"bad --dtype", []string{"--model", src, "--dtype", "f32"}, ExitUsage},
		{"--dtype f16", []string{"--model", src, "--dtype", "f16", "--out", filepath.Join(tmp, "n2")}, ExitOK},
	}
	for _, c := range cases {
		ran := false
		cmd, _ := exportCmd(&ran)
		cmd.SetArgs(c.args)
		err := cmd.Execute()
		if got := ExitCodeOf(err); got != c.code || ran != (c.code == ExitOK) {
			t.Errorf("%s: exit %d (err %v, ran %v), want %d", c.name, got, err, ran, c.code)
		}
	}
	// An earlier PreRunE still runs after the export checks pass.
	ran, prevRan := false, false
	c := &cobra.Command{Use: "q", SilenceErrors: true, SilenceUsage: true, RunE: func(*cobra.Command, []string) error { ran = true; return nil },
		PreRunE: func(*cobra.Command, []string) error { prevRan = true; return nil }}
	c.Flags().String("model", "", "")
	addExportFlags(c)
	c.SetArgs([]string{"--out", filepath.Join(tmp, "n3")})
	if err := c.Execute(); err != nil || !ran || !prevRan {
		t.Errorf("chained PreRunE: err %v ran %v prev %v", err, ran, prevRan)
	}
}

// calibratedFixture calibrates the qwen3-moe-tiny fixture.
func calibratedFixture(t *testing.T, recipe string) *calib.Result {
	t.Helper()
	opt, err := fixtures.Defaults("qwen3-moe-tiny")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "src")
	if err := fixtures.Write(dir, opt); err != nil {
		t.Fatal(err)
	}
	m, err := model.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := calib.LoadBatches(filepath.Join(refdata.Dir("qwen3-moe-tiny"), "calib.json"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := quant.Load(recipe)
	if err != nil {
		t.Fatal(err)
	}
	res, err := calib.Run(m, cpu.New(), r, b, calib.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestExportRun(t *testing.T) {
	res := calibratedFixture(t, "nvfp4_experts_only-fp8_kv")
	calibKind := res.Report.Kind
	tmp := t.TempDir()
	var stderr bytes.Buffer
	a := &App{Stdout: &bytes.Buffer{}, Stderr: &stderr}

	// Without --out nothing happens.
	f := &exportFlags{dtype: export.DTypeAuto}
	if err := f.run(a, res, nil, nil, false); err != nil || res.Report.Kind != calibKind {
		t.Fatalf("no --out: %v, kind %s", err, res.Report.Kind)
	}

	// A failed calibration is not exported.
	f.out = filepath.Join(tmp, "skipped")
	if err := f.run(a, res, &calib.CheckError{Errors: 1}, nil, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.out); err == nil || !strings.Contains(stderr.String(), "skipped") {
		t.Errorf("export after a failed calibration: %v; stderr %q", err, stderr.String())
	}

	// The export: the folder, the report made an export report.
	f.out = filepath.Join(tmp, "out")
	if err := f.run(a, res, nil, nil, false); err != nil {
		t.Fatal(err)
	}
	if res.Report.Kind != reports.KindExport || len(res.Report.DequantError) != 2 {
		t.Errorf("report kind %s, %d dequant errors", res.Report.Kind, len(res.Report.DequantError))
	}
	if res.Report.Run != nil && res.Report.Run.Paths["out"] == "" {
		t.Error("run.paths.out not set")
	}
	inside, err := reports.ReadFile(filepath.Join(f.out, export.ReportFile))
	if err != nil || inside.Kind != reports.KindExport || inside.Run != nil {
		t.Fatalf("ptqgate_report.json: %v %+v", err, inside)
	}
	if !strings.Contains(stderr.String(), "quant_algo NVFP4, kv cache FP8") {
		t.Errorf("stderr %q", stderr.String())
	}

	// Again without --force: exit 2; with format-gate and --force: the
	// folder is replaced and the self-check fails (exit 1).
	err = f.run(a, calibratedFixture(t, "nvfp4_experts_only-fp8_kv"), nil, nil, false)
	if ExitCodeOf(err) != ExitUsage {
		t.Errorf("existing --out: %v", err)
	}
	f.force = true
	res2 := calibratedFixture(t, "nvfp4_experts_only-fp8_kv")
	err = f.run(a, res2, nil, []string{export.FaultFormatGate}, false)
	var ce *export.CheckError
	if !errors.As(err, &ce) || ExitCodeOf(err) != ExitFailed {
		t.Fatalf("format-gate: %v", err)
	}
	if res2.Report.Summary.Errors == 0 || res2.Report.Kind != reports.KindExport {
		t.Errorf("format-gate report: %+v", res2.Report.Summary)
	}
}
