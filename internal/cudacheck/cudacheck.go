//go:build cuda

// Package cudacheck initialises the CUDA driver before gorgonia.org/cu
// does, so that a machine with the NVIDIA driver library but no usable GPU
// gets a clear message and exit code 2 instead of gorgonia.org/cu's
// os.Exit(1) from its init function.
//
// Go initialises packages that do not depend on each other in import-path
// order, so this package (github.com/ptqgate/…) runs before gorgonia.org/cu
// in any binary that imports both; it must not import gorgonia.org/cu. A
// missing libcuda.so.1 cannot be reported from Go (the dynamic loader
// refuses the binary first): the untagged ptqgate checks for the library
// before it starts ptqgate-cuda.
package cudacheck

/*
#cgo LDFLAGS: -lcuda
#include <cuda.h>

static const char* ptq_check_error_name(CUresult r) {
	const char* s = 0;
	if (cuGetErrorName(r, &s) != CUDA_SUCCESS || s == 0) return "CUDA_ERROR_UNKNOWN_CODE";
	return s;
}
*/
import "C"

import (
	"fmt"
	"os"
)

// MinDriverVersion is the oldest driver API version whose JIT compiler
// accepts the embedded PTX (nvcc 11.8 emits PTX ISA 7.8: CUDA 11.8).
const MinDriverVersion = 11080

// DriverVersion is cuDriverGetVersion, set by init.
var DriverVersion int

// Devices is cuDeviceGetCount, set by init.
var Devices int

// ExitCode is the exit status used when the driver is unusable (usage
// error or unsupported request: INTERFACES.md).
const ExitCode = 2

func init() {
	if err := initDriver(); err != nil {
		fmt.Fprintf(os.Stderr, "ptqgate: no usable NVIDIA GPU: %v\n", err)
		os.Exit(ExitCode)
	}
}

func initDriver() error {
	if r := C.cuInit(0); r != C.CUDA_SUCCESS {
		return fmt.Errorf("cuInit(0) = %s (%d)", C.GoString(C.ptq_check_error_name(r)), int(r))
	}
	var v C.int
	if r := C.cuDriverGetVersion(&v); r != C.CUDA_SUCCESS {
		return fmt.Errorf("cuDriverGetVersion = %s (%d)", C.GoString(C.ptq_check_error_name(r)), int(r))
	}
	DriverVersion = int(v)
	if DriverVersion < MinDriverVersion {
		return fmt.Errorf("the NVIDIA driver supports CUDA %d.%d; ptqgate's kernels need CUDA 11.8 or newer (driver 520+)",
			DriverVersion/1000, DriverVersion%1000/10)
	}
	var n C.int
	if r := C.cuDeviceGetCount(&n); r != C.CUDA_SUCCESS {
		return fmt.Errorf("cuDeviceGetCount = %s (%d)", C.GoString(C.ptq_check_error_name(r)), int(r))
	}
	if n == 0 {
		return fmt.Errorf("the driver reports no CUDA devices (check CUDA_VISIBLE_DEVICES)")
	}
	Devices = int(n)
	return nil
}
