package hub

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/services/gateway/internal/auth"
	"github.com/kchat/kchat/services/gateway/internal/chat"
	"github.com/kchat/kchat/services/gateway/internal/ratelimit"
	"github.com/kchat/kchat/services/gateway/internal/transport"
)

// Outbound is the transport side of a connection as the chat logic sees it
// (*transport.Conn implements it; tests use a fake over a real Queue).
type Outbound interface {
	ID() string
	Queue() *transport.Queue
	Close(code protocol.CloseCode, reason string, final []byte, flush bool)
	Written() map[string]int64
	Done() <-chan struct{}
	CloseCode() protocol.CloseCode
	// Go runs fn on the connection's worker, in call order, or refuses at once with
	// transport.ErrBusy (worker's queue full) or transport.ErrQueueClosed.
	Go(fn func(ctx context.Context)) error
}

var _ Outbound = (*transport.Conn)(nil)

// Session is the chat state of one connection: who it is, which rooms it follows and how
// far each has been delivered. Frames are read, limited and handed on by the connection's
// read loop and handled one at a time, in order, on its worker (so one client's sends are
// published in the order it sent them); deliveries arrive
// from the hub's Kafka goroutine; fills run on the session's own goroutine. Any of them
// may enqueue, none blocks on the network.
type Session struct {
	hub  *Hub
	out  Outbound
	id   string
	log  *slog.Logger
	ctx  context.Context
	stop context.CancelFunc

	mu          sync.Mutex
	user        *chat.User
	subs        map[string]*sub
	dropped     map[string]bool // rooms the client unsubscribed from: no auto-subscribe
	closing     bool
	filling     bool // the fill goroutine is running
	catchingUp  bool
	catchUpFrom time.Time
	typingLast  map[string]time.Time
	connectedAt time.Time
	lastActive  time.Time
	stats       protocol.ConnStats
	notesSeen   map[string]struct{} // notification ids sent on this connection
	notesOrder  []string            // the same, oldest first, to bound the set

	// Limits. Only HandleFrame touches these, and it runs on the read loop one frame at a
	// time (the worker does not), so they need no lock.
	msgBucket   *ratelimit.Bucket
	frameBucket *ratelimit.Bucket
	msgAbuse    *ratelimit.Abuse
	frameAbuse  *ratelimit.Abuse

	// sendSlots holds one token per send waiting for its Kafka acknowledgement. The worker
	// goes on to the next frame meanwhile, up to maxSendsInFlight, so that a connection is
	// not held to one message per produce round trip; only the worker takes a slot. (A
	// channel of struct{} costs no buffer, so idle connections pay ~100 B.)
	sendSlots chan struct{}
}

// maxSendsInFlight bounds a connection's unacknowledged sends; past it a send waits for a
// slot until sendSlotWait after it arrived and is then refused with `unavailable`, so a
// Kafka stall is answered instead of buffered without end.
const maxSendsInFlight = 64

// sendSlotWait is how long after its arrival a send may wait for a slot.
const sendSlotWait = time.Second

// sendDrainTimeout bounds how long a closing connection waits for its sends' acks: longer
// than a produce retried over a leader change is not worth holding the close for (the
// client resends with the same client_msg_id and is answered duplicate).
const sendDrainTimeout = 5 * time.Second

// maxNotesSeen bounds the notification ids a connection remembers for de-duplication: a
// live copy arrives within seconds of the stored one, so the recent ones suffice.
const maxNotesSeen = 1024

func newSession(h *Hub, out Outbound) *Session {
	ctx, stop := context.WithCancel(context.Background())
	now := h.cfg.Now()
	cfg := h.cfg
	return &Session{
		hub: h, out: out, id: out.ID(), log: h.log.With("conn_id", out.ID()), ctx: ctx, stop: stop,
		subs: map[string]*sub{}, dropped: map[string]bool{}, typingLast: map[string]time.Time{},
		connectedAt: now, lastActive: now, notesSeen: map[string]struct{}{}, sendSlots: make(chan struct{}, maxSendsInFlight),
		msgBucket: ratelimit.NewBucket(cfg.ConnRate, now), frameBucket: ratelimit.NewBucket(cfg.FrameRate, now),
		msgAbuse:   ratelimit.NewAbuse(cfg.ConnRate, cfg.AbuseFactor, cfg.AbuseWindow),
		frameAbuse: ratelimit.NewAbuse(cfg.FrameRate, cfg.AbuseFactor, cfg.AbuseWindow),
	}
}

