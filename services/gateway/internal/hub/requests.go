// Frames from the client: HandleFrame on the read loop, then the dispatch to handlers on
// the connection's worker, with sends held to a bounded number awaiting Kafka's ack.

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

// sendSlotWait is how long after its arrival a send may wait for a slot.
const sendSlotWait = time.Second

// sendDrainTimeout bounds how long a closing connection waits for its sends' acks: longer
// than a produce retried over a leader change is not worth holding the close for (the
// client resends with the same client_msg_id and is answered duplicate).
const sendDrainTimeout = 5 * time.Second

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
	if _, typing := f.(*protocol.Typing); typing {
		return
	}
	e := protocol.NewError(protocol.CodeUnavailable, "connection busy: earlier requests are still waiting for the database or Kafka; retry").Retry()
	e.For(f)
	s.log.Debug("frame refused: worker busy", "frame", f.FrameType())
	s.replyErr(ref, e)
}

// refusal is err as the error frame that refuses message clientMsgID: named, whatever
// failed (an unexpected error becomes "internal"), so that a client holding its next
// message back until this one is answered knows it was.
func refusal(err error, clientMsgID, room string) *protocol.Error {
	e := protocol.NewError(protocol.CodeInternal, "internal error")
	var pe *protocol.Error
	if errors.As(err, &pe) {
		c := *pe
		e = &c
	}
	e.ClientMsgID, e.Room = clientMsgID, room
	return e
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
	defer s.settleFollows()
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
		s.send(ctx, *u, ref, arrived, chat.SendRequest{Room: f.Room, ClientMsgID: f.ClientMsgID, Text: f.Text, Attachments: f.Attachments,
			ThreadRoot: f.ThreadRoot})
	case *protocol.Edit:
		s.send(ctx, *u, ref, arrived, chat.SendRequest{Room: f.Room, ClientMsgID: f.ClientMsgID, Text: f.Text, Kind: event.KindEdit, TargetSeq: f.TargetSeq})
	case *protocol.Delete:
		s.send(ctx, *u, ref, arrived, chat.SendRequest{Room: f.Room, ClientMsgID: f.ClientMsgID, Kind: event.KindDelete, TargetSeq: f.TargetSeq})
	case *protocol.React:
		s.send(ctx, *u, ref, arrived, chat.SendRequest{Room: f.Room, ClientMsgID: f.ClientMsgID, Kind: event.KindReaction,
			TargetSeq: f.TargetSeq, Emoji: f.Emoji, On: *f.On})
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
	case *protocol.Thread:
		page, err := s.hub.chat.Thread(ctx, *u, f.Room, f.Root, f.AfterSeq, f.Limit)
		if err != nil {
			s.replyErr(ref, withRoom(err, f.Room))
			return
		}
		page.Ref = ref
		s.reply(protocol.TypeThread, page)
	case *protocol.ThreadRead:
		m, err := s.hub.chat.MarkThreadRead(ctx, *u, f.Room, f.Root, *f.Seq)
		if err != nil {
			s.replyErr(ref, withRoom(err, f.Room))
			return
		}
		m.Ref = ref
		s.reply(protocol.TypeThreadRead, m)
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
		if err := s.hub.chat.Leave(ctx, *u, f.Room, f.Successor); err != nil {
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
	case *protocol.GetNotificationPrefs, *protocol.SetNotificationPrefs, *protocol.SetRoomNotificationPrefs:
		s.notificationPrefs(ctx, *u, ref, f)
	case *protocol.SetRole, *protocol.MuteMember, *protocol.Transfer, *protocol.UpdateRoom, *protocol.Directory:
		s.roles(ctx, *u, ref, f)
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

func (s *Session) send(ctx context.Context, u chat.User, ref string, arrived time.Time, req chat.SendRequest) {
	if !s.takeSendSlot(ctx, arrived) {
		if ctx.Err() == nil {
			e := protocol.NewError(protocol.CodeUnavailable, "too many sends awaiting Kafka's acknowledgement; retry").Retry()
			e.ClientMsgID, e.Room = req.ClientMsgID, req.Room
			s.replyErr(ref, e)
		}
		return
	}
	ctx, endSpan := chat.TraceSend(ctx, "websocket", u, req)
	s.hub.chat.SendAsync(ctx, u, req, func(ack protocol.Ack, err error) {
		defer func() { <-s.sendSlots }()
		endSpan(ack, err)
		if err != nil {
			s.replyErr(ref, refusal(err, req.ClientMsgID, req.Room))
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
		s.replyErr(f.Ref, refusal(err, f.ClientMsgID, ""))
		return
	}
	// Both people follow the DM from now on, on this gateway at once; on other gateways
	// its first entry on chat.stored (which names the members) does it.
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
