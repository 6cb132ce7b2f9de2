//go:build !cuda

package cli

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeCUDABinary writes an executable shell script named ptqgate-cuda into
// dir that prints its arguments and exits with the given status (a signal
// name kills itself with that signal instead).
func fakeCUDABinary(t *testing.T, dir, exit string) string {
	t.Helper()
	p := filepath.Join(dir, CUDABinary)
	body := "#!/bin/sh\necho \"ptqgate-cuda got: $*\"\necho \"to stderr\" >&2\n"
	if strings.HasPrefix(exit, "SIG") {
		body += "kill -" + strings.TrimPrefix(exit, "SIG") + " $$\n"
	} else {
		body += "exit " + exit + "\n"
	}
	if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func testApp(exe string) (*App, *bytes.Buffer, *bytes.Buffer) {
	var out, errb bytes.Buffer
	return &App{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }, Executable: exe}, &out, &errb
}

func launcher(driver bool, exe string, path map[string]string) cudaLauncher {
	return cudaLauncher{
		findDriver: func() (string, error) {
			if driver {
				return "/usr/lib/x86_64-linux-gnu/libcuda.so.1", nil
			}
			return "", errors.New("libcuda.so.1 is not in /nowhere")
		},
		executable: exe,
		lookPath: func(name string) (string, error) {
			if p, ok := path[name]; ok {
				return p, nil
			}
			return "", errors.New("not found")
		},
		run: runChild,
	}
}

func TestDispatchNeedsTheDriverFirst(t *testing.T) {
	dir := t.TempDir()
	fakeCUDABinary(t, dir, "0")
	a, out, _ := testApp(filepath.Join(dir, "ptqgate"))
	err := launcher(false, a.Executable, nil).dispatch(a, []string{"quantize", "--device", "cuda"})
	if ExitCodeOf(err) != ExitUsage || !strings.Contains(err.Error(), "no NVIDIA driver") || !strings.Contains(err.Error(), "--device cpu") ||
		!strings.Contains(err.Error(), "built without CUDA") || !strings.Contains(err.Error(), "make cuda") {
		t.Fatalf("got exit %d, %v; want exit 2 naming the missing driver", ExitCodeOf(err), err)
	}
	if out.Len() != 0 {
		t.Errorf("ptqgate-cuda ran without a driver: %q", out.String())
	}
}

func TestDispatchWithoutTheCUDABuildSaysMakeCUDA(t *testing.T) {
	dir := t.TempDir()
	a, _, _ := testApp(filepath.Join(dir, "ptqgate"))
	err := launcher(true, a.Executable, nil).dispatch(a, []string{"quantize"})
	if ExitCodeOf(err) != ExitUsage || !strings.Contains(err.Error(), "make cuda") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("got exit %d, %v; want exit 2 saying run make cuda and where it looked", ExitCodeOf(err), err)
	}
}

func TestDispatchRunsTheBinaryBesideTheExecutableWithTheSameArguments(t *testing.T) {
	beside, onPath := t.TempDir(), t.TempDir()
	fakeCUDABinary(t, beside, "0")
	other := fakeCUDABinary(t, onPath, "1")
	a, out, errb := testApp(filepath.Join(beside, "ptqgate"))
	args := []string{"quantize", "--model", "m dir", "--device", "cuda", "--json"}
	if err := launcher(true, a.Executable, map[string]string{CUDABinary: other}).dispatch(a, args); err != nil {
		t.Fatalf("dispatch: %v", err)
	}
	if got := out.String(); got != "ptqgate-cuda got: quantize --model m dir --device cuda --json\n" {
		t.Errorf("stdout %q", got)
	}
	if errb.String() != "to stderr\n" {
		t.Errorf("stderr %q", errb.String())
	}
}

func TestDispatchFindsTheBinaryOnPath(t *testing.T) {
	onPath := t.TempDir()
	p := fakeCUDABinary(t, onPath, "0")
	a, out, _ := testApp(filepath.Join(t.TempDir(), "ptqgate"))
	if err := launcher(true, a.Executable, map[string]string{CUDABinary: p}).dispatch(a, []string{"version"}); err != nil {
		t.Fatalf("dispatch: %v", err)
	}
	if !strings.Contains(out.String(), "got: version") {
		t.Errorf("stdout %q", out.String())
	}
}

