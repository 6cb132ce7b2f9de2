//go:build cuda

package cuda

import (
	"errors"
	"fmt"
	"unsafe"

	"gorgonia.org/cu"

	"github.com/ptqgate/ptqgate/ptqcore/backend"
)

// hostRing is a set of page-locked staging slots used round-robin for
// host↔device copies on one stream; a slot is reused once the copy that
// last used it has finished.
type hostRing struct {
	slots  [][]byte
	events []cu.Event
	inUse  []bool
	next   int
	stream cu.Stream
}

func newHostRing(n, size int, s cu.Stream) (*hostRing, error) {
	r := &hostRing{stream: s}
	for i := 0; i < n; i++ {
		b, err := hostAlloc(size)
		if err != nil {
			return nil, errors.Join(err, r.close())
		}
		ev, err := cu.MakeEvent(cu.DisableTiming)
		if err != nil {
			return nil, errors.Join(wrap("cuEventCreate", err), hostFree(b), r.close())
		}
		r.slots = append(r.slots, b)
		r.events = append(r.events, ev)
		r.inUse = append(r.inUse, false)
	}
	return r, nil
}

func (r *hostRing) slotSize() int { return len(r.slots[0]) }

// acquire returns the next free slot, waiting for its previous copy.
func (r *hostRing) acquire() (int, []byte, error) {
	i := r.next
	r.next = (r.next + 1) % len(r.slots)
	if r.inUse[i] {
		if err := r.events[i].Synchronize(); err != nil {
			return 0, nil, wrap("cuEventSynchronize(staging slot)", err)
		}
		r.inUse[i] = false
	}
	return i, r.slots[i], nil
}

// release marks slot i as used by the copies queued so far.
func (r *hostRing) release(i int) error {
	if err := r.events[i].Record(r.stream); err != nil {
		return wrap("cuEventRecord(staging slot)", err)
	}
	r.inUse[i] = true
	return nil
}

// toDevice copies n bytes to dst through the slots; fill writes bytes
// [off, off+len(slot)) of the source into the slot.
func (r *hostRing) toDevice(dst cu.DevicePtr, n int64, fill func(slot []byte, off int64)) error {
	size := int64(r.slotSize())
	for off := int64(0); off < n; off += size {
		c := min(size, n-off)
		i, slot, err := r.acquire()
		if err != nil {
			return err
		}
		fill(slot[:c], off)
		if err := cu.MemcpyHtoDAsync(dst+cu.DevicePtr(off), unsafe.Pointer(&slot[0]), c, r.stream); err != nil {
			return wrap("cuMemcpyHtoDAsync", err)
		}
		if err := r.release(i); err != nil {
			return err
		}
	}
	return nil
}

// toHost copies n bytes from src through the slots, handing each chunk to
// consume once it has arrived.
func (r *hostRing) toHost(src cu.DevicePtr, n int64, consume func(chunk []byte, off int64)) error {
	size := int64(r.slotSize())
	for off := int64(0); off < n; off += size {
		c := min(size, n-off)
		i, slot, err := r.acquire()
		if err != nil {
			return err
		}
		if err := cu.MemcpyDtoHAsync(unsafe.Pointer(&slot[0]), src+cu.DevicePtr(off), c, r.stream); err != nil {
			return wrap("cuMemcpyDtoHAsync", err)
		}
		if err := r.release(i); err != nil {
			return err
		}
		if err := r.events[i].Synchronize(); err != nil {
			return wrap("cuEventSynchronize(download)", err)
		}
		r.inUse[i] = false
		consume(slot[:c], off)
	}
	return nil
}

func (r *hostRing) close() error {
	var errs []error
	for i := range r.slots {
		if r.inUse[i] {
			errs = append(errs, wrap("cuEventSynchronize", r.events[i].Synchronize()))
		}
		errs = append(errs, wrap("cuEventDestroy", cu.DestroyEvent(&r.events[i])), hostFree(r.slots[i]))
	}
	r.slots, r.events, r.inUse = nil, nil, nil
	return errors.Join(errs...)
}