// User returns the authenticated user, or nil.
func (s *Session) User() *chat.User {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.user
}

// ---- enqueueing (all with s.mu held) ----

func (s *Session) pushControlLocked(typ string, v any) {
	if s.closing {
		return
	}
	it := transport.Item{Data: protocol.Encode(v), Type: typ, Class: transport.Control}
	err := s.out.Queue().Push(it)
	if errors.Is(err, transport.ErrQueueFull) {
		// Replies must not be lost: make room by moving timeline frames to catch-up.
		s.overflowLocked(0, "")
		err = s.out.Queue().Push(it)
	}
	if errors.Is(err, transport.ErrQueueFull) {
		s.slowCloseLocked("control frames backed up")
		return
	}
	if err == nil {
		s.stats.FramesOut++
	}
}

func (s *Session) reply(typ string, v any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pushControlLocked(typ, v)
}

func (s *Session) replyErr(ref string, err error) {
	var pe *protocol.Error
	if !errors.As(err, &pe) {
		pe = protocol.NewError(protocol.CodeInternal, "internal error")
	}
	e := *pe
	e.Base = protocol.Base{Type: protocol.TypeError, Ref: ref}
	s.reply(protocol.TypeError, &e)
}

// timelineEntry is one room entry ready to queue. Its frame is encoded once and the same
// bytes go to every connection that gets the entry (nothing writes to them afterwards):
// a live entry in a room of thousands costs one encoding, not thousands.
type timelineEntry struct {
	room, kind, sender string
	seq                int64
	data               []byte
}

func entryOf(m protocol.Message) timelineEntry {
	return timelineEntry{room: m.Room, kind: m.Kind, sender: m.Sender, seq: m.Seq, data: protocol.Encode(m)}
}

