//go:build cuda

package cuda

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"gorgonia.org/cu"

	"github.com/ptqgate/ptqgate/internal/cudacheck"
	"github.com/ptqgate/ptqgate/kernels"
	"github.com/ptqgate/ptqgate/ptqcore/backend"
)

// storage is how a buffer's elements sit in device memory; the values are
// the kernels' storage codes.
type storage uint8

const (
	stF32  storage = 0
	stBF16 storage = 1
)

func (s storage) size() int64 {
	if s == stBF16 {
		return 2
	}
	return 4
}

// buffer is the device storage behind a tensor and its views.
type buffer struct {
	rows, cols int
	// materialized is false until the first operation writes or reads
	// the buffer (Alloc is lazy).
	materialized bool
	st           storage
	ptr          cu.DevicePtr
	dev          int // index into Backend.devs
	freed        bool
	// weight marks buffers made by Upload; stream is set for streamed
	// weights (their device pointer lives in the streamer).
	weight bool
	stream *streamEntry
	// version counts the writes (the amax cache keys on it).
	version uint64
}

func (bf *buffer) bytes() int64 { return int64(bf.rows) * int64(bf.cols) * bf.st.size() }

// Tensor is the CUDA backend's tensor: rows [row0, row0+rows) of a buffer.
type Tensor struct {
	rows, cols int
	row0       int
	buf        *buffer
	view       bool
}

// Rows implements backend.Tensor.
func (t *Tensor) Rows() int { return t.rows }

// Cols implements backend.Tensor.
func (t *Tensor) Cols() int { return t.cols }

// whole reports whether the tensor covers its entire buffer.
func (t *Tensor) whole() bool { return t.row0 == 0 && t.rows == t.buf.rows }

// device is one GPU (or one logical device on a GPU) used by the backend.
type device struct {
	idx, ordinal int
	dev          cu.Device
	ctx          cu.CUContext
	name         string
	cc           int // compute capability ×10 + minor (90 for sm_90)
	sms          int
	maxSmem      int // opt-in shared memory per block
	total        int64
	stream       cu.Stream
	pool         memPool
	ring         *hostRing
	arena        *arena
	fns          map[string]cu.Function
	mods         []cu.Module
	missing      map[string]string // kernel → why it is unavailable
	budget       int64             // resident-weight budget
	resident     int64             // bytes of resident weights
	streamer     *streamer
	rope         map[ropeKey]*ropeDev
	pos          posCache
}

// Backend is the CUDA backend. Make one with New or NewWithOptions; every
// method may be called from any goroutine (calls are serialised on the
// backend's worker).
type Backend struct {
	opt  Options
	devs []*device
	fill int // the device resident weights go to next

	// amax caches reductions of unchanged tensors (calibration reduces the
	// input of q, k and v_proj, one tensor, three times).
	amax map[amaxKey][]float32
	// prof holds the optional kernel and operation timings.
	prof profiling

	reqs    chan request
	closed  atomic.Bool
	closeMu sync.Mutex
	wg      sync.WaitGroup
	cur     int // device whose context is current on the worker

	// failed is the first error of an operation queued without waiting
	// (post); every later call reports it.
	failMu sync.Mutex
	failed error
}

// request is one call for the worker; done is nil for posted calls.
type request struct {
	fn   func() error
	done chan error
	// always runs fn even after a failed posted operation (Close).
	always bool
}

var _ backend.Backend = (*Backend)(nil)

// New returns a backend configured from the environment (OptionsFromEnv).
func New() (*Backend, error) {
	opt, err := OptionsFromEnv(os.Getenv)
	if err != nil {
		return nil, err
	}
	return NewWithOptions(opt)
}

// VisibleDevices returns the number of GPUs the driver exposes to this
// process (CUDA_VISIBLE_DEVICES applies).
func VisibleDevices() (int, error) {
	if cudacheck.DriverVersion == 0 {
		return 0, errors.New("cuda: the CUDA driver was not initialised")
	}
	n, err := cu.NumDevices()
	if err != nil {
		return 0, wrap("cuDeviceGetCount", err)
	}
	return n, nil
}

// NewWithOptions starts the worker, retains each device's primary
// context, loads the kernels and creates the streams and memory pools.
func NewWithOptions(opt Options) (*Backend, error) {
	if cudacheck.DriverVersion == 0 {
		return nil, errors.New("cuda: the CUDA driver was not initialised")
	}
	b := &Backend{opt: opt, reqs: make(chan request, 4096), cur: -1, amax: map[amaxKey][]float32{}}
	b.wg.Add(1)
	started := make(chan struct{})
	go b.worker(started)
	<-started
	if err := b.run(b.setup); err != nil {
		b.shutdown()
		return nil, err
	}
	return b, nil
}

