// Messages: validated sends, edits and deletes published to Kafka, typing signals, and
// history pages read from PostgreSQL.

package chat

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/pkg/topics"
	"github.com/kchat/kchat/services/gateway/internal/store"
)

// SendRequest is a validated send, edit, delete or reaction toggle.
type SendRequest struct {
	Room        string
	ClientMsgID string
	Text        string
	Kind        string // event.KindMessage (default), KindEdit, KindDelete or KindReaction
	TargetSeq   int64
	Emoji       string // KindReaction
	On          bool   // KindReaction: add (true) or remove the sender's Emoji
	// Attachments are upload ids the message carries (KindMessage only).
	Attachments []string
	// ThreadRoot makes a message (KindMessage only) a reply in that root's thread.
	ThreadRoot int64
}

// Send publishes message.submitted keyed by room with acks=all and only then reports
// accepted. A client_msg_id already stored by this sender in this room is answered as a
// duplicate with the original seq and nothing is published; a retry whose first attempt is
// still in flight is published again and dropped by persistence.
func (s *Service) Send(ctx context.Context, u User, req SendRequest) (protocol.Ack, error) {
	type result struct {
		ack protocol.Ack
		err error
	}
	out := make(chan result, 1)
	s.SendAsync(ctx, u, req, func(ack protocol.Ack, err error) { out <- result{ack, err} })
	select {
	case r := <-out:
		return r.ack, r.err
	case <-ctx.Done():
		return protocol.Ack{}, errUnavailable(ctx.Err())
	}
}

// SendAsync is Send for a connection that keeps reading while its messages are written:
// the checks run before it returns and the message is queued to Kafka in call order, so
// one connection's messages to a room keep their order; done gets the ack (or error) once,
// possibly from another goroutine, possibly before SendAsync returns.
func (s *Service) SendAsync(ctx context.Context, u User, req SendRequest, done func(protocol.Ack, error)) {
	if req.Kind == "" {
		req.Kind = event.KindMessage
	}
	switch req.Kind {
	case event.KindDelete:
	case event.KindReaction:
		// REST bodies come here without Decode; frames were checked already (cheaply).
		on := req.On
		if e := protocol.ValidateReact(req.Room, req.ClientMsgID, req.TargetSeq, req.Emoji, &on, s.cfg.Limits); e != nil {
			done(protocol.Ack{}, e)
			return
		}
	default:
		if e := protocol.ValidateText(req.ClientMsgID, req.Text, s.cfg.Limits); e != nil {
			done(protocol.Ack{}, e)
			return
		}
	}
	if len(req.Attachments) > 0 {
		e := protocol.ValidateAttachmentIDs(req.Attachments)
		if e == nil && req.Kind != event.KindMessage {
			e = protocol.NewError(protocol.CodeBadRequest, "attachments: only a new message can carry them")
		}
		if e != nil {
			done(protocol.Ack{}, e)
			return
		}
	}
	if req.ThreadRoot != 0 {
		e := protocol.ValidateThreadRoot(req.ThreadRoot)
		if e == nil && req.Kind != event.KindMessage {
			e = protocol.NewError(protocol.CodeBadRequest, "thread_root: only a new message can be a reply")
		}
		if e != nil {
			done(protocol.Ack{}, e)
			return
		}
	}
	chk, err := s.store.CheckSend(ctx, req.Room, u.ID, req.ClientMsgID)
	if err != nil {
		done(protocol.Ack{}, s.internal(ctx, "cannot check send", err))
		return
	}
	if !chk.RoomFound {
		done(protocol.Ack{}, errNoRoom())
		return
	}
	if !chk.Member {
		done(protocol.Ack{}, notMember(req.Room, chk.Private))
		return
	}
	ack := protocol.Ack{Base: protocol.Base{Type: protocol.TypeAck}, Room: req.Room, ClientMsgID: req.ClientMsgID}
	if chk.DupSeq > 0 {
		ack.Status, ack.Seq, ack.MessageID = protocol.AckDuplicate, chk.DupSeq, chk.DupID
		done(ack, nil)
		return
	}
	if chk.Muted && req.Kind != event.KindDelete {
		// Deleting one's own message is still allowed: it removes, never adds, content.
		done(protocol.Ack{}, errMuted())
		return
	}
	if req.Kind == event.KindEdit || req.Kind == event.KindDelete || req.Kind == event.KindReaction {
		if err := s.checkTarget(ctx, u, chk, req); err != nil {
			done(protocol.Ack{}, err)
			return
		}
	}
	if req.ThreadRoot > 0 {
		if err := s.checkThreadRoot(ctx, req); err != nil {
			done(protocol.Ack{}, err)
			return
		}
	}
	if len(req.Attachments) > 0 {
		// Refused here, before publishing, so that a bad id is the sender's clear error
		// rather than a message persistence dead-letters (it checks again, under a lock).
		if err := s.checkAttachable(ctx, u, req); err != nil {
			done(protocol.Ack{}, err)
			return
		}
	}
	e, err := event.New(s.source(), event.MessageSubmitted{
		RoomID: req.Room, Sender: u.ID, SenderName: u.Username, ClientMsgID: req.ClientMsgID,
		Text: req.Text, Kind: req.Kind, TargetSeq: req.TargetSeq, Emoji: req.Emoji, On: req.On, SubmittedAt: s.cfg.Now().UTC(),
		Attachments: req.Attachments, ThreadRoot: req.ThreadRoot,
	})
	if err != nil {
		done(protocol.Ack{}, protocol.NewError(protocol.CodeBadRequest, err.Error()))
		return
	}
	published := func(err error) {
		if err != nil {
			s.log.WarnContext(ctx, "publish failed", "event_id", e.ID, "room", req.Room, "error", err)
			done(protocol.Ack{}, errUnavailable(err))
			return
		}
		s.accepted.Add(1)
		ack.Status, ack.MessageID = protocol.AckAccepted, e.ID
		done(ack, nil)
	}
	if err := s.pub.PublishAsync(ctx, topics.Submitted, req.Room, e, published); err != nil {
		published(err)
	}
}