// pushTimelineLocked queues entry e for its room's subscription, which must be at
// e.seq-1. It reports false if the queue overflowed (the session is now catching up).
func (s *Session) pushTimelineLocked(sb *sub, e timelineEntry) bool {
	err := s.out.Queue().Push(transport.Item{Data: e.data, Type: protocol.TypeMessage, Class: transport.Timeline, Room: e.room, Seq: e.seq})
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

// ---- subscriptions ----

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

// ---- live input from the hub ----

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

// ---- fill from PostgreSQL ----

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

// ---- frames from the client ----

// HandleFrame implements transport.Session. It runs on the connection's read loop and
// never blocks: it decodes the frame, applies the rate limits and answers ping itself, and
// hands everything else to the connection's worker (Outbound.Go), which handles the frames
// one at a time in arrival order (so one client's sends are published in the order it
// sent them, and a subscribe is done before the unsubscribe that follows it). When the
// worker is held up (Kafka or PostgreSQL stalled) and its queue is full, the frame is
// refused at once with `unavailable` instead of waiting: the read loop keeps reading, and
// so keeps answering the transport's pings.
func (s *Session) HandleFrame(ctx context.Context, data []byte) {
	now := s.hub.cfg.Now()
	arrived := time.Now()
	s.mu.Lock()
	s.lastActive = now
	s.stats.FramesIn++
	s.mu.Unlock()

	f, perr := protocol.Decode(data, s.hub.cfg.Limits)
	if perr != nil {
		s.hub.metrics.FrameIn("invalid")
		if s.limited(now, nil, perr.Ref) {
			return
		}
		s.reply(protocol.TypeError, perr)
		return
	}
	s.hub.metrics.FrameIn(f.FrameType())
	ref := f.RefID()
	if s.limited(now, f, ref) {
		return
	}
	if _, ok := f.(*protocol.Ping); ok {
		s.reply(protocol.TypePong, protocol.Pong{Base: protocol.Base{Type: protocol.TypePong, Ref: ref}, ServerTime: now.UTC()})
		return
	}
	err := s.out.Go(func(ctx context.Context) { s.handle(ctx, f, ref, arrived) })
	if errors.Is(err, transport.ErrBusy) {
		s.refuseBusy(f, ref)
	}
}

// refuseBusy answers a frame the worker could not take with a retryable `unavailable`
// (typing, a hint, is dropped silently). Nothing refused was accepted.
func (s *Session) refuseBusy(f protocol.Frame, ref string) {
	e := protocol.NewError(protocol.CodeUnavailable, "connection busy: earlier requests are still waiting for the database or Kafka; retry").Retry()
	switch f := f.(type) {
	case *protocol.Typing:
		return
	case *protocol.Send:
		e.ClientMsgID, e.Room = f.ClientMsgID, f.Room
	case *protocol.Edit:
		e.ClientMsgID, e.Room = f.ClientMsgID, f.Room
	case *protocol.Delete:
		e.ClientMsgID, e.Room = f.ClientMsgID, f.Room
	case *protocol.DM:
		e.ClientMsgID = f.ClientMsgID
	}
	s.log.Debug("frame refused: worker busy", "frame", f.FrameType())
	s.replyErr(ref, e)
}

// handle is one frame's work, on the connection's worker: it may wait for PostgreSQL and
// for a send slot. arrived is when the read loop read it.
func (s *Session) handle(ctx context.Context, f protocol.Frame, ref string, arrived time.Time) {
	// Read here, not on the read loop: a hello queued just before this frame has
	// authenticated the connection by now.
	u := s.User()
	if u == nil {
		switch f.(type) {
		case *protocol.Hello, *protocol.Auth, *protocol.Quit:
		default:
			s.replyErr(ref, protocol.NewError(protocol.CodeUnauthorized, "authenticate first (hello or auth)"))
			return
		}
	}
	switch f := f.(type) {
	case *protocol.Hello:
		s.onHello(ctx, f)
	case *protocol.Auth:
		s.authenticate(ctx, f.Token, f.ReconnectToken, ref)
	case *protocol.Quit:
		s.awaitSends(sendDrainTimeout)
		s.mu.Lock()
		s.closing = true
		s.mu.Unlock()
		s.out.Close(protocol.CloseNormal, protocol.ReasonBye, nil, true)
	case *protocol.Send:
		s.send(ctx, *u, ref, arrived, chat.SendRequest{Room: f.Room, ClientMsgID: f.ClientMsgID, Text: f.Text})
	case *protocol.Edit:
		s.send(ctx, *u, ref, arrived, chat.SendRequest{Room: f.Room, ClientMsgID: f.ClientMsgID, Text: f.Text, Kind: event.KindEdit, TargetSeq: f.TargetSeq})
	case *protocol.Delete:
		s.send(ctx, *u, ref, arrived, chat.SendRequest{Room: f.Room, ClientMsgID: f.ClientMsgID, Kind: event.KindDelete, TargetSeq: f.TargetSeq})
	case *protocol.DM:
		s.onDM(ctx, *u, f, arrived)
	case *protocol.Subscribe:
		s.subscribe(ctx, *u, f.Room, f.SinceSeq, ref)
	case *protocol.Unsubscribe:
		s.mu.Lock()
		if s.subs[f.Room] == nil {
			s.pushControlLocked(protocol.TypeError, &protocol.Error{Base: protocol.Base{Type: protocol.TypeError, Ref: ref},
				Code: protocol.CodeNotFound, Message: "not subscribed to this room", Room: f.Room})
		} else {
			s.dropped[f.Room] = true
			s.unsubscribeLocked(f.Room, "")
		}
		s.mu.Unlock()
	case *protocol.History:
		q := chat.HistoryQuery{Limit: f.Limit}
		if f.BeforeSeq != nil {
			q.Before = *f.BeforeSeq
		}
		page, err := s.hub.chat.History(ctx, *u, f.Room, q)
		if err != nil {
			s.replyErr(ref, err)
			return
		}
		page.Ref = ref
		s.reply(protocol.TypeHistory, page)
	case *protocol.Typing:
		s.onTyping(ctx, *u, f)
	case *protocol.Join:
		r, err := s.hub.chat.Join(ctx, *u, f.Room)
		if err != nil {
			s.replyErr(ref, err)
			return
		}
		s.reply(protocol.TypeJoined, protocol.Membership{Base: protocol.Base{Type: protocol.TypeJoined, Ref: ref}, Room: f.Room, LastSeq: r.LastSeq})
		s.hub.UserJoined(u.ID, f.Room, r.LastSeq)
	case *protocol.Leave:
		if err := s.hub.chat.Leave(ctx, *u, f.Room); err != nil {
			s.replyErr(ref, err)
			return
		}
		s.hub.UserLeft(u.ID, f.Room)
		s.reply(protocol.TypeLeft, protocol.Membership{Base: protocol.Base{Type: protocol.TypeLeft, Ref: ref}, Room: f.Room})
	case *protocol.Rooms:
		list, err := s.hub.chat.Rooms(ctx, *u)
		if err != nil {
			s.replyErr(ref, err)
			return
		}
		list.Ref = ref
		s.reply(protocol.TypeRooms, list)
	case *protocol.Users:
		s.reply(protocol.TypeUsers, protocol.UserList{Base: protocol.Base{Type: protocol.TypeUsers, Ref: ref}, Users: s.hub.Users(ctx)})
	case *protocol.Stats:
		st := s.hub.Stats()
		st.Ref = ref
		s.mu.Lock()
		cs := s.stats
		cs.ConnID, cs.ConnectedAt, cs.LastActive = s.id, s.connectedAt, s.lastActive
		st.Conn = &cs
		s.pushControlLocked(protocol.TypeStats, st)
		s.mu.Unlock()
	case *protocol.Token:
		t, err := s.hub.chat.NewReconnectToken(ctx, *u)
		if err != nil {
			s.replyErr(ref, err)
			return
		}
		s.reply(protocol.TypeToken, protocol.TokenReply{Base: protocol.Base{Type: protocol.TypeToken, Ref: ref}, ReconnectToken: t.Value, ExpiresAt: t.ExpiresAt})
	case *protocol.Read:
		m, err := s.hub.chat.MarkRead(ctx, *u, f.Room, *f.Seq)
		if err != nil {
			s.replyErr(ref, withRoom(err, f.Room))
			return
		}
		m.Ref = ref
		s.reply(protocol.TypeRead, m)
		s.hub.ReadMarked(u.ID, m, s)
	case *protocol.Notifications:
		list, err := s.hub.chat.Notifications(ctx, *u, f.Before, f.Limit)
		if err != nil {
			s.replyErr(ref, err)
			return
		}
		list.Ref = ref
		s.reply(protocol.TypeNotifications, list)
	case *protocol.ReadNotifications:
		res, err := s.hub.chat.MarkNotificationsRead(ctx, *u, f.IDs, f.All)
		if err != nil {
			s.replyErr(ref, err)
			return
		}
		res.Ref = ref
		s.reply(protocol.TypeNotificationsRead, res)
	}
}

func withRoom(err error, room string) error {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		e := *pe
		e.Room = room
		return &e
	}
	return err
}