// worker runs every CUDA call of the compute path on one OS thread.
func (b *Backend) worker(started chan<- struct{}) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer b.wg.Done()
	close(started)
	for {
		r, ok := b.next()
		if !ok {
			return
		}
		err := b.failure()
		if err == nil || r.always {
			if err = b.call(r.fn); err != nil && r.done == nil {
				b.failMu.Lock()
				b.failed = err
				b.failMu.Unlock()
			}
		}
		if r.done != nil {
			r.done <- err
		}
	}
}

// next returns the next request (false once the queue is closed).
func (b *Backend) next() (request, bool) {
	r, ok := <-b.reqs
	return r, ok
}

// failure returns the error of a failed posted operation, if any.
func (b *Backend) failure() error {
	b.failMu.Lock()
	defer b.failMu.Unlock()
	if b.failed != nil {
		return fmt.Errorf("cuda backend: an earlier operation failed: %w", b.failed)
	}
	return nil
}

// call runs fn, turning a panic into an error (the backend never panics
// into its caller).
func (b *Backend) call(fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("cuda backend: internal error: %v", p)
		}
	}()
	return fn()
}

var errClosed = errors.New("cuda backend: used after Close")

// run executes fn on the worker and returns its error.
func (b *Backend) run(fn func() error) error {
	if b.closed.Load() {
		return errClosed
	}
	done := make(chan error, 1)
	b.reqs <- request{fn: fn, done: done}
	return <-done
}

// post queues fn on the worker and returns without waiting: operations
// without results run asynchronously, so the caller prepares the next one
// while the worker launches; a failure is returned by the next call.
func (b *Backend) post(fn func() error) error {
	if b.closed.Load() {
		return errClosed
	}
	if err := b.failure(); err != nil {
		return err
	}
	b.reqs <- request{fn: fn}
	return nil
}

// use makes device d's context current on the worker.
func (b *Backend) use(d int) error {
	if b.cur == d {
		return nil
	}
	if err := cu.SetCurrentContext(b.devs[d].ctx); err != nil {
		return fmt.Errorf("cuCtxSetCurrent(device %d): %w", b.devs[d].ordinal, err)
	}
	b.cur = d
	return nil
}

// setup runs on the worker: devices, contexts, kernels, streams, pools.
func (b *Backend) setup() error {
	n, err := cu.NumDevices()
	if err != nil {
		return wrap("cuDeviceGetCount", err)
	}
	ordinals := b.opt.Devices
	if len(ordinals) == 0 {
		for i := 0; i < n; i++ {
			ordinals = append(ordinals, i)
		}
	}
	if len(ordinals) == 0 {
		return errors.New("cuda: no CUDA devices")
	}
	mods, err := kernels.Modules()
	if err != nil {
		return err
	}
	for i, ord := range ordinals {
		if ord >= n {
			return fmt.Errorf("cuda: device %d requested, %d visible", ord, n)
		}
		d, err := b.openDevice(i, ord, mods)
		if err != nil {
			return err
		}
		b.devs = append(b.devs, d)
	}
	return nil
}

