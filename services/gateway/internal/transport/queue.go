// Package transport carries frames over WebSocket: the upgrade (origin check, read limit),
// one reader loop per connection, a writer goroutine while the connection has frames to
// write, and the writer's bounded queue, and a worker goroutine while the connection has
// requests that may wait (Conn.Go) with its own bounded queue. It does not parse frames; it hands bytes to a
// Session and writes the bytes it is given.
package transport

import (
	"errors"
	"sync"
)

// Class says what may happen to a queued frame when the connection falls behind.
type Class uint8

const (
	// Control frames (acks, errors, replies) are never dropped; they may use a small
	// reserve above the queue's capacity so that a backlog of messages cannot starve them.
	Control Class = iota
	// Timeline frames (room messages) may be dropped from the queue because the chat layer
	// can re-read them from PostgreSQL; Room and Seq say which entry a dropped frame was.
	Timeline
	// Ephemeral frames (typing) are dropped when there is no room, and never recovered.
	Ephemeral
)

// ControlReserve is how many Control frames may be queued beyond the capacity.
const ControlReserve = 32

// Errors returned by Queue.Push (and ErrQueueClosed, ErrBusy by Conn.Go).
var (
	ErrQueueFull   = errors.New("transport: send queue full")
	ErrQueueClosed = errors.New("transport: connection closed")
	ErrBusy        = errors.New("transport: connection busy: too many requests waiting")
)

// Item is one frame waiting to be written.
type Item struct {
	Data  []byte
	Type  string // frame type, for metrics and logs
	Class Class
	Room  string // Timeline only
	Seq   int64  // Timeline only
	// Trace, if set, records the frame's socket write as a span of the trace of the
	// event it carries (set only when tracing is on; shared by every connection's copy).
	Trace *Trace
}

// Queue is a bounded FIFO of frames. Push never blocks: a full queue is reported to the
// caller, which decides between catch-up and disconnect. Safe for concurrent use.
type Queue struct {
	mu     sync.Mutex
	items  []Item
	limit  int
	closed bool
	ready  chan struct{} // a frame was pushed (nil when there is a wake)
	space  chan struct{} // frames were taken out
	// wake, if set, is called after every push instead of signalling ready: the
	// connection starts its writer on demand.
	wake func()
}

// NewQueue returns a queue holding up to limit Timeline/Ephemeral frames.
func NewQueue(limit int) *Queue {
	q := newWakingQueue(limit, nil)
	q.ready = make(chan struct{}, 1)
	return q
}

// newWakingQueue returns a queue that calls wake after each push; Ready is never
// signalled.
func newWakingQueue(limit int, wake func()) *Queue {
	if limit <= 0 {
		limit = 256
	}
	return &Queue{limit: limit, space: make(chan struct{}, 1), wake: wake}
}

// Push appends it, or fails with ErrQueueFull / ErrQueueClosed without blocking.
func (q *Queue) Push(it Item) error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return ErrQueueClosed
	}
	limit := q.limit
	if it.Class == Control {
		limit += ControlReserve
	}
	if len(q.items) >= limit {
		q.mu.Unlock()
		return ErrQueueFull
	}
	q.items = append(q.items, it)
	q.mu.Unlock()
	if q.wake != nil {
		q.wake()
	} else {
		notify(q.ready)
	}
	return nil
}

// HasSpace reports whether a Timeline frame could be pushed now, keeping free slack so
// that a catch-up feeder does not refill the queue to the brim and trip the overflow path
// of live frames.
func (q *Queue) HasSpace(slack int) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return !q.closed && len(q.items)+slack < q.limit
}

// Len is the number of queued frames.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// Limit is the capacity for Timeline frames.
func (q *Queue) Limit() int { return q.limit }

// TakeAll removes and returns every queued frame, in order.
func (q *Queue) TakeAll() []Item {
	q.mu.Lock()
	items := q.items
	q.items = nil
	q.mu.Unlock()
	if len(items) > 0 {
		notify(q.space)
	}
	return items
}

// maxReuse is the largest buffer the writer hands back for the next batch; a larger one
// (after a backlog) is left to the garbage collector rather than kept by the connection.
const maxReuse = 64

// takeAllInto is TakeAll for the writer, which hands back the buffer of its previous
// batch (emptied) so that a busy connection does not allocate one per batch.
func (q *Queue) takeAllInto(buf []Item) []Item {
	if cap(buf) > maxReuse {
		buf = nil
	}
	q.mu.Lock()
	items := q.items
	if len(items) == 0 {
		q.mu.Unlock()
		return buf[:0]
	}
	q.items = buf[:0]
	q.mu.Unlock()
	notify(q.space)
	return items
}

// release drops the queue's buffer if it is empty (an idle connection keeps none) and
// reports whether it was.
func (q *Queue) release() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) > 0 {
		return false
	}
	q.items = nil
	return true
}

// DropDroppable removes every Timeline and Ephemeral frame, keeping Control frames in
// order, and returns the dropped Timeline frames so the caller can rewind its cursors.
func (q *Queue) DropDroppable() []Item {
	q.mu.Lock()
	var dropped []Item
	kept := q.items[:0]
	for _, it := range q.items {
		switch it.Class {
		case Control:
			kept = append(kept, it)
		case Timeline:
			dropped = append(dropped, it)
		}
	}
	for i := len(kept); i < len(q.items); i++ {
		q.items[i] = Item{} // release the dropped frames' bytes
	}
	q.items = kept
	q.mu.Unlock()
	notify(q.space)
	return dropped
}

// Close makes further pushes fail and returns what was still queued.
func (q *Queue) Close() []Item {
	q.mu.Lock()
	q.closed = true
	items := q.items
	q.items = nil
	q.mu.Unlock()
	notify(q.ready)
	notify(q.space)
	return items
}

// Ready is signalled after a push (on a queue from NewQueue; a connection's queue starts
// its writer instead).
func (q *Queue) Ready() <-chan struct{} { return q.ready }

// Space is signalled after frames were taken out or dropped.
func (q *Queue) Space() <-chan struct{} { return q.space }

func notify(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