// isMessageFrame reports whether f asks for a timeline entry: those are what the message
// limits (per connection and per user) count.
func isMessageFrame(f protocol.Frame) bool {
	switch f.(type) {
	case *protocol.Send, *protocol.Edit, *protocol.Delete, *protocol.DM:
		return true
	}
	return false
}

// limited applies the rate limits to one frame (f nil: a frame that did not decode) and
// reports whether it was refused. A refused frame gets error{code:"rate_limited",
// retry_after_ms} (typing is dropped silently: it is a hint, and an answer per signal
// would only add traffic); nothing refused was accepted, so nothing accepted is dropped.
// A connection that keeps going far over its limits is closed with 1008.
func (s *Session) limited(now time.Time, f protocol.Frame, ref string) bool {
	msg := f != nil && isMessageFrame(f)
	abusive := s.frameAbuse.Attempt(now)
	if msg {
		abusive = s.msgAbuse.Attempt(now) || abusive
	}
	if abusive {
		s.closeAbusive()
		return true
	}
	_, typing := f.(*protocol.Typing)
	if ok, wait := s.frameBucket.Allow(now); !ok {
		s.hub.metrics.Limited("frames")
		if !typing {
			s.replyLimited(ref, wait, "too many frames")
		}
		return true
	}
	if !msg {
		return false
	}
	if ok, wait := s.msgBucket.Allow(now); !ok {
		s.hub.metrics.Limited("conn")
		s.replyLimited(ref, wait, "too many messages on this connection")
		return true
	}
	if u := s.User(); u != nil {
		if ok, wait := s.hub.cfg.UserLimiter.Allow(u.ID, now); !ok {
			// The connection's token was not used after all.
			s.msgBucket.Refund()
			s.hub.metrics.Limited("user")
			s.replyLimited(ref, wait, "too many messages from this user")
			return true
		}
	}
	return false
}