func (b *Backend) openDevice(idx, ord int, mods []kernels.Module) (*device, error) {
	dev, err := cu.GetDevice(ord)
	if err != nil {
		return nil, wrap(fmt.Sprintf("cuDeviceGet(%d)", ord), err)
	}
	d := &device{idx: idx, ordinal: ord, dev: dev, fns: map[string]cu.Function{}, missing: map[string]string{}, rope: map[ropeKey]*ropeDev{}}
	if d.name, err = dev.Name(); err != nil {
		return nil, wrap("cuDeviceGetName", err)
	}
	major, err := dev.Attribute(cu.ComputeCapabilityMajor)
	if err != nil {
		return nil, wrap("cuDeviceGetAttribute(compute capability)", err)
	}
	minor, err := dev.Attribute(cu.ComputeCapabilityMinor)
	if err != nil {
		return nil, wrap("cuDeviceGetAttribute(compute capability)", err)
	}
	d.cc = major*10 + minor
	if d.sms, err = dev.Attribute(cu.MultiprocessorCount); err != nil {
		return nil, wrap("cuDeviceGetAttribute(multiprocessors)", err)
	}
	if d.maxSmem, err = dev.Attribute(attrMaxSharedMemoryPerBlockOptin); err != nil {
		return nil, wrap("cuDeviceGetAttribute(shared memory per block)", err)
	}
	if d.total, err = dev.TotalMem(); err != nil {
		return nil, wrap("cuDeviceTotalMem", err)
	}
	if d.cc < 80 {
		return nil, fmt.Errorf("cuda: device %d (%s) has compute capability %d.%d; ptqgate's kernels need 8.0 (Ampere) or newer", ord, d.name, major, minor)
	}
	if d.ctx, err = dev.RetainPrimaryCtx(); err != nil {
		return nil, wrap("cuDevicePrimaryCtxRetain", err)
	}
	b.cur = -1
	b.devs = append(b.devs, d) // temporarily, so use() can find it
	err = b.use(idx)
	b.devs = b.devs[:len(b.devs)-1]
	if err != nil {
		return nil, err
	}
	for _, m := range mods {
		if cc := m.Header.ComputeCapability(); cc > d.cc {
			for _, k := range kernelNames[m.Name] {
				d.missing[k] = fmt.Sprintf("%s.ptx targets compute capability %d.%d, device %d has %d.%d", m.Name, cc/10, cc%10, ord, major, minor)
			}
			continue
		}
		mod, err := loadModule(m.Name+".ptx", m.PTX)
		if err != nil {
			return nil, err
		}
		d.mods = append(d.mods, mod)
		for _, k := range kernelNames[m.Name] {
			f, err := mod.Function(k)
			if err != nil {
				return nil, wrap("cuModuleGetFunction("+k+")", err)
			}
			d.fns[k] = f
		}
	}
	if err := setMaxDynamicSmem("gemm_bf16_tc", d.fns["gemm_bf16_tc"], tcSmem); err != nil {
		return nil, err
	}
	if err := setMaxDynamicSmem("attn_ref", d.fns["attn_ref"], d.maxSmem-1024); err != nil {
		return nil, err
	}
	if err := setMaxDynamicSmem("gated_delta_rule", d.fns["gated_delta_rule"], d.maxSmem-1024); err != nil {
		return nil, err
	}
	if d.stream, err = cu.MakeStream(cu.NonBlocking); err != nil {
		return nil, wrap("cuStreamCreate", err)
	}
	if d.pool, err = newMemPool(ord); err != nil {
		return nil, err
	}
	if d.ring, err = newHostRing(4, 16<<20, d.stream); err != nil {
		return nil, err
	}
	if d.arena, err = newArena(64<<20, d.stream); err != nil {
		return nil, err
	}
	free, _, err := cu.MemInfo()
	if err != nil {
		return nil, wrap("cuMemGetInfo", err)
	}
	reserve := b.opt.Reserve
	if reserve == 0 {
		reserve = max(8<<30, d.total*15/100)
	}
	d.budget = b.opt.WeightBudget
	if d.budget == 0 {
		d.budget = max(0, free-reserve)
	}
	return d, nil
}

// kernelNames lists the kernels of each PTX module.
var kernelNames = map[string][]string{
	"gemm":      {"gemm_bf16_tc", "gemm_f32"},
	"attention": {"attn_bf16_d64", "attn_bf16_d128", "attn_ref"},
	"ops": {"convert", "rmsnorm", "rope", "silu_mul", "add", "scale_rows", "gather_rows", "gather_rows_x16",
		"scatter_add_rows", "router_topk", "amax_tensor", "amax_rows", "amax_cols", "amax_blocks",
		"silu_mul_bf16x8", "add_bf16x8", "scale_rows_bf16x8", "scatter_add_rows_bf16x8"},
	"quant":    {"fp8_quantize", "nvfp4_quantize"},
	"deltanet": {"causal_conv1d_silu", "deltanet_l2norm", "gated_delta_rule", "gated_rmsnorm", "sigmoid_mul"},
}

// fn returns a kernel of device d.
func (d *device) fn(name string) (cu.Function, error) {
	if f, ok := d.fns[name]; ok {
		return f, nil
	}
	if why, ok := d.missing[name]; ok {
		return cu.Function{}, fmt.Errorf("cuda: kernel %s is unavailable: %s", name, why)
	}
	return cu.Function{}, fmt.Errorf("cuda: no kernel %s", name)
}

// Name implements backend.Backend: "cuda:0 NVIDIA H100 80GB HBM3".
func (b *Backend) Name() string {
	parts := make([]string, len(b.devs))
	for i, d := range b.devs {
		parts[i] = fmt.Sprintf("cuda:%d %s", d.ordinal, d.name)
	}
	return strings.Join(parts, " + ")
}

// Devices returns the number of devices in use.
func (b *Backend) Devices() int { return len(b.devs) }

// Alloc implements backend.Backend. Device memory is taken by the first
// operation that uses the tensor.
func (b *Backend) Alloc(rows, cols int) (backend.Tensor, error) {
	if rows < 0 || cols < 0 {
		return nil, backend.ShapeError("alloc", "negative shape [%d, %d]", rows, cols)
	}
	if b.closed.Load() {
		return nil, errClosed
	}
	return &Tensor{rows: rows, cols: cols, buf: &buffer{rows: rows, cols: cols}}, nil
}

