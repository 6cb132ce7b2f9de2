//go:build !cuda

package cli

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// CUDABinary is the name of the CUDA build of ptqgate (`make cuda`).
const CUDABinary = "ptqgate-cuda"

// processArgs returns the command line to hand to ptqgate-cuda (tests
// replace it).
var processArgs = func() []string { return os.Args[1:] }

// cudaLauncher finds the NVIDIA driver and ptqgate-cuda and runs it; its
// fields are the system interactions, replaced in tests.
type cudaLauncher struct {
	// findDriver returns the path of libcuda.so.1 or an error saying
	// where it looked.
	findDriver func() (string, error)
	// executable is the running ptqgate binary ("" when unknown).
	executable string
	// lookPath searches $PATH (exec.LookPath).
	lookPath func(string) (string, error)
	// run starts the program with the arguments and the App's output and
	// returns its exit status.
	run func(path string, args []string, a *App) (int, error)
}

// deviceDispatch hands a `--device cuda` command of this build (no CUDA
// backend) to ptqgate-cuda: it checks for the NVIDIA driver first, finds
// ptqgate-cuda beside this executable or on $PATH, and runs it with the
// same arguments and the same output, ending with its exit code. handled
// is false for other devices.
func deviceDispatch(a *App, device string) (handled bool, err error) {
	if device != "cuda" {
		return false, nil
	}
	l := cudaLauncher{
		findDriver: func() (string, error) { return findLibCUDA(a.Getenv, ldconfigCache) },
		executable: a.Executable,
		lookPath:   exec.LookPath,
		run:        runChild,
	}
	return true, l.dispatch(a, processArgs())
}

// dispatch is deviceDispatch with the system interactions of l.
func (l cudaLauncher) dispatch(a *App, args []string) error {
	if _, err := l.findDriver(); err != nil {
		return Usagef("--device cuda: no NVIDIA driver: %v. This ptqgate is built without CUDA and runs %s (make cuda) where the driver is installed; install the NVIDIA driver, or use --device cpu", err, CUDABinary)
	}
	bin, searched := l.findBinary()
	if bin == "" {
		return Usagef("--device cuda: this ptqgate is built without CUDA and %s was not found (looked in %s); run make cuda to build bin/%s", CUDABinary, strings.Join(searched, ", "), CUDABinary)
	}
	code, err := l.run(bin, args, a)
	if err != nil {
		return Usagef("--device cuda: cannot start %s: %v", bin, err)
	}
	switch code {
	case ExitOK:
		return nil
	case 127:
		// The dynamic loader refused the binary (a library it links is
		// missing); never pass 127 on to the user.
		return Usagef("--device cuda: %s could not be started by the dynamic loader (exit 127: a library it needs, such as libcuda.so.1, cannot be loaded); check the NVIDIA driver installation", bin)
	}
	if code < 0 || code > ExitInternal {
		return &silentError{code: ExitInternal}
	}
	return &silentError{code: code}
}

// findBinary looks for ptqgate-cuda beside the running executable, then
// on $PATH; it returns the path found and the places it looked.
func (l cudaLauncher) findBinary() (string, []string) {
	var searched []string
	if l.executable != "" {
		dir := filepath.Dir(l.executable)
		if real, err := filepath.EvalSymlinks(l.executable); err == nil {
			dir = filepath.Dir(real)
		}
		p := filepath.Join(dir, CUDABinary)
		searched = append(searched, dir)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, searched
		}
	}
	searched = append(searched, "$PATH")
	if p, err := l.lookPath(CUDABinary); err == nil {
		return p, searched
	}
	return "", searched
}

// runChild runs the program with the App's standard output and error and
// the process's standard input and environment; a program killed by a
// signal reports -1.
func runChild(path string, args []string, a *App) (int, error) {
	cmd := exec.Command(path, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, a.Stdout, a.Stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), nil
	}
	if err != nil {
		return 0, err
	}
	return 0, nil
}

// libCUDA is the NVIDIA driver library the CUDA build links.
const libCUDA = "libcuda.so.1"

// driverDirs are the usual places of libcuda.so.1 besides the linker
// cache and LD_LIBRARY_PATH.
var driverDirs = []string{
	"/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/lib/x86_64-linux-gnu",
	"/lib64", "/usr/local/nvidia/lib64", "/usr/local/cuda/compat", "/usr/lib/wsl/lib",
}

// findLibCUDA looks for libcuda.so.1 where the dynamic loader would:
// LD_LIBRARY_PATH, the linker cache (cache returns `ldconfig -p`), then
// the usual library folders.
func findLibCUDA(getenv func(string) string, cache func() []byte) (string, error) {
	var looked []string
	for _, dir := range filepath.SplitList(getenv("LD_LIBRARY_PATH")) {
		if dir == "" {
			continue
		}
		looked = append(looked, dir)
		if p := filepath.Join(dir, libCUDA); isFile(p) {
			return p, nil
		}
	}
	if out := cache(); out != nil {
		looked = append(looked, "the ldconfig cache")
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if !strings.HasPrefix(line, libCUDA+" ") {
				continue
			}
			if _, p, ok := strings.Cut(line, "=> "); ok && isFile(strings.TrimSpace(p)) {
				return strings.TrimSpace(p), nil
			}
		}
	}
	for _, dir := range driverDirs {
		looked = append(looked, dir)
		if p := filepath.Join(dir, libCUDA); isFile(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s is not in %s", libCUDA, strings.Join(looked, ", "))
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// ldconfigCache returns the output of `ldconfig -p`, or nil.
func ldconfigCache() []byte {
	for _, p := range []string{"/sbin/ldconfig", "/usr/sbin/ldconfig", "/sbin/ldconfig.real"} {
		if !isFile(p) {
			continue
		}
		cmd := exec.Command(p, "-p")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, io.Discard
		if cmd.Run() == nil {
			return out.Bytes()
		}
	}
	return nil
}