func (s *Session) replyLimited(ref string, wait time.Duration, why string) {
	e := protocol.NewError(protocol.CodeRateLimited, why+"; retry after retry_after_ms").Retry()
	e.RetryAfter = RetryAfterMs(wait)
	s.replyErr(ref, e)
}

// RetryAfterMs rounds a wait up to whole milliseconds, at least 1: "retry in 0 ms" would
// invite a client to retry at once and be refused again.
func RetryAfterMs(wait time.Duration) int64 {
	return max(1, int64((wait+time.Millisecond-1)/time.Millisecond))
}

// closeAbusive closes the connection with 1008 (policy violation) and a final error
// frame. Queued frames are thrown away: the client is not listening to them anyway.
func (s *Session) closeAbusive() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return
	}
	s.closing = true
	s.hub.metrics.Inc(abuseClose)
	s.log.Warn("closing connection far over its rate limits", "user", userID(s.user))
	final := protocol.NewError(protocol.CodeRateLimited, "far over the rate limits for too long; connection closed")
	s.out.Close(protocol.ClosePolicy, protocol.ReasonAbuse, protocol.Encode(final), false)
}

// authenticate binds the connection to the token's user and answers welcome. A bad token
// closes the connection with 4001: a client holding a forged or stale token must log in
// again, and retrying on this connection cannot help.
func (s *Session) authenticate(ctx context.Context, token, reconnect, ref string) (chat.User, bool) {
	kind, value := auth.KindSession, token
	if reconnect != "" {
		kind, value = auth.KindReconnect, reconnect
	}
	u, err := s.hub.chat.Authenticate(ctx, value, kind)
	if err != nil {
		var pe *protocol.Error
		if errors.As(err, &pe) && pe.Code == protocol.CodeInvalidToken {
			s.rejectAuth(ref, pe)
		} else {
			s.replyErr(ref, err)
		}
		return chat.User{}, false
	}
	s.mu.Lock()
	if s.user != nil && s.user.ID != u.ID {
		s.mu.Unlock()
		s.replyErr(ref, protocol.NewError(protocol.CodeBadRequest, "connection is already authenticated as another user"))
		return chat.User{}, false
	}
	first := s.user == nil
	s.user = &u
	s.mu.Unlock()
	if first {
		s.hub.bind(s, u)
	}
	s.welcome(ctx, u, ref)
	return u, true
}

func (s *Session) rejectAuth(ref string, pe *protocol.Error) {
	e := *pe
	e.Base = protocol.Base{Type: protocol.TypeError, Ref: ref}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return
	}
	s.closing = true
	s.out.Close(protocol.CloseUnauthorized, protocol.ReasonUnauthorized, protocol.Encode(&e), false)
}