// View implements backend.Backend.
func (b *Backend) View(t backend.Tensor, row0, row1 int) (backend.Tensor, error) {
	c, err := b.tensor("view", t)
	if err != nil {
		return nil, err
	}
	if row0 < 0 || row1 < row0 || row1 > c.rows {
		return nil, backend.ShapeError("view", "rows [%d, %d) of a tensor with %d rows", row0, row1, c.rows)
	}
	return &Tensor{rows: row1 - row0, cols: c.cols, row0: c.row0 + row0, buf: c.buf, view: true}, nil
}

// tensor unwraps a tensor made by this backend.
func (b *Backend) tensor(op string, t backend.Tensor) (*Tensor, error) {
	c, ok := t.(*Tensor)
	if !ok || c == nil {
		return nil, fmt.Errorf("%s: tensor %T was not made by the CUDA backend", op, t)
	}
	return c, nil
}

func (b *Backend) tensors(op string, ts ...backend.Tensor) ([]*Tensor, error) {
	out := make([]*Tensor, len(ts))
	for i, t := range ts {
		c, err := b.tensor(op, t)
		if err != nil {
			return nil, err
		}
		out[i] = c
	}
	return out, nil
}

// Free implements backend.Backend. The memory returns to the device's
// pool once the work queued before is done.
func (b *Backend) Free(t backend.Tensor) {
	c, ok := t.(*Tensor)
	if !ok || c == nil || c.view || b.closed.Load() {
		return
	}
	// Free cannot report errors; a failure is reported by the next call
	// (posted), and Close releases the pool in any case.
	_ = b.post(func() error { return b.release(c.buf) })
}

// release frees a buffer's device memory (worker).
func (b *Backend) release(bf *buffer) error {
	if bf.freed {
		return nil
	}
	bf.freed = true
	if bf.stream != nil {
		return b.devs[bf.dev].streamer.drop(bf)
	}
	if !bf.materialized || bf.ptr == 0 {
		return nil
	}
	d := b.devs[bf.dev]
	if bf.weight {
		d.resident -= bf.bytes()
		b.resetFill()
	}
	if err := b.use(d.idx); err != nil {
		return err
	}
	err := freeAsync(bf.ptr, d.stream)
	bf.ptr = 0
	return err
}

// resetFill starts filling devices from the first again once no resident
// weight is left (a model released and prepared again).
func (b *Backend) resetFill() {
	for _, d := range b.devs {
		if d.resident > 0 {
			return
		}
	}
	b.fill = 0
}

// Close implements backend.Backend: it waits for queued work, stops the
// copiers and releases pools, streams, pinned memory and contexts.
func (b *Backend) Close() error {
	b.closeMu.Lock()
	defer b.closeMu.Unlock()
	if b.closed.Load() {
		return nil
	}
	done := make(chan error, 1)
	b.reqs <- request{fn: b.teardown, done: done, always: true}
	err := <-done
	b.shutdown()
	if err != nil {
		return err
	}
	return b.failure()
}

func (b *Backend) shutdown() {
	if b.closed.Swap(true) {
		return
	}
	close(b.reqs)
	b.wg.Wait()
}

// teardown runs on the worker.
func (b *Backend) teardown() error {
	var errs []error
	for _, d := range b.devs {
		if d.streamer != nil {
			errs = append(errs, d.streamer.stop())
		}
	}
	for _, d := range b.devs {
		if err := b.use(d.idx); err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, wrap("cuStreamSynchronize", d.stream.Synchronize()))
		errs = append(errs, d.ring.close(), d.arena.close())
		for _, r := range d.rope {
			errs = append(errs, freeAsync(r.cos, d.stream), freeAsync(r.sin, d.stream))
		}
		if d.pos.ptr != 0 {
			errs = append(errs, freeAsync(d.pos.ptr, d.stream))
		}
		errs = append(errs, wrap("cuStreamSynchronize", d.stream.Synchronize()))
		errs = append(errs, d.pool.destroy())
		errs = append(errs, wrap("cuStreamDestroy", d.stream.Destroy()))
		for _, m := range d.mods {
			errs = append(errs, wrap("cuModuleUnload", m.Unload()))
		}
	}
	if len(b.devs) > 0 {
		if err := b.use(0); err == nil {
			errs = append(errs, b.destroyProfileEvents())
		}
	}
	for _, d := range b.devs {
		errs = append(errs, wrap("cuDevicePrimaryCtxRelease", d.dev.ReleasePrimaryCtx()))
	}
	return errors.Join(errs...)
}

// sync waits for every device's queued work (worker).
func (b *Backend) sync() error {
	for _, d := range b.devs {
		if err := b.use(d.idx); err != nil {
			return err
		}
		if err := d.stream.Synchronize(); err != nil {
			return wrap("cuStreamSynchronize", err)
		}
	}
	return nil
}

// Synchronize waits until every operation queued so far has finished on
// the GPUs (timings, tests).
func (b *Backend) Synchronize() error { return b.run(b.sync) }
