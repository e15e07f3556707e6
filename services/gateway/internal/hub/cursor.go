package hub

// Decision is what to do with a live timeline entry given a subscription's cursor.
type Decision int

const (
	// Deliver: the entry is the next one (seq == cursor+1).
	Deliver Decision = iota
	// Duplicate: the connection already has it (seq <= cursor); drop it.
	Duplicate
	// Gap: entries between cursor and seq are missing; fill from PostgreSQL first.
	Gap
)

func (d Decision) String() string {
	switch d {
	case Deliver:
		return "deliver"
	case Duplicate:
		return "duplicate"
	default:
		return "gap"
	}
}

// Decide applies the delivery rule: in order, each entry once. cursor is the highest seq
// handed to the connection for the room.
func Decide(cursor, seq int64) Decision {
	switch {
	case seq <= cursor:
		return Duplicate
	case seq == cursor+1:
		return Deliver
	default:
		return Gap
	}
}

// sub is one connection's subscription to one room. Guarded by Session.mu.
type sub struct {
	cursor  int64 // highest seq queued to the connection
	base    int64 // cursor when the subscription started: the resumable floor
	syncing bool  // being fed from PostgreSQL; live entries only raise pending
	pending int64 // highest seq known to exist (from live entries or rooms.last_seq)
	empty   int   // consecutive empty reads while pending > cursor
}

// observe records that seq exists; it reports whether a fill must start.
func (s *sub) observe(seq int64) (startFill bool) {
	if seq > s.pending {
		s.pending = seq
	}
	if s.syncing || seq <= s.cursor {
		return false
	}
	s.syncing = true
	return true
}

// rewind moves the cursor back to before seq, for a frame that was queued but dropped;
// pending keeps the old cursor so the fill reads at least that far again.
func (s *sub) rewind(seq int64) {
	if s.cursor > s.pending {
		s.pending = s.cursor
	}
	if seq-1 < s.cursor {
		s.cursor = seq - 1
	}
}