// arena stages the small host→device copies of operations (indices,
// scales, tile lists) in one page-locked buffer used as a ring: a region
// is reused once the copy that read it has finished, so the worker waits
// only when the GPU lags a whole buffer behind.
type arena struct {
	buf      []byte
	head     int
	inflight []region
	events   []cu.Event // free events
	stream   cu.Stream
}

type region struct {
	start, end int
	ev         cu.Event
}

func newArena(size int, s cu.Stream) (*arena, error) {
	b, err := hostAlloc(size)
	if err != nil {
		return nil, err
	}
	return &arena{buf: b, stream: s}, nil
}

// copyToDevice stages src and queues its copy to dst on the arena's stream.
func (a *arena) copyToDevice(dst cu.DevicePtr, src []byte) error {
	n := (len(src) + 255) &^ 255
	if n > len(a.buf) {
		return fmt.Errorf("staging %d bytes: more than the %d-byte arena", len(src), len(a.buf))
	}
	if a.head+n > len(a.buf) {
		a.head = 0
	}
	start, end := a.head, a.head+n
	// Regions complete in order (one stream): wait for the newest one
	// that overlaps, which retires every older one too.
	last := -1
	for i, r := range a.inflight {
		if r.start < end && start < r.end {
			last = i
		}
	}
	if last >= 0 {
		if err := a.inflight[last].ev.Synchronize(); err != nil {
			return wrap("cuEventSynchronize(staging)", err)
		}
		for _, r := range a.inflight[:last+1] {
			a.events = append(a.events, r.ev)
		}
		a.inflight = append(a.inflight[:0], a.inflight[last+1:]...)
	}
	copy(a.buf[start:], src)
	if err := cu.MemcpyHtoDAsync(dst, unsafe.Pointer(&a.buf[start]), int64(len(src)), a.stream); err != nil {
		return wrap("cuMemcpyHtoDAsync", err)
	}
	var ev cu.Event
	if k := len(a.events); k > 0 {
		ev, a.events = a.events[k-1], a.events[:k-1]
	} else {
		var err error
		if ev, err = cu.MakeEvent(cu.DisableTiming); err != nil {
			return wrap("cuEventCreate", err)
		}
	}
	if err := ev.Record(a.stream); err != nil {
		return wrap("cuEventRecord(staging)", err)
	}
	a.inflight = append(a.inflight, region{start, end, ev})
	a.head = end
	return nil
}

func (a *arena) close() error {
	var errs []error
	for _, r := range a.inflight {
		errs = append(errs, wrap("cuEventSynchronize", r.ev.Synchronize()))
		a.events = append(a.events, r.ev)
	}
	for i := range a.events {
		errs = append(errs, wrap("cuEventDestroy", cu.DestroyEvent(&a.events[i])))
	}
	a.inflight, a.events = nil, nil
	errs = append(errs, hostFree(a.buf))
	a.buf = nil
	return errors.Join(errs...)
}

// temp is device memory for one operation, returned to the pool (stream
// ordered) after the operation is queued.
type temp struct {
	d   *device
	ptr cu.DevicePtr
}

// alloc takes n bytes (at least 16) from device d's pool for work on its stream.
func (b *Backend) alloc(d *device, n int64) (cu.DevicePtr, error) {
	p, err := d.pool.alloc(max(n, 16), d.stream)
	if err != nil {
		return 0, fmt.Errorf("device %d: %w", d.ordinal, err)
	}
	return p, nil
}

// op collects what one operation must release after it is queued:
// temporaries and pins on streamed weights.
type op struct {
	b     *Backend
	name  string
	temps []temp
	pins  []*buffer
}

func (b *Backend) newOp(name string) *op { return &op{b: b, name: name} }

// finish releases the temporaries and pins; the first error wins.
func (o *op) finish(err *error) {
	for _, t := range o.temps {
		e := o.b.use(t.d.idx)
		if e == nil {
			e = freeAsync(t.ptr, t.d.stream)
		}
		if e != nil && *err == nil {
			*err = fmt.Errorf("%s: %w", o.name, e)
		}
	}
	for _, bf := range o.pins {
		o.b.devs[bf.dev].streamer.unpin(bf)
	}
}

