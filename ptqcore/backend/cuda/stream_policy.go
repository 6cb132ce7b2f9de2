package cuda

// The weight-streaming policy, kept free of CUDA so that it is tested
// without a GPU: which streamed weights to upload next and which to evict.

// entryState is where a streamed weight is.
type entryState uint8

const (
	stateHost     entryState = iota // only in host memory
	stateLoading                    // an upload is queued or running
	stateResident                   // on the device
)

// streamEntry is one streamed weight of one device.
type streamEntry struct {
	id    int   // upload order on the device
	bytes int64 // device bytes
	state entryState
	// pins counts operations being queued that read the entry; a pinned
	// entry is never evicted.
	pins int
	// lastUse is the policy tick of the last use.
	lastUse uint64
	// next is the streamed weight used after this one the last time the
	// forward went past it (nil until learned).
	next *streamEntry
	// dead marks a freed weight: never planned, never uploaded again.
	dead bool
}

// streamPolicy decides uploads and evictions for one device's streamed
// weights. It is not safe for concurrent use; the backend guards it.
type streamPolicy struct {
	window  int64 // device bytes the streamed weights may occupy
	used    int64 // bytes of resident and loading entries
	entries []*streamEntry
	tick    uint64
	cursor  *streamEntry // the entry used last
}

// add registers a new streamed weight (in upload order).
func (p *streamPolicy) add(bytes int64) *streamEntry {
	e := &streamEntry{id: len(p.entries), bytes: bytes}
	p.entries = append(p.entries, e)
	return e
}

// largest returns the size of the largest streamed weight.
func (p *streamPolicy) largest() int64 {
	var m int64
	for _, e := range p.entries {
		m = max(m, e.bytes)
	}
	return m
}

// touch records a use of e: it learns e as the successor of the previous
// entry used and makes e the cursor.
func (p *streamPolicy) touch(e *streamEntry) {
	p.tick++
	e.lastUse = p.tick
	if p.cursor != nil && p.cursor != e {
		p.cursor.next = e
	}
	p.cursor = e
}

// successor returns the entry expected after e: the learned one, else the
// next in upload order (wrapping around).
func (p *streamPolicy) successor(e *streamEntry) *streamEntry {
	if e.next != nil {
		return e.next
	}
	if len(p.entries) == 0 {
		return nil
	}
	return p.entries[(e.id+1)%len(p.entries)]
}

// plan returns the entries expected from the cursor on (the cursor
// first) whose sizes together fit the window: what should be on the
// device now and next. Entries already in the plan end it (a cycle).
func (p *streamPolicy) plan() []*streamEntry {
	if p.cursor == nil {
		return nil
	}
	var out []*streamEntry
	seen := map[*streamEntry]bool{}
	var total int64
	for e := p.cursor; e != nil && !seen[e] && !e.dead; e = p.successor(e) {
		if total+e.bytes > p.window && len(out) > 0 {
			break
		}
		seen[e] = true
		out = append(out, e)
		total += e.bytes
	}
	return out
}

// victims returns resident entries to evict, least recently used first,
// so that need more bytes fit the window: entries that are pinned or
// protected stay. ok is false when evicting every candidate is not
// enough (the caller may then exceed the window or wait).
func (p *streamPolicy) victims(need int64, protected map[*streamEntry]bool) (out []*streamEntry, ok bool) {
	free := p.window - p.used
	if need <= free {
		return nil, true
	}
	var cands []*streamEntry
	for _, e := range p.entries {
		if e.state == stateResident && e.pins == 0 && !protected[e] && !e.dead {
			cands = append(cands, e)
		}
	}
	// Least recently used first (insertion sort: few candidates).
	for i := 1; i < len(cands); i++ {
		for j := i; j > 0 && cands[j].lastUse < cands[j-1].lastUse; j-- {
			cands[j], cands[j-1] = cands[j-1], cands[j]
		}
	}
	for _, e := range cands {
		if need <= free {
			break
		}
		out = append(out, e)
		free += e.bytes
	}
	return out, need <= free
}
