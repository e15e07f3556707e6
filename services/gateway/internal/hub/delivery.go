// The delivery state machine of a session: per room a cursor, live entries from the hub
// queued in seq order, gaps and overflows filled from PostgreSQL (catch-up), and the slow
// close for a client that cannot keep up even from history. Everything here runs with
// s.mu held or takes it; nothing blocks the hub.

package hub

import (
	"context"
	"errors"
	"time"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/services/gateway/internal/chat"
	"github.com/kchat/kchat/services/gateway/internal/transport"
)

// maxNotesSeen bounds the notification ids a connection remembers for de-duplication: a
// live copy arrives within seconds of the stored one, so the recent ones suffice.
const maxNotesSeen = 1024

// timelineEntry is one room entry ready to queue. Its frame is encoded once and the same
// bytes go to every connection that gets the entry (nothing writes to them afterwards):
// a live entry in a room of thousands costs one encoding, not thousands.
type timelineEntry struct {
	room, kind, sender string
	seq                int64
	data               []byte
	trace              *transport.Trace // set when tracing is on and the entry was read live
}

func entryOf(m protocol.Message) timelineEntry {
	return timelineEntry{room: m.Room, kind: m.Kind, sender: m.Sender, seq: m.Seq, data: protocol.Encode(m)}
}

// pushTimelineLocked queues entry e for its room's subscription, which must be at
// e.seq-1. It reports false if the queue overflowed (the session is now catching up).
func (s *Session) pushTimelineLocked(sb *sub, e timelineEntry) bool {
	err := s.out.Queue().Push(transport.Item{Data: e.data, Type: protocol.TypeMessage, Class: transport.Timeline, Room: e.room, Seq: e.seq, Trace: e.trace})
	switch {
	case err == nil:
		sb.cursor = e.seq
		s.stats.MessagesRecv++
		s.stats.FramesOut++
		s.hub.messagesOut.Add(1)
		if e.kind == event.KindLeave && s.user != nil && e.sender == s.user.ID {
			// Membership ended (possibly through another gateway): stop following the room
			// once the leave entry itself is on its way.
			s.unsubscribeLocked(e.room, "left")
		}
		return true
	case errors.Is(err, transport.ErrQueueFull):
		s.overflowLocked(e.seq, e.room)
		return false
	default:
		return false
	}
}

// overflowLocked is the slow-client path: throw away queued timeline frames (they can be
// re-read), rewind each room's cursor to the last frame kept, and feed every room from
// PostgreSQL until it is current. seq/room name a live entry that did not fit.
func (s *Session) overflowLocked(seq int64, room string) {
	if s.closing {
		return
	}
	dropped := s.out.Queue().DropDroppable()
	for _, it := range dropped {
		if sb := s.subs[it.Room]; sb != nil {
			sb.rewind(it.Seq)
		}
	}
	if sb := s.subs[room]; sb != nil && seq > sb.pending {
		sb.pending = seq
	}
	for _, sb := range s.subs {
		if sb.cursor > sb.pending {
			sb.pending = sb.cursor
		}
		sb.syncing = true
		sb.empty = 0
	}
	if !s.catchingUp {
		s.catchingUp = true
		s.catchUpFrom = s.hub.cfg.Now()
		s.stats.CatchUps++
		s.hub.slowSwitches.Add(1)
		s.hub.metrics.Inc(slowSwitch)
		s.log.Info("send queue overflowed, switching to catch-up", "dropped", len(dropped))
	}
	s.startFillLocked()
}

// slowCloseLocked gives up on a client that cannot keep up even from history: a final
// error frame with resumable cursors, then close 4008.
func (s *Session) slowCloseLocked(why string) {
	if s.closing {
		return
	}
	s.closing = true
	s.out.Queue().DropDroppable()
	cursors := s.resumeCursorsLocked()
	final := protocol.NewError(protocol.CodeSlow, "connection could not keep up; resume from cursors")
	final.Cursors = cursors
	s.hub.slowCloses.Add(1)
	s.hub.metrics.Inc(slowClose)
	s.log.Info("closing slow connection", "why", why)
	s.out.Close(protocol.CloseSlow, protocol.ReasonSlow, protocol.Encode(final), false)
}