// scratch takes n bytes of device memory for the operation.
func (o *op) scratch(d *device, n int64) (cu.DevicePtr, error) {
	p, err := o.b.alloc(d, n)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", o.name, err)
	}
	o.temps = append(o.temps, temp{d, p})
	return p, nil
}

// upload32 copies 32-bit words (int32, uint32 or float32 bit patterns) to
// scratch memory of the operation.
func (o *op) upload32(d *device, words []uint32) (cu.DevicePtr, error) {
	p, err := o.scratch(d, int64(4*len(words)))
	if err != nil || len(words) == 0 {
		return p, err
	}
	src := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), 4*len(words))
	if len(src) <= len(d.arena.buf)/4 {
		err = d.arena.copyToDevice(p, src)
	} else {
		err = d.ring.toDevice(p, int64(len(src)), func(slot []byte, off int64) { copy(slot, src[off:]) })
	}
	if err != nil {
		return 0, fmt.Errorf("%s: %w", o.name, err)
	}
	return p, nil
}

func (o *op) uploadI32(d *device, v []int32) (cu.DevicePtr, error) {
	if len(v) == 0 {
		return o.upload32(d, nil)
	}
	return o.upload32(d, unsafe.Slice((*uint32)(unsafe.Pointer(&v[0])), len(v)))
}

func (o *op) uploadF32(d *device, v []float32) (cu.DevicePtr, error) {
	if len(v) == 0 {
		return o.upload32(d, nil)
	}
	return o.upload32(d, unsafe.Slice((*uint32)(unsafe.Pointer(&v[0])), len(v)))
}

// zeros32 takes n zeroed 32-bit words of scratch memory.
func (o *op) zeros32(d *device, n int) (cu.DevicePtr, error) {
	p, err := o.scratch(d, int64(4*n))
	if err != nil {
		return 0, err
	}
	if err := cu.MemsetD8Async(p, 0, int64(4*max(n, 4)), d.stream); err != nil {
		return 0, fmt.Errorf("%s: cuMemsetD8Async: %w", o.name, err)
	}
	return p, nil
}

// download32 copies n 32-bit words back to the host (waits for the work
// queued before).
func (o *op) download32(d *device, p cu.DevicePtr, n int) ([]uint32, error) {
	out := make([]uint32, n)
	if n == 0 {
		return out, nil
	}
	dst := unsafe.Slice((*byte)(unsafe.Pointer(&out[0])), 4*n)
	if err := d.ring.toHost(p, int64(len(dst)), func(c []byte, off int64) { copy(dst[off:], c) }); err != nil {
		return nil, fmt.Errorf("%s: %w", o.name, err)
	}
	return out, nil
}

// ptrOf returns the device address of the tensor's first row.
func ptrOf(t *Tensor, base cu.DevicePtr) cu.DevicePtr {
	return base + cu.DevicePtr(int64(t.row0)*int64(t.cols)*t.buf.st.size())
}

// materialize gives an untouched buffer device memory on device d in
// storage st, zero-filled unless the caller overwrites all of it.
func (b *Backend) materialize(o *op, bf *buffer, d int, st storage, zero bool) error {
	dev := b.devs[d]
	bf.st, bf.dev = st, d
	p, err := b.alloc(dev, bf.bytes())
	if err != nil {
		return fmt.Errorf("%s: %w", o.name, err)
	}
	bf.ptr, bf.materialized = p, true
	if zero && bf.bytes() > 0 {
		if err := cu.MemsetD8Async(p, 0, bf.bytes(), dev.stream); err != nil {
			return fmt.Errorf("%s: cuMemsetD8Async: %w", o.name, err)
		}
	}
	return nil
}

