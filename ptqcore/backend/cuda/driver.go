//go:build cuda

package cuda

/*
#cgo LDFLAGS: -lcuda
#include <cuda.h>
#include <stdint.h>
#include <stdlib.h>

// ptq_launch launches f with n 8-byte argument slots (each holding one
// kernel parameter in its low bytes, little-endian).
static CUresult ptq_launch(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
			   unsigned bz, unsigned shmem, CUstream s, uint64_t* args, int n) {
	void* ptrs[24];
	if (n > 24) return CUDA_ERROR_INVALID_VALUE;
	for (int i = 0; i < n; i++) ptrs[i] = &args[i];
	return cuLaunchKernel(f, gx, gy, gz, bx, by, bz, shmem, s, ptrs, NULL);
}

static CUresult ptq_set_max_dynamic_smem(CUfunction f, int bytes) {
	return cuFuncSetAttribute(f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes);
}

static CUresult ptq_host_alloc(void** p, size_t n) { return cuMemHostAlloc(p, n, CU_MEMHOSTALLOC_PORTABLE); }

static CUresult ptq_pool_create(CUmemoryPool* pool, int device) {
	CUmemPoolProps props = {0};
	props.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
	props.handleTypes = CU_MEM_HANDLE_TYPE_NONE;
	props.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	props.location.id = device;
	CUresult r = cuMemPoolCreate(pool, &props);
	if (r != CUDA_SUCCESS) return r;
	cuuint64_t threshold = ~(cuuint64_t)0;
	return cuMemPoolSetAttribute(*pool, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &threshold);
}

static CUresult ptq_pool_attr(CUmemoryPool pool, int attr, cuuint64_t* v) {
	return cuMemPoolGetAttribute(pool, (CUmemPool_attribute)attr, v);
}

static CUresult ptq_pool_reset_high(CUmemoryPool pool) {
	cuuint64_t zero = 0;
	CUresult r = cuMemPoolSetAttribute(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH, &zero);
	if (r != CUDA_SUCCESS) return r;
	return cuMemPoolSetAttribute(pool, CU_MEMPOOL_ATTR_USED_MEM_HIGH, &zero);
}

// ptq_load_module loads PTX with the JIT compiler's error log.
static CUresult ptq_load_module(CUmodule* m, const char* image, char* log, unsigned logSize) {
	CUjit_option opts[2] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
	void* vals[2] = {log, (void*)(uintptr_t)logSize};
	return cuModuleLoadDataEx(m, image, 2, opts, vals);
}

static const char* ptq_error_name(CUresult r) {
	const char* s = 0;
	if (cuGetErrorName(r, &s) != CUDA_SUCCESS || s == 0) return "CUDA_ERROR_UNKNOWN_CODE";
	return s;
}
*/
import "C"

import (
	"fmt"
	"unsafe"

	"gorgonia.org/cu"
)

// driverError is a failed CUDA driver call; it names the call (and the
// kernel for launches) and the CUDA error.
type driverError struct {
	call string
	code int
	name string
}

func (e *driverError) Error() string {
	return fmt.Sprintf("%s: %s (%d)", e.call, e.name, e.code)
}

// check turns a CUresult into an error naming the call.
func check(call string, r C.CUresult) error {
	if r == C.CUDA_SUCCESS {
		return nil
	}
	return &driverError{call: call, code: int(r), name: C.GoString(C.ptq_error_name(r))}
}

// wrap adds the call's name to an error from gorgonia.org/cu.
func wrap(call string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", call, err)
}

// cFunc, cStream and cEvent reach the C handles inside gorgonia.org/cu's
// single-field wrappers.
func cFunc(f cu.Function) C.CUfunction { return *(*C.CUfunction)(unsafe.Pointer(&f)) }
func cStream(s cu.Stream) C.CUstream   { return *(*C.CUstream)(unsafe.Pointer(&s)) }

// launch starts a kernel with its parameters, each given as a uint64
// holding the value in its low bytes.
func launch(name string, f cu.Function, grid, block [3]int, shmem int, s cu.Stream, args []uint64) error {
	if len(args) == 0 {
		return check("cuLaunchKernel("+name+")", C.ptq_launch(cFunc(f), C.uint(grid[0]), C.uint(grid[1]), C.uint(grid[2]),
			C.uint(block[0]), C.uint(block[1]), C.uint(block[2]), C.uint(shmem), cStream(s), nil, 0))
	}
	return check("cuLaunchKernel("+name+")", C.ptq_launch(cFunc(f), C.uint(grid[0]), C.uint(grid[1]), C.uint(grid[2]),
		C.uint(block[0]), C.uint(block[1]), C.uint(block[2]), C.uint(shmem), cStream(s),
		(*C.uint64_t)(unsafe.Pointer(&args[0])), C.int(len(args))))
}