// resumeCursorsLocked is, per room, the highest seq known to have reached the socket.
func (s *Session) resumeCursorsLocked() map[string]int64 {
	written := s.out.Written()
	out := make(map[string]int64, len(s.subs))
	for room, sb := range s.subs {
		out[room] = max(sb.base, written[room])
	}
	return out
}

// subscribeLocked starts following room from cursor; the fill goroutine first brings it
// up to lastSeq (and beyond, if live entries arrive meanwhile).
func (s *Session) subscribeLocked(room string, cursor, lastSeq int64) {
	sb := &sub{cursor: cursor, base: cursor, syncing: true, pending: lastSeq}
	s.subs[room] = sb
	delete(s.dropped, room)
	s.hub.addSub(room, s)
	s.hub.metrics.Inc(gapFill)
	s.startFillLocked()
}

func (s *Session) unsubscribeLocked(room, reason string) {
	if _, ok := s.subs[room]; !ok {
		return
	}
	delete(s.subs, room)
	s.hub.removeSub(room, s)
	s.pushControlLocked(protocol.TypeUnsubscribed, protocol.Unsubscribed{Base: protocol.Base{Type: protocol.TypeUnsubscribed}, Room: room, Reason: reason})
}

// subscribe authorises and subscribes; since nil means live from the room's last_seq.
func (s *Session) subscribe(ctx context.Context, u chat.User, room string, since *int64, ref string) {
	r, err := s.hub.chat.Access(ctx, u, room)
	if err != nil {
		var pe *protocol.Error
		if errors.As(err, &pe) {
			e := *pe
			e.Room = room
			err = &e
		}
		s.replyErr(ref, err)
		return
	}
	reply := protocol.Subscribed{Base: protocol.Base{Type: protocol.TypeSubscribed, Ref: ref}, Room: room, LastSeq: r.LastSeq, Recovered: true}
	cursor := r.LastSeq
	switch {
	case since == nil:
	case *since > r.LastSeq:
		reply.Recovered, reply.Reason = false, "since_seq is ahead of the room's last_seq; delivering from last_seq"
	case r.MinSeq > *since+1:
		cursor = *since
		reply.Recovered, reply.Reason = false, "history before the oldest stored entry was purged"
	default:
		cursor = *since
	}
	reply.SinceSeq = cursor
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return
	}
	if sb := s.subs[room]; sb != nil {
		// Already following: the stream stays gap-free and duplicate-free as it is.
		reply.SinceSeq = sb.base
		s.pushControlLocked(protocol.TypeSubscribed, reply)
		return
	}
	s.pushControlLocked(protocol.TypeSubscribed, reply)
	s.subscribeLocked(room, cursor, r.LastSeq)
}

// deliverStored offers a live entry (see Hub.Deliver, which encodes it once for all).
func (s *Session) deliverStored(e timelineEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sb := s.subs[e.room]
	if sb == nil || s.closing {
		return
	}
	if sb.syncing {
		sb.observe(e.seq)
		return
	}
	switch Decide(sb.cursor, e.seq) {
	case Duplicate:
		s.hub.metrics.Inc(duplicate)
	case Gap:
		sb.observe(e.seq)
		s.hub.metrics.Inc(gapFill)
		s.startFillLocked()
	case Deliver:
		s.pushTimelineLocked(sb, e)
	}
}

// observeTail tells the session that room has entries up to lastSeq (a tail check).
func (s *Session) observeTail(room string, lastSeq int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sb := s.subs[room]; sb != nil && !s.closing && sb.observe(lastSeq) {
		s.hub.metrics.Inc(gapFill)
		s.startFillLocked()
	}
}