// in makes t readable on device d (d < 0: where it is) and returns its
// address and storage. Streamed weights are uploaded if needed and pinned
// until the operation finishes.
func (o *op) in(t *Tensor, d int) (cu.DevicePtr, storage, int, error) {
	b, bf := o.b, t.buf
	if bf.freed {
		return 0, 0, 0, fmt.Errorf("%s: tensor used after Free", o.name)
	}
	if bf.stream != nil {
		if d >= 0 && d != bf.dev {
			return 0, 0, 0, fmt.Errorf("%s: a weight streamed to device %d is needed on device %d", o.name, b.devs[bf.dev].ordinal, b.devs[d].ordinal)
		}
		if err := b.use(bf.dev); err != nil {
			return 0, 0, 0, err
		}
		p, err := b.devs[bf.dev].streamer.ensure(bf)
		if err != nil {
			return 0, 0, 0, fmt.Errorf("%s: %w", o.name, err)
		}
		o.pins = append(o.pins, bf)
		return ptrOf(t, p), bf.st, bf.dev, nil
	}
	if !bf.materialized {
		if d < 0 {
			d = 0
		}
		if err := b.use(d); err != nil {
			return 0, 0, 0, err
		}
		if err := b.materialize(o, bf, d, stF32, true); err != nil {
			return 0, 0, 0, err
		}
	}
	if d >= 0 && bf.dev != d {
		if err := b.migrate(o, bf, d, true); err != nil {
			return 0, 0, 0, err
		}
	}
	if err := b.use(bf.dev); err != nil {
		return 0, 0, 0, err
	}
	return ptrOf(t, bf.ptr), bf.st, bf.dev, nil
}

// out makes t writable on device d by an operation that rounds to dt and
// returns its address and storage. overwrite says the operation writes
// every element of t; reads lists the operation's inputs (an output that
// aliases one is never treated as overwritten before it is read).
func (o *op) out(t *Tensor, d int, dt backend.DType, overwrite bool, reads ...*Tensor) (cu.DevicePtr, storage, error) {
	b, bf := o.b, t.buf
	if bf.freed {
		return 0, 0, fmt.Errorf("%s: tensor used after Free", o.name)
	}
	if bf.stream != nil {
		return 0, 0, fmt.Errorf("%s: writing into a streamed weight is not supported", o.name)
	}
	for _, r := range reads {
		if r != nil && r.buf == bf {
			overwrite = false
		}
	}
	if err := b.use(d); err != nil {
		return 0, 0, err
	}
	switch {
	case !bf.materialized:
		st := stF32
		if dt == backend.BF16 {
			st = stBF16
		}
		if err := b.materialize(o, bf, d, st, !(overwrite && t.whole())); err != nil {
			return 0, 0, err
		}
	case bf.dev != d:
		if err := b.migrate(o, bf, d, !(overwrite && t.whole())); err != nil {
			return 0, 0, err
		}
	}
	if bf.st == stBF16 && dt != backend.BF16 {
		if err := b.widen(o, bf); err != nil {
			return 0, 0, err
		}
	}
	if bf.weight {
		// A weight written by an operation is no longer the uploaded data.
		bf.weight = false
		b.devs[bf.dev].resident -= bf.bytes()
	}
	bf.version++
	return ptrOf(t, bf.ptr), bf.st, nil
}

// widen converts a bfloat16 buffer to float32 storage in place (an
// operation that does not round to bfloat16 writes into it).
func (b *Backend) widen(o *op, bf *buffer) error {
	d := b.devs[bf.dev]
	n := int64(bf.rows) * int64(bf.cols)
	p, err := b.alloc(d, 4*n)
	if err != nil {
		return fmt.Errorf("%s: %w", o.name, err)
	}
	if n > 0 {
		if err := b.launchConvert(d, bf.ptr, stBF16, p, stF32, n); err != nil {
			return fmt.Errorf("%s: %w", o.name, err)
		}
	}
	if err := freeAsync(bf.ptr, d.stream); err != nil {
		return fmt.Errorf("%s: %w", o.name, err)
	}
	bf.ptr, bf.st = p, stF32
	return nil
}