// checkTarget decides whether u may edit, delete or react to the entry at req.TargetSeq:
// it must be a message (not a join, an edit...), not deleted, and for an edit or delete u
// must be its author or an admin of the room (any member may react). Persistence checks
// the same again when it stores the change, since the target may change (be deleted)
// between this check and then.
func (s *Service) checkTarget(ctx context.Context, u User, chk store.SendCheck, req SendRequest) error {
	t, err := s.store.MessageAt(ctx, req.Room, req.TargetSeq)
	if errors.Is(err, store.ErrNotFound) {
		return protocol.NewError(protocol.CodeNotFound, "no message with that seq")
	}
	if err != nil {
		return s.internal(ctx, "cannot read target", err)
	}
	if req.Kind == event.KindReaction {
		switch {
		case t.Kind != event.KindMessage:
			return protocol.NewError(protocol.CodeBadRequest, "only messages can be reacted to, not "+t.Kind+" entries")
		case t.DeletedAt != nil:
			return protocol.NewError(protocol.CodeConflict, "a deleted message cannot be reacted to")
		}
		return nil
	}
	switch {
	case t.Kind != event.KindMessage:
		return protocol.NewError(protocol.CodeBadRequest, "only messages can be edited or deleted, not "+t.Kind+" entries")
	case t.Sender != u.ID && !isModerator(chk.Role):
		return protocol.NewError(protocol.CodeForbidden, "only the author or a room admin may "+req.Kind+" this message")
	case t.DeletedAt != nil && req.Kind == event.KindDelete:
		return protocol.NewError(protocol.CodeConflict, "message is already deleted")
	case t.DeletedAt != nil:
		return protocol.NewError(protocol.CodeConflict, "a deleted message cannot be edited")
	}
	return nil
}

// PublishTyping publishes a typing signal to chat.ephemeral; it is never stored.
func (s *Service) PublishTyping(ctx context.Context, u User, room string) error {
	e, err := event.New(s.source(), event.Typing{RoomID: room, User: u.ID, UserName: u.Username, State: event.TypingStarted})
	if err != nil {
		return err
	}
	if err := s.pub.Publish(ctx, topics.Ephemeral, room, e); err != nil {
		return errUnavailable(err)
	}
	return nil
}

// HistoryQuery selects a page: Before (exclusive, newest page below it) or After
// (exclusive, oldest page above it); neither means the newest page.
type HistoryQuery struct {
	Before int64
	After  int64
	Limit  int
}