func (s *Session) welcome(ctx context.Context, u chat.User, ref string) {
	t, err := s.hub.chat.NewReconnectToken(ctx, u)
	if err != nil {
		s.replyErr(ref, err)
		return
	}
	s.reply(protocol.TypeWelcome, protocol.Welcome{
		Base: protocol.Base{Type: protocol.TypeWelcome, Ref: ref},
		User: protocol.User{ID: u.ID, Username: u.Username}, ConnID: s.id, GatewayID: s.hub.cfg.GatewayID,
		ReconnectToken: t.Value, ReconnectUntil: t.ExpiresAt, ServerTime: s.hub.cfg.Now().UTC(), Limits: s.hub.cfg.Limits,
	})
}

func (s *Session) onHello(ctx context.Context, f *protocol.Hello) {
	var u chat.User
	if f.Token != "" || f.ReconnectToken != "" {
		var ok bool
		if u, ok = s.authenticate(ctx, f.Token, f.ReconnectToken, f.Ref); !ok {
			return
		}
	} else {
		cur := s.User()
		if cur == nil {
			s.replyErr(f.Ref, protocol.NewError(protocol.CodeBadRequest, "token or reconnect_token is required"))
			return
		}
		u = *cur
		s.welcome(ctx, u, f.Ref)
	}
	// What the user missed while away comes first, before the backlogs of the rooms.
	s.sendPending(ctx, u)
	if f.Rooms != nil {
		rooms := make([]string, 0, len(f.Rooms))
		for r := range f.Rooms {
			rooms = append(rooms, r)
		}
		slices.Sort(rooms)
		for _, r := range rooms {
			since := f.Rooms[r]
			s.subscribe(ctx, u, r, &since, f.Ref)
		}
		return
	}
	rooms, err := s.hub.chat.RoomsOf(ctx, u)
	if err != nil {
		s.replyErr(f.Ref, err)
		return
	}
	for _, r := range rooms {
		s.subscribe(ctx, u, r.ID, nil, f.Ref)
	}
}

// sendPending delivers u's unread notifications (the newest PendingNotifications, at most
// half the send queue so that they cannot crowd out the room backlogs) as notification
// frames with pending:true. They stay unread until the client marks them read, so every
// hello gets them again: a client that crashed before showing them loses nothing.
func (s *Session) sendPending(ctx context.Context, u chat.User) {
	limit := min(s.hub.cfg.PendingNotifications, max(s.out.Queue().Limit()/2, 1))
	ns, err := s.hub.chat.PendingNotifications(ctx, u, limit)
	if err != nil {
		// Not worth failing the hello for: the client can list them.
		s.log.Warn("cannot read pending notifications", "user", u.ID, "error", err)
		return
	}
	for _, n := range ns {
		s.deliverNotification(n, true)
	}
}

func (s *Session) send(ctx context.Context, u chat.User, ref string, arrived time.Time, req chat.SendRequest) {
	if !s.takeSendSlot(ctx, arrived) {
		if ctx.Err() == nil {
			e := protocol.NewError(protocol.CodeUnavailable, "too many sends awaiting Kafka's acknowledgement; retry").Retry()
			e.ClientMsgID, e.Room = req.ClientMsgID, req.Room
			s.replyErr(ref, e)
		}
		return
	}
	s.hub.chat.SendAsync(ctx, u, req, func(ack protocol.Ack, err error) {
		defer func() { <-s.sendSlots }()
		if err != nil {
			var pe *protocol.Error
			if errors.As(err, &pe) {
				e := *pe
				e.ClientMsgID, e.Room = req.ClientMsgID, req.Room
				err = &e
			}
			s.replyErr(ref, err)
			return
		}
		ack.Ref = ref
		s.mu.Lock()
		if ack.Status == protocol.AckAccepted {
			s.stats.MessagesSent++
		}
		s.pushControlLocked(protocol.TypeAck, ack)
		s.mu.Unlock()
	})
}