// migrate moves a buffer to device d (copying its contents when keep).
func (b *Backend) migrate(o *op, bf *buffer, d int, keep bool) error {
	src, dst := b.devs[bf.dev], b.devs[d]
	n := bf.bytes()
	if err := b.use(d); err != nil {
		return err
	}
	p, err := b.alloc(dst, n)
	if err != nil {
		return fmt.Errorf("%s: %w", o.name, err)
	}
	if keep && n > 0 {
		// dst's stream waits for src's work, copies, then src's stream
		// waits for the copy before the old memory is released.
		if err := b.crossWait(src, dst); err != nil {
			return err
		}
		if err := cu.MemcpyPeerAsync(p, dst.ctx, bf.ptr, src.ctx, n, dst.stream); err != nil {
			return fmt.Errorf("%s: cuMemcpyPeerAsync: %w", o.name, err)
		}
		if err := b.crossWait(dst, src); err != nil {
			return err
		}
	}
	if err := b.use(src.idx); err != nil {
		return err
	}
	if err := freeAsync(bf.ptr, src.stream); err != nil {
		return fmt.Errorf("%s: %w", o.name, err)
	}
	bf.ptr, bf.dev = p, d
	return b.use(d)
}

// crossWait makes the stream of device to wait for the work queued so far
// on the stream of device from.
func (b *Backend) crossWait(from, to *device) error {
	if from == to {
		return nil
	}
	if err := b.use(from.idx); err != nil {
		return err
	}
	ev, err := cu.MakeEvent(cu.DisableTiming)
	if err != nil {
		return wrap("cuEventCreate", err)
	}
	defer cu.DestroyEvent(&ev)
	if err := ev.Record(from.stream); err != nil {
		return wrap("cuEventRecord", err)
	}
	if err := to.stream.Wait(ev, 0); err != nil {
		return wrap("cuStreamWaitEvent", err)
	}
	return nil
}

// Stats are the backend's memory figures for one device.
type Stats struct {
	Device string
	// PoolReservedHigh and PoolUsedHigh are the device memory pool's
	// high-water marks since the backend started or ResetStats: memory
	// reserved from the device and memory handed out, in bytes. Every
	// device allocation of the backend (weights, activations,
	// temporaries) comes from the pool.
	PoolReservedHigh, PoolUsedHigh int64
	// PoolReserved and PoolUsed are the current values.
	PoolReserved, PoolUsed int64
	// ResidentWeights are the bytes of resident (not streamed) weights;
	// StreamedWeights the bytes of weights that stream, StreamWindow the
	// window they stream through (0 when nothing streams).
	ResidentWeights, StreamedWeights, StreamWindow int64
	// Uploads counts streamed-weight uploads and UploadedBytes their size.
	Uploads, UploadedBytes int64
	// DeviceUsed is total − free from cuMemGetInfo (every process and
	// context on the GPU), DeviceTotal the GPU's memory.
	DeviceUsed, DeviceTotal int64
}

// Stats returns the memory figures of every device (after the queued work
// has finished).
func (b *Backend) Stats() ([]Stats, error) {
	var out []Stats
	err := b.run(func() error {
		if err := b.sync(); err != nil {
			return err
		}
		for _, d := range b.devs {
			if err := b.use(d.idx); err != nil {
				return err
			}
			s := Stats{Device: fmt.Sprintf("cuda:%d %s", d.ordinal, d.name), ResidentWeights: d.resident}
			var err error
			for _, x := range []struct {
				attr int
				dst  *int64
			}{{poolReservedHigh, &s.PoolReservedHigh}, {poolUsedHigh, &s.PoolUsedHigh}, {poolReservedCurrent, &s.PoolReserved}, {poolUsedCurrent, &s.PoolUsed}} {
				if *x.dst, err = d.pool.attr(x.attr); err != nil {
					return err
				}
			}
			if d.streamer != nil {
				s.StreamedWeights, s.StreamWindow, s.Uploads, s.UploadedBytes = d.streamer.stats()
			}
			free, total, err := cu.MemInfo()
			if err != nil {
				return wrap("cuMemGetInfo", err)
			}
			s.DeviceUsed, s.DeviceTotal = total-free, total
			out = append(out, s)
		}
		return nil
	})
	return out, err
}

// ResetStats restarts the pools' high-water marks (after the queued work
// has finished) and returns unused pool memory to the devices.
func (b *Backend) ResetStats() error {
	return b.run(func() error {
		if err := b.sync(); err != nil {
			return err
		}
		for _, d := range b.devs {
			if err := b.use(d.idx); err != nil {
				return err
			}
			if err := d.pool.trim(); err != nil {
				return err
			}
			if err := d.pool.resetHigh(); err != nil {
				return err
			}
		}
		return nil
	})
}
