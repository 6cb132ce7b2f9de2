//go:build cuda

package cuda

import (
	"errors"
	"sort"
	"time"

	"gorgonia.org/cu"
)

// ProfileEntry is the time spent in one kernel or operation.
type ProfileEntry struct {
	// Name is a kernel name ("gemm_bf16_tc") or, for worker time, an
	// operation name prefixed with "op:" ("op:router top-k").
	Name  string
	Calls int
	// Milliseconds is GPU time for kernels (CUDA events around each
	// launch) and worker wall time for operations (including waits for
	// results).
	Milliseconds float64
}

type kernelMark struct {
	name       string
	start, end cu.Event
	dev        int
}

// profiler state (worker).
type profiling struct {
	on     bool
	marks  []kernelMark
	free   []cu.Event
	ops    map[string]time.Duration
	opsN   map[string]int
	kernel map[string]float64
	kernN  map[string]int
	// gaps sums the GPU idle time between consecutive kernels of a
	// device, by "previous kernel → next kernel".
	gaps  map[string]float64
	gapsN map[string]int
}

// SetProfiling turns the per-kernel and per-operation timing on or off
// and clears what was collected.
func (b *Backend) SetProfiling(on bool) error {
	return b.run(func() error {
		if err := b.collectMarks(); err != nil {
			return err
		}
		b.prof.on = on
		b.prof.ops, b.prof.opsN = map[string]time.Duration{}, map[string]int{}
		b.prof.kernel, b.prof.kernN = map[string]float64{}, map[string]int{}
		b.prof.gaps, b.prof.gapsN = map[string]float64{}, map[string]int{}
		return nil
	})
}

// Profile returns the times collected since SetProfiling(true), longest
// first (after the queued work has finished).
func (b *Backend) Profile() ([]ProfileEntry, error) {
	var out []ProfileEntry
	err := b.run(func() error {
		if err := b.sync(); err != nil {
			return err
		}
		if err := b.collectMarks(); err != nil {
			return err
		}
		for k, v := range b.prof.kernel {
			out = append(out, ProfileEntry{Name: k, Calls: b.prof.kernN[k], Milliseconds: v})
		}
		for k, v := range b.prof.ops {
			out = append(out, ProfileEntry{Name: "op:" + k, Calls: b.prof.opsN[k], Milliseconds: v.Seconds() * 1e3})
		}
		for k, v := range b.prof.gaps {
			out = append(out, ProfileEntry{Name: "idle:" + k, Calls: b.prof.gapsN[k], Milliseconds: v})
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Milliseconds > out[j].Milliseconds })
	return out, err
}

// mark returns an event for profiling (worker).
func (b *Backend) markEvent() (cu.Event, error) {
	if k := len(b.prof.free); k > 0 {
		ev := b.prof.free[k-1]
		b.prof.free = b.prof.free[:k-1]
		return ev, nil
	}
	ev, err := cu.MakeEvent(cu.DefaultEvent)
	return ev, wrap("cuEventCreate", err)
}

// collectMarks folds finished kernel marks into the totals (worker; the
// streams must have been synchronised).
func (b *Backend) collectMarks() error {
	var errs []error
	// GPU idle time between consecutive kernels of one device.
	var prev *kernelMark
	for i := range b.prof.marks {
		m := &b.prof.marks[i]
		if prev != nil && prev.dev == m.dev && b.prof.gaps != nil {
			if err := b.use(m.dev); err != nil {
				return err
			}
			if err := m.start.Synchronize(); err == nil {
				if gap, err := prev.end.Elapsed(m.start); err == nil && gap > 0 {
					key := prev.name + " → " + m.name
					b.prof.gaps[key] += gap
					b.prof.gapsN[key]++
				}
			}
		}
		prev = m
	}
	for _, m := range b.prof.marks {
		if err := b.use(m.dev); err != nil {
			return err
		}
		if err := m.end.Synchronize(); err != nil {
			errs = append(errs, wrap("cuEventSynchronize(profile)", err))
			continue
		}
		ms, err := m.start.Elapsed(m.end)
		if err != nil {
			errs = append(errs, wrap("cuEventElapsedTime", err))
			continue
		}
		b.prof.kernel[m.name] += ms
		b.prof.kernN[m.name]++
		b.prof.free = append(b.prof.free, m.start, m.end)
	}
	b.prof.marks = b.prof.marks[:0]
	return errors.Join(errs...)
}

func (b *Backend) destroyProfileEvents() error {
	var errs []error
	for _, m := range b.prof.marks {
		b.prof.free = append(b.prof.free, m.start, m.end)
	}
	b.prof.marks = nil
	for i := range b.prof.free {
		errs = append(errs, wrap("cuEventDestroy", cu.DestroyEvent(&b.prof.free[i])))
	}
	b.prof.free = nil
	return errors.Join(errs...)
}
