//go:build cuda

package cuda

import (
	"errors"
	"fmt"
	"runtime"
	"sync"

	"gorgonia.org/cu"
)

// streamed is the host side of one streamed weight.
type streamed struct {
	buf   *buffer
	host  []float32
	ptr   cu.DevicePtr // valid while resident
	ready cu.Event     // recorded on the copy stream after the upload
	// waited is true once the compute stream waits for ready.
	waited bool
	dead   bool
}

// streamer uploads one device's streamed weights ahead of their use on a
// copy stream, from a goroutine of its own (locked to an OS thread with
// the device's context current), and evicts them least recently used
// first so that they stay within the window. The worker asks for a weight
// with ensure, which also moves the prefetch cursor.
type streamer struct {
	b *Backend
	d *device

	mu     sync.Mutex
	cond   *sync.Cond
	pol    streamPolicy
	items  map[*streamEntry]*streamed
	urgent []*streamEntry
	err    error
	quit   bool
	window int64 // configured window (0: automatic)

	wake  chan struct{}
	done  chan struct{}
	copyS cu.Stream
	ring  *hostRing

	uploads, uploaded, total int64
}

// newStreamer starts the copier of device d (worker).
func (b *Backend) newStreamer(d *device) (*streamer, error) {
	s := &streamer{b: b, d: d, items: map[*streamEntry]*streamed{}, wake: make(chan struct{}, 1), done: make(chan struct{}), window: b.opt.StreamWindow}
	s.cond = sync.NewCond(&s.mu)
	var err error
	if s.copyS, err = cu.MakeStream(cu.NonBlocking); err != nil {
		return nil, wrap("cuStreamCreate(copy)", err)
	}
	if s.ring, err = newHostRing(4, 32<<20, s.copyS); err != nil {
		return nil, errors.Join(err, wrap("cuStreamDestroy", s.copyS.Destroy()))
	}
	started := make(chan error, 1)
	go s.copier(started)
	if err := <-started; err != nil {
		return nil, err
	}
	return s, nil
}