// takeSendSlot takes a send slot, waiting at most until sendSlotWait after the frame
// arrived: while Kafka is slow a send is refused within about that time instead of
// holding the worker, and the frames behind it, for as long as Kafka stalls.
func (s *Session) takeSendSlot(ctx context.Context, arrived time.Time) bool {
	select {
	case s.sendSlots <- struct{}{}:
		return true
	default:
	}
	wait := time.NewTimer(time.Until(arrived.Add(sendSlotWait)))
	defer wait.Stop()
	select {
	case s.sendSlots <- struct{}{}:
		return true
	case <-wait.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// awaitSends waits, at most d, until every send has its ack or error queued, so that a
// client closing (quit) or a gateway draining learns the fate of what it sent.
func (s *Session) awaitSends(d time.Duration) {
	deadline := time.Now().Add(d)
	for len(s.sendSlots) > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

func (s *Session) onDM(ctx context.Context, u chat.User, f *protocol.DM, arrived time.Time) {
	r, other, err := s.hub.chat.OpenDM(ctx, u, f.To)
	if err != nil {
		s.replyErr(f.Ref, err)
		return
	}
	// Both people follow the DM from now on, on this gateway at once; on other gateways the
	// membership watcher picks it up.
	s.hub.UserJoined(u.ID, r.ID, r.LastSeq)
	s.hub.UserJoined(other.ID, r.ID, r.LastSeq)
	s.send(ctx, u, f.Ref, arrived, chat.SendRequest{Room: r.ID, ClientMsgID: f.ClientMsgID, Text: f.Text})
}

func (s *Session) onTyping(ctx context.Context, u chat.User, f *protocol.Typing) {
	now := s.hub.cfg.Now()
	s.mu.Lock()
	_, subscribed := s.subs[f.Room]
	last := s.typingLast[f.Room]
	throttled := now.Sub(last) < s.hub.cfg.TypingInterval
	if !throttled {
		s.typingLast[f.Room] = now
	}
	s.mu.Unlock()
	if throttled {
		return // typing is a hint; extra signals are dropped silently
	}
	if !subscribed {
		if _, err := s.hub.chat.Access(ctx, u, f.Room); err != nil {
			s.replyErr(f.Ref, err)
			return
		}
	}
	if err := s.hub.chat.PublishTyping(ctx, u, f.Room); err != nil {
		s.replyErr(f.Ref, err)
	}
}

// Closed implements transport.Session.
func (s *Session) Closed() {
	s.mu.Lock()
	if !s.closing && s.out.CloseCode() == protocol.CloseSlow {
		// The transport dropped it at the write deadline: slow too, just without the
		// final frame (the socket would not take one).
		s.hub.slowCloses.Add(1)
		s.hub.metrics.Inc(slowClose)
	}
	s.closing = true
	rooms := make([]string, 0, len(s.subs))
	for r := range s.subs {
		rooms = append(rooms, r)
	}
	s.subs = map[string]*sub{}
	s.mu.Unlock()
	s.stop()
	s.hub.unregister(s, rooms)
}

// shutdown sends the reconnect frame and closes 1012, flushing what is queued first.
func (s *Session) shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return
	}
	s.closing = true
	cursors := make(map[string]int64, len(s.subs))
	for room, sb := range s.subs {
		cursors[room] = sb.cursor
	}
	final := protocol.Reconnect{Base: protocol.Base{Type: protocol.TypeReconnect}, Reason: protocol.ReasonShutdown, Cursors: cursors}
	s.out.Close(protocol.CloseServiceRestart, protocol.ReasonShutdown, protocol.Encode(final), true)
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
	s.pushControlLocked(protocol.TypeSubscribed, protocol.Subscribed{Base: protocol.Base{Type: protocol.TypeSubscribed},
		Room: room, SinceSeq: cursor, LastSeq: lastSeq, Recovered: true})
	s.subscribeLocked(room, cursor, lastSeq)
}