// deliverNotification queues a notification frame once per connection: pending ones
// (from the store at hello) as control frames, which are not dropped, live ones as
// ephemeral frames, which are dropped when the queue is full (the notification stays
// unread in the store and comes again at the next hello).
func (s *Session) deliverNotification(n protocol.Notification, pending bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || s.user == nil {
		return
	}
	if _, seen := s.notesSeen[n.NotificationID]; seen {
		return
	}
	s.notesSeen[n.NotificationID] = struct{}{}
	s.notesOrder = append(s.notesOrder, n.NotificationID)
	if len(s.notesOrder) > maxNotesSeen {
		delete(s.notesSeen, s.notesOrder[0])
		s.notesOrder = s.notesOrder[1:]
	}
	if pending {
		s.pushControlLocked(protocol.TypeNotification, n)
		return
	}
	if s.out.Queue().Push(transport.Item{Data: protocol.Encode(n), Type: protocol.TypeNotification, Class: transport.Ephemeral}) == nil {
		s.stats.FramesOut++
	}
}

func (s *Session) deliverEphemeral(typ string, v any) {
	s.deliverEphemeralFrame(typ, protocol.Encode(v))
}

// deliverEphemeralFrame queues an encoded ephemeral frame; data may be shared with other
// connections.
func (s *Session) deliverEphemeralFrame(typ string, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return
	}
	// Typing and notifications are not worth a catch-up: if there is no room, drop them.
	if s.out.Queue().Push(transport.Item{Data: data, Type: typ, Class: transport.Ephemeral}) == nil {
		s.stats.FramesOut++
	}
}

func (s *Session) startFillLocked() {
	if s.filling || s.closing {
		return
	}
	s.filling = true
	go s.fill()
}

// fill feeds rooms marked syncing from PostgreSQL, in seq order, until each is current:
// its cursor has reached every seq known to exist and a read came back short. Only then
// does the room go live again, so nothing that arrived live meanwhile is skipped.
func (s *Session) fill() {
	cfg := s.hub.cfg
	for {
		s.mu.Lock()
		if s.closing {
			s.filling = false
			s.mu.Unlock()
			return
		}
		if s.catchingUp && cfg.Now().Sub(s.catchUpFrom) > cfg.CatchUpTimeout {
			s.slowCloseLocked("catch-up took too long")
			s.filling = false
			s.mu.Unlock()
			return
		}
		room, sb := s.nextSyncingLocked()
		if sb == nil {
			s.filling = false
			if s.catchingUp {
				s.catchingUp = false
				s.log.Info("caught up, back to live")
			}
			s.mu.Unlock()
			return
		}
		after := sb.cursor
		s.mu.Unlock()

		rows, err := s.hub.timeline.MessagesAfter(s.ctx, room, after, cfg.FillPage)
		if err != nil {
			if s.ctx.Err() != nil {
				s.mu.Lock()
				s.filling = false
				s.mu.Unlock()
				return
			}
			s.log.Warn("history read failed during fill", "room", room, "error", err)
			s.sleep(time.Second)
			continue
		}
		restart := false
		for _, row := range rows {
			if !s.waitSpace() {
				s.mu.Lock()
				s.slowCloseLocked("send queue did not drain")
				s.filling = false
				s.mu.Unlock()
				return
			}
			s.mu.Lock()
			cur := s.subs[room]
			if cur != sb || !sb.syncing || sb.cursor != after || s.closing {
				// Unsubscribed, or rewound by an overflow: read again from the new cursor.
				s.mu.Unlock()
				restart = true
				break
			}
			ok := s.pushTimelineLocked(sb, entryOf(chat.FrameOf(row)))
			s.mu.Unlock()
			if !ok {
				restart = true
				break
			}
			after = row.Seq
		}
		if restart {
			continue
		}
		s.mu.Lock()
		if s.subs[room] == sb && sb.syncing && sb.cursor == after {
			switch {
			case len(rows) == cfg.FillPage:
				// More to read.
			case sb.pending <= sb.cursor:
				sb.syncing, sb.empty = false, 0
				s.pushControlLocked(protocol.TypeSynced, protocol.Synced{Base: protocol.Base{Type: protocol.TypeSynced}, Room: room, Seq: sb.cursor})
			case len(rows) == 0:
				// A seq was announced that is not readable yet; give it a moment, but do
				// not spin forever on one that will never appear.
				sb.empty++
				if sb.empty > 20 {
					s.log.Warn("announced seq never appeared; back to live", "room", room, "cursor", sb.cursor, "pending", sb.pending)
					sb.syncing, sb.empty, sb.pending = false, 0, sb.cursor
				}
				s.mu.Unlock()
				s.sleep(100 * time.Millisecond)
				continue
			}
		}
		s.mu.Unlock()
	}
}