// History returns a page of the room's timeline, oldest first, with current text and
// edit/delete marks, for members only.
func (s *Service) History(ctx context.Context, u User, roomID string, q HistoryQuery) (protocol.HistoryPage, error) {
	if _, err := s.Access(ctx, u, roomID); err != nil {
		return protocol.HistoryPage{}, err
	}
	if q.Limit <= 0 {
		q.Limit = protocol.DefaultHistoryLimit
	}
	if q.Limit > s.cfg.Limits.MaxHistory {
		return protocol.HistoryPage{}, protocol.NewError(protocol.CodeBadRequest, fmt.Sprintf("limit must be at most %d", s.cfg.Limits.MaxHistory))
	}
	if q.Before > 0 && q.After > 0 {
		return protocol.HistoryPage{}, protocol.NewError(protocol.CodeBadRequest, "give before or after, not both")
	}
	var ms []store.Message
	var err error
	if q.After > 0 {
		ms, err = s.store.MessagesAfter(ctx, roomID, q.After, q.Limit+1)
	} else {
		before := q.Before
		if before <= 0 {
			before = 1<<63 - 1
		}
		ms, err = s.store.MessagesBefore(ctx, roomID, before, q.Limit+1)
	}
	if err != nil {
		return protocol.HistoryPage{}, s.internal(ctx, "cannot read history", err)
	}
	page := protocol.HistoryPage{Base: protocol.Base{Type: protocol.TypeHistory}, Room: roomID, HasMore: len(ms) > q.Limit}
	ms = ms[:min(len(ms), q.Limit)]
	if q.After <= 0 {
		slices.Reverse(ms)
	}
	page.Messages = make([]protocol.Message, len(ms))
	for i, m := range ms {
		page.Messages[i] = FrameOf(m)
	}
	if err := s.addReactions(ctx, u, roomID, page.Messages); err != nil {
		return protocol.HistoryPage{}, err
	}
	if err := s.addAttachments(ctx, roomID, page.Messages); err != nil {
		return protocol.HistoryPage{}, err
	}
	if err := s.addThreads(ctx, u, roomID, page.Messages); err != nil {
		return protocol.HistoryPage{}, err
	}
	return page, nil
}

// addReactions fills in the current reactions of a page's messages with one query for
// the page. A deleted message has none (its delete removed them).
func (s *Service) addReactions(ctx context.Context, u User, roomID string, page []protocol.Message) error {
	at := make(map[int64]*protocol.Message, len(page))
	var seqs []int64
	for i := range page {
		if m := &page[i]; m.Kind == event.KindMessage && m.DeletedAt == nil {
			at[m.Seq] = m
			seqs = append(seqs, m.Seq)
		}
	}
	rs, err := s.store.Reactions(ctx, roomID, u.ID, seqs, protocol.MaxReactionNames)
	if err != nil {
		return s.internal(ctx, "cannot read reactions", err)
	}
	for _, r := range rs {
		if m := at[r.TargetSeq]; m != nil {
			m.Reactions = append(m.Reactions, protocol.ReactionCount{Emoji: r.Emoji, Count: r.Count, Me: r.Me, Users: r.Users})
		}
	}
	return nil
}

// FrameOf renders a stored timeline row as a message frame. A deleted message keeps its
// place and marks but not its text (persistence clears it too; this covers rows deleted
// before it did).
func FrameOf(m store.Message) protocol.Message {
	if m.DeletedAt != nil {
		m.Text = ""
	}
	f := protocol.Message{
		Base: protocol.Base{Type: protocol.TypeMessage}, Room: m.RoomID, Seq: m.Seq, Kind: m.Kind, MessageID: m.EventID,
		Sender: m.Sender, SenderName: m.SenderName, ClientMsgID: m.ClientMsgID, Text: m.Text, TargetSeq: m.TargetSeq,
		SentAt: m.SentAt, StoredAt: m.StoredAt, EditedAt: m.EditedAt, DeletedAt: m.DeletedAt, Emoji: m.Emoji, On: m.On,
		ThreadRoot: m.ThreadRoot,
	}
	if c := m.RoomChange; c != nil {
		f.Change, f.Target, f.TargetName, f.Role, f.Settings = c.Change, c.Target, c.TargetName, c.Role, c.Settings
	}
	return f
}

// FrameOfStored renders a live message.stored event as a message frame.
func FrameOfStored(m event.MessageStored) protocol.Message {
	f := protocol.Message{
		Base: protocol.Base{Type: protocol.TypeMessage}, Room: m.RoomID, Seq: m.Seq, Kind: m.Kind, MessageID: m.MessageID,
		Sender: m.Sender, SenderName: m.SenderName, ClientMsgID: m.ClientMsgID, Text: m.Text, TargetSeq: m.TargetSeq,
		SentAt: m.SentAt, StoredAt: m.StoredAt, Emoji: m.Emoji, Attachments: m.Attachments, ThreadRoot: m.ThreadRoot,
	}
	if m.Kind == event.KindReaction {
		on := m.On
		f.On = &on
	}
	if m.Kind == event.KindRoomChange {
		f.Change, f.Target, f.TargetName, f.Role, f.Settings = m.Change, m.Target, m.TargetName, m.Role, m.Settings
	}
	return f
}