// setMaxDynamicSmem allows a kernel more than 48 KiB of dynamic shared memory.
func setMaxDynamicSmem(name string, f cu.Function, bytes int) error {
	return check("cuFuncSetAttribute("+name+", MAX_DYNAMIC_SHARED_SIZE_BYTES)", C.ptq_set_max_dynamic_smem(cFunc(f), C.int(bytes)))
}

// hostAlloc returns n bytes of page-locked host memory.
func hostAlloc(n int) ([]byte, error) {
	var p unsafe.Pointer
	if err := check(fmt.Sprintf("cuMemHostAlloc(%d bytes)", n), C.ptq_host_alloc(&p, C.size_t(n))); err != nil {
		return nil, err
	}
	return unsafe.Slice((*byte)(p), n), nil
}

// hostFree releases memory from hostAlloc.
func hostFree(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	return wrap("cuMemFreeHost", cu.MemFreeHost(unsafe.Pointer(&b[0])))
}

// memPool is a stream-ordered device memory pool that keeps freed memory
// for reuse (release threshold: never).
type memPool struct{ p C.CUmemoryPool }

func newMemPool(ordinal int) (memPool, error) {
	var p C.CUmemoryPool
	err := check(fmt.Sprintf("cuMemPoolCreate(device %d)", ordinal), C.ptq_pool_create(&p, C.int(ordinal)))
	return memPool{p}, err
}

// alloc returns n bytes usable by work on s from now on.
func (m memPool) alloc(n int64, s cu.Stream) (cu.DevicePtr, error) {
	var d C.CUdeviceptr
	err := check(fmt.Sprintf("cuMemAllocFromPoolAsync(%d bytes)", n), C.cuMemAllocFromPoolAsync(&d, C.size_t(n), m.p, cStream(s)))
	return cu.DevicePtr(d), err
}

// free releases p once the work queued on s before it is done.
func freeAsync(p cu.DevicePtr, s cu.Stream) error {
	return check("cuMemFreeAsync", C.cuMemFreeAsync(C.CUdeviceptr(p), cStream(s)))
}

// Pool attributes (CUmemPool_attribute).
const (
	poolReservedCurrent = C.CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT
	poolReservedHigh    = C.CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH
	poolUsedCurrent     = C.CU_MEMPOOL_ATTR_USED_MEM_CURRENT
	poolUsedHigh        = C.CU_MEMPOOL_ATTR_USED_MEM_HIGH
)

func (m memPool) attr(a int) (int64, error) {
	var v C.cuuint64_t
	err := check("cuMemPoolGetAttribute", C.ptq_pool_attr(m.p, C.int(a), &v))
	return int64(v), err
}

// resetHigh restarts the pool's high-water marks.
func (m memPool) resetHigh() error {
	return check("cuMemPoolSetAttribute(high-water marks)", C.ptq_pool_reset_high(m.p))
}

// trim returns the pool's unused memory to the device.
func (m memPool) trim() error { return check("cuMemPoolTrimTo", C.cuMemPoolTrimTo(m.p, 0)) }

func (m memPool) destroy() error { return check("cuMemPoolDestroy", C.cuMemPoolDestroy(m.p)) }

// loadModule loads a PTX image into the current context; a JIT failure
// carries the compiler's log.
func loadModule(name, ptx string) (cu.Module, error) {
	image := C.CString(ptx)
	defer C.free(unsafe.Pointer(image))
	log := make([]byte, 8192)
	var m C.CUmodule
	r := C.ptq_load_module(&m, image, (*C.char)(unsafe.Pointer(&log[0])), C.uint(len(log)))
	if err := check("cuModuleLoadDataEx("+name+")", r); err != nil {
		if msg := C.GoString((*C.char)(unsafe.Pointer(&log[0]))); msg != "" {
			return cu.Module{}, fmt.Errorf("%w: %s", err, msg)
		}
		return cu.Module{}, err
	}
	return *(*cu.Module)(unsafe.Pointer(&m)), nil
}

// attrMaxSharedMemoryPerBlockOptin is CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
// (gorgonia.org/cu predates it).
const attrMaxSharedMemoryPerBlockOptin = cu.DeviceAttribute(C.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)