func (s *Session) nextSyncingLocked() (string, *sub) {
	var best string
	for room, sb := range s.subs {
		if sb.syncing && (best == "" || room < best) {
			best = room
		}
	}
	if best == "" {
		return "", nil
	}
	return best, s.subs[best]
}

// waitSpace blocks the fill goroutine (never the hub) until the queue has room for a
// timeline frame with some slack left for live traffic. It gives up after StallTimeout
// without progress.
func (s *Session) waitSpace() bool {
	q := s.out.Queue()
	slack := max(q.Limit()/4, 1)
	timer := time.NewTimer(s.hub.cfg.StallTimeout)
	defer timer.Stop()
	for !q.HasSpace(slack) {
		select {
		case <-q.Space():
		case <-timer.C:
			return false
		case <-s.out.Done():
			return false
		case <-s.ctx.Done():
			return false
		}
	}
	return true
}

func (s *Session) sleep(d time.Duration) {
	select {
	case <-time.After(d):
	case <-s.ctx.Done():
	}
}

type followRequest struct {
	cursor, lastSeq int64
	explicit        bool
}

// settleFollows marks the session ready for automatic subscriptions (it has handled a
// frame since authenticating, so a hello's own subscriptions are in place) and follows
// the rooms deferred until then that it does not follow yet.
func (s *Session) settleFollows() {
	s.mu.Lock()
	if s.followReady || s.user == nil {
		s.mu.Unlock()
		return
	}
	s.followReady = true
	deferred := s.deferred
	s.deferred = nil
	s.mu.Unlock()
	for room, f := range deferred {
		s.follow(room, f.cursor, f.lastSeq, f.explicit)
	}
}

// follow subscribes to a room the user is now a member of, already authorised (a join
// or DM this gateway just handled, explicit; or one the timeline reports), from cursor,
// unless the connection already follows it. Unless explicit, a room the client
// unsubscribed from stays unsubscribed.
func (s *Session) follow(room string, cursor, lastSeq int64, explicit bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || s.user == nil || s.subs[room] != nil || (!explicit && s.dropped[room]) {
		return
	}
	if !s.followReady {
		// Explicit or not: even a join or DM handled here (UserJoined) reaches every
		// connection of the user, and one still in its hello decides its own since_seq.
		if s.deferred == nil {
			s.deferred = map[string]followRequest{}
		}
		if f, ok := s.deferred[room]; !ok || explicit && !f.explicit {
			s.deferred[room] = followRequest{cursor: cursor, lastSeq: lastSeq, explicit: explicit}
		}
		return
	}
	s.pushControlLocked(protocol.TypeSubscribed, protocol.Subscribed{Base: protocol.Base{Type: protocol.TypeSubscribed},
		Room: room, SinceSeq: cursor, LastSeq: lastSeq, Recovered: true})
	s.subscribeLocked(room, cursor, lastSeq)
}