func TestDispatchPassesExitCodesOnButNever127(t *testing.T) {
	for _, tc := range []struct {
		exit string
		want int
		msg  string
	}{
		{"1", ExitFailed, ""},
		{"2", ExitUsage, ""},
		{"3", ExitInternal, ""},
		{"127", ExitUsage, "dynamic loader"},
		{"SIGKILL", ExitInternal, ""},
		{"42", ExitInternal, ""},
	} {
		dir := t.TempDir()
		fakeCUDABinary(t, dir, tc.exit)
		a, _, _ := testApp(filepath.Join(dir, "ptqgate"))
		err := launcher(true, a.Executable, nil).dispatch(a, []string{"quantize"})
		if got := ExitCodeOf(err); got != tc.want {
			t.Errorf("child exit %s: ptqgate exit %d (%v), want %d", tc.exit, got, err, tc.want)
		}
		if tc.msg != "" && (err == nil || !strings.Contains(err.Error(), tc.msg)) {
			t.Errorf("child exit %s: error %v does not mention %q", tc.exit, err, tc.msg)
		}
		var silent *silentError
		if tc.msg == "" && !errors.As(err, &silent) {
			t.Errorf("child exit %s: %v should be silent (the child already reported)", tc.exit, err)
		}
	}
}

func TestDeviceDispatchLeavesOtherDevicesAlone(t *testing.T) {
	a, _, _ := testApp("")
	handled, err := deviceDispatch(a, "cpu")
	if handled || err != nil {
		t.Errorf("cpu: handled %v, err %v", handled, err)
	}
}

func TestDeviceDispatchUsesTheProcessArguments(t *testing.T) {
	dir := t.TempDir()
	fakeCUDABinary(t, dir, "0")
	a, out, _ := testApp(filepath.Join(dir, "ptqgate"))
	lib := t.TempDir()
	if err := os.WriteFile(filepath.Join(lib, libCUDA), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	a.Getenv = func(k string) string {
		if k == "LD_LIBRARY_PATH" {
			return lib
		}
		return ""
	}
	saved := processArgs
	processArgs = func() []string { return []string{"quantize", "--device", "cuda"} }
	defer func() { processArgs = saved }()
	handled, err := deviceDispatch(a, "cuda")
	if !handled || err != nil {
		t.Fatalf("handled %v, err %v", handled, err)
	}
	if !strings.Contains(out.String(), "got: quantize --device cuda") {
		t.Errorf("stdout %q", out.String())
	}
}

func TestFindLibCUDA(t *testing.T) {
	lib := t.TempDir()
	p := filepath.Join(lib, libCUDA)
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "LD_LIBRARY_PATH" {
				return v
			}
			return ""
		}
	}
	noCache := func() []byte { return nil }
	if got, err := findLibCUDA(env("/nonexistent:"+lib), noCache); err != nil || got != p {
		t.Errorf("LD_LIBRARY_PATH: %q, %v", got, err)
	}
	cache := func() []byte {
		return []byte("1234 libs found in cache `/etc/ld.so.cache'\n\tlibcudart.so.12 (libc6,x86-64) => /x/libcudart.so.12\n\t" + libCUDA + " (libc6,x86-64) => " + p + "\n")
	}
	if got, err := findLibCUDA(env(""), cache); err != nil || got != p {
		t.Errorf("ldconfig cache: %q, %v", got, err)
	}
	stale := func() []byte { return []byte("\t" + libCUDA + " (libc6,x86-64) => /gone/" + libCUDA + "\n") }
	saved := driverDirs
	driverDirs = []string{t.TempDir()}
	defer func() { driverDirs = saved }()
	_, err := findLibCUDA(env("/nonexistent"), stale)
	if err == nil || !strings.Contains(err.Error(), "/nonexistent") || !strings.Contains(err.Error(), "ldconfig cache") {
		t.Errorf("no driver: %v", err)
	}
}