// add registers a weight to stream (worker).
func (s *streamer) add(bf *buffer, host []float32) error {
	ev, err := cu.MakeEvent(cu.DisableTiming)
	if err != nil {
		return wrap("cuEventCreate", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.pol.add(bf.bytes())
	bf.stream = e
	s.items[e] = &streamed{buf: bf, host: host, ready: ev}
	s.total += bf.bytes()
	return nil
}

// setWindow fixes the window once the weights are known (locked).
func (s *streamer) setWindow() {
	if s.pol.window > 0 {
		return
	}
	s.pol.window = s.window
	if s.pol.window == 0 {
		s.pol.window = max(2<<30, 3*s.pol.largest())
	}
}

// ensure returns the device address of a streamed weight, uploading it
// first if needed, and pins it until unpin (worker).
func (s *streamer) ensure(bf *buffer) (cu.DevicePtr, error) {
	s.mu.Lock()
	e := bf.stream
	it := s.items[e]
	s.setWindow()
	s.pol.touch(e)
	asked := false
	for e.state != stateResident && s.err == nil {
		if e.state == stateHost && !asked {
			s.urgent = append(s.urgent, e)
			asked = true
			s.signal()
		}
		s.cond.Wait()
	}
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return 0, err
	}
	e.pins++
	ptr, wait := it.ptr, !it.waited
	it.waited = true
	s.mu.Unlock()
	s.signal() // the cursor moved: prefetch what comes next
	if wait {
		if err := s.d.stream.Wait(it.ready, 0); err != nil {
			return 0, wrap("cuStreamWaitEvent(streamed weight)", err)
		}
	}
	return ptr, nil
}

// unpin ends an operation's use of a streamed weight.
func (s *streamer) unpin(bf *buffer) {
	s.mu.Lock()
	bf.stream.pins--
	s.mu.Unlock()
}

func (s *streamer) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// pick chooses the next upload and makes room for it (locked). It returns
// nil when there is nothing to do now.
func (s *streamer) pick() (*streamEntry, error) {
	s.setWindow()
	var e *streamEntry
	urgent := false
	for len(s.urgent) > 0 && e == nil {
		c := s.urgent[0]
		s.urgent = s.urgent[1:]
		if c.state == stateHost && !s.items[c].dead {
			e, urgent = c, true
		}
	}
	plan := s.pol.plan()
	protected := map[*streamEntry]bool{}
	for _, p := range plan {
		protected[p] = true
	}
	if e == nil {
		for _, p := range plan {
			if p.state == stateHost && !s.items[p].dead {
				e = p
				break
			}
		}
	}
	if e == nil {
		return nil, nil
	}
	protected[e] = true
	victims, ok := s.pol.victims(e.bytes, protected)
	if !ok && !urgent {
		return nil, nil // prefetching would exceed the window: wait
	}
	for _, v := range victims {
		it := s.items[v]
		if err := freeAsync(it.ptr, s.d.stream); err != nil {
			return nil, err
		}
		it.ptr = 0
		v.state = stateHost
		s.pol.used -= v.bytes
	}
	e.state = stateLoading
	s.pol.used += e.bytes
	return e, nil
}

// copier is the upload goroutine.
func (s *streamer) copier(started chan<- error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer close(s.done)
	if err := cu.SetCurrentContext(s.d.ctx); err != nil {
		started <- wrap("cuCtxSetCurrent(copier)", err)
		return
	}
	started <- nil
	for range s.wake {
		for {
			s.mu.Lock()
			if s.quit {
				s.mu.Unlock()
				return
			}
			e, err := s.pick()
			if err != nil {
				s.err = err
				s.cond.Broadcast()
			}
			var it *streamed
			if e != nil {
				it = s.items[e]
			}
			s.mu.Unlock()
			if e == nil {
				break
			}
			ptr, err := s.upload(it)
			s.mu.Lock()
			if err != nil {
				s.err = fmt.Errorf("streaming a weight to device %d: %w", s.d.ordinal, err)
				e.state = stateHost
				s.pol.used -= e.bytes
			} else {
				it.ptr, it.waited = ptr, false
				e.state = stateResident
				s.uploads++
				s.uploaded += e.bytes
				if it.dead {
					// Freed while uploading.
					s.release(e, it)
				}
			}
			s.cond.Broadcast()
			s.mu.Unlock()
		}
	}
}

// upload copies one weight to fresh device memory on the copy stream.
func (s *streamer) upload(it *streamed) (cu.DevicePtr, error) {
	bf := it.buf
	n := bf.bytes()
	ptr, err := s.d.pool.alloc(n, s.copyS)
	if err != nil {
		return 0, err
	}
	fill := fillFunc(bf.st, it.host)
	if err := s.ring.toDevice(ptr, n, fill); err != nil {
		return 0, errors.Join(err, freeAsync(ptr, s.copyS))
	}
	if err := it.ready.Record(s.copyS); err != nil {
		return 0, wrap("cuEventRecord(streamed weight)", err)
	}
	return ptr, nil
}

// fillFunc converts host float32 data into a staging slot in storage st.
func fillFunc(st storage, host []float32) func(slot []byte, off int64) {
	if st == stBF16 {
		return func(slot []byte, off int64) {
			i := off / 2
			packBF16(slot, host[i:i+int64(len(slot))/2])
		}
	}
	return func(slot []byte, off int64) {
		i := off / 4
		packF32(slot, host[i:i+int64(len(slot))/4])
	}
}

// release frees a resident entry's memory (locked).
func (s *streamer) release(e *streamEntry, it *streamed) {
	if e.state == stateResident && it.ptr != 0 {
		if err := freeAsync(it.ptr, s.d.stream); err != nil && s.err == nil {
			s.err = err
		}
		it.ptr = 0
		s.pol.used -= e.bytes
	}
	e.state = stateHost
}

// drop forgets a freed streamed weight (worker).
func (s *streamer) drop(bf *buffer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := bf.stream
	it := s.items[e]
	it.dead = true
	e.dead = true
	s.total -= e.bytes
	if e.state == stateResident {
		s.release(e, it)
	}
	return nil
}

// stats returns the streamed bytes, the window and the upload counters.
func (s *streamer) stats() (streamedBytes, window, uploads, uploaded int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total, s.pol.window, s.uploads, s.uploaded
}

// stop ends the copier and releases its resources (worker).
func (s *streamer) stop() error {
	s.mu.Lock()
	s.quit = true
	s.mu.Unlock()
	close(s.wake)
	<-s.done
	var errs []error
	errs = append(errs, wrap("cuStreamSynchronize(copy)", s.copyS.Synchronize()))
	s.mu.Lock()
	for e, it := range s.items {
		if e.state == stateResident && it.ptr != 0 {
			errs = append(errs, freeAsync(it.ptr, s.d.stream))
			it.ptr = 0
		}
		errs = append(errs, wrap("cuEventDestroy", cu.DestroyEvent(&it.ready)))
	}
	s.mu.Unlock()
	errs = append(errs, s.ring.close(), wrap("cuStreamDestroy(copy)", s.copyS.Destroy()))
	return errors.Join(errs...)
}
