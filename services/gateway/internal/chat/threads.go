// Threads: a reply's root checked before it is published, thread summaries added to
// history pages, thread pages and thread read markers.

package chat

import (
	"context"
	"errors"
	"fmt"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/services/gateway/internal/store"
)

// ThreadStore is the part of *store.Store that threads use (store/threads.go).
type ThreadStore interface {
	ThreadSummaries(ctx context.Context, roomID, userID string, seqs []int64) ([]store.ThreadSummary, error)
	ThreadReplies(ctx context.Context, roomID string, root, after int64, limit int) ([]store.Message, error)
	MarkThreadRead(ctx context.Context, userID, roomID string, root, seq int64) (int64, int64, error)
}

var _ ThreadStore = (*store.Store)(nil)

func (s *Service) threads() (ThreadStore, error) {
	if s.cfg.Threads == nil {
		return nil, protocol.NewError(protocol.CodeUnavailable, "threads are not available").Retry()
	}
	return s.cfg.Threads, nil
}

// checkThreadRoot refuses a reply whose root is not a live message of the room that is
// itself no reply. The sender's membership was checked already: the root is read only
// for someone who may read the room. Persistence checks the root again as it stores the
// reply.
func (s *Service) checkThreadRoot(ctx context.Context, req SendRequest) error {
	t, err := s.store.MessageAt(ctx, req.Room, req.ThreadRoot)
	if errors.Is(err, store.ErrNotFound) {
		return protocol.NewError(protocol.CodeNotFound, "thread_root: no message with that seq")
	}
	if err != nil {
		return s.internal(ctx, "cannot read thread root", err)
	}
	return rootProblem(t)
}

// rootProblem says why t cannot root a thread (nil if it can).
func rootProblem(t store.Message) error {
	switch {
	case t.Kind != event.KindMessage:
		return protocol.NewError(protocol.CodeBadRequest, "thread_root: only messages can start a thread, not "+t.Kind+" entries")
	case t.ThreadRoot != 0:
		return protocol.NewError(protocol.CodeBadRequest, fmt.Sprintf("thread_root: seq %d is a reply in the thread of %d; reply there", t.Seq, t.ThreadRoot))
	case t.DeletedAt != nil:
		return protocol.NewError(protocol.CodeConflict, "thread_root: a deleted message cannot be replied to")
	}
	return nil
}

// addThreads fills in the thread summaries of a page's roots with one query for the page.
func (s *Service) addThreads(ctx context.Context, u User, roomID string, page []protocol.Message) error {
	if s.cfg.Threads == nil {
		return nil
	}
	at := make(map[int64]*protocol.Message, len(page))
	var seqs []int64
	for i := range page {
		if m := &page[i]; m.Kind == event.KindMessage && m.ThreadRoot == 0 {
			at[m.Seq] = m
			seqs = append(seqs, m.Seq)
		}
	}
	ts, err := s.cfg.Threads.ThreadSummaries(ctx, roomID, u.ID, seqs)
	if err != nil {
		return s.internal(ctx, "cannot read threads", err)
	}
	for _, t := range ts {
		if m := at[t.RootSeq]; m != nil {
			m.Thread = summaryFrame(t)
		}
	}
	return nil
}

func summaryFrame(t store.ThreadSummary) *protocol.ThreadSummary {
	return &protocol.ThreadSummary{ReplyCount: t.ReplyCount, LastReplyAt: t.LastReplyAt, LastSeq: t.LastSeq,
		Participant: t.Participant, Unread: t.Unread}
}

// Thread returns the root of a thread (with its summary, reactions and attachments) and a
// page of its replies after after, oldest first, for members only. A root without
// replies is a thread with none.
func (s *Service) Thread(ctx context.Context, u User, roomID string, root, after int64, limit int) (protocol.ThreadPage, error) {
	if e := protocol.ValidateThreadPage(roomID, root, after, limit, s.cfg.Limits); e != nil {
		return protocol.ThreadPage{}, e
	}
	ts, err := s.threads()
	if err != nil {
		return protocol.ThreadPage{}, err
	}
	if _, err := s.Access(ctx, u, roomID); err != nil {
		return protocol.ThreadPage{}, err
	}
	if limit == 0 {
		limit = protocol.DefaultHistoryLimit
	}
	rm, err := s.store.MessageAt(ctx, roomID, root)
	if errors.Is(err, store.ErrNotFound) {
		return protocol.ThreadPage{}, protocol.NewError(protocol.CodeNotFound, "no message with that seq")
	}
	if err != nil {
		return protocol.ThreadPage{}, s.internal(ctx, "cannot read thread root", err)
	}
	if rm.Kind != event.KindMessage || rm.ThreadRoot != 0 {
		// A deleted root still shows its thread; only non-roots are refused.
		return protocol.ThreadPage{}, rootProblem(rm)
	}
	ms, err := ts.ThreadReplies(ctx, roomID, root, after, limit+1)
	if err != nil {
		return protocol.ThreadPage{}, s.internal(ctx, "cannot read replies", err)
	}
	page := protocol.ThreadPage{Base: protocol.Base{Type: protocol.TypeThread}, Room: roomID, HasMore: len(ms) > limit}
	ms = ms[:min(len(ms), limit)]
	all := make([]protocol.Message, 0, len(ms)+1)
	all = append(all, FrameOf(rm))
	for _, m := range ms {
		all = append(all, FrameOf(m))
	}
	if err := s.addReactions(ctx, u, roomID, all); err != nil {
		return protocol.ThreadPage{}, err
	}
	if err := s.addAttachments(ctx, roomID, all); err != nil {
		return protocol.ThreadPage{}, err
	}
	if err := s.addThreads(ctx, u, roomID, all[:1]); err != nil {
		return protocol.ThreadPage{}, err
	}
	page.Root, page.Messages = all[0], all[1:]
	return page, nil
}

// MarkThreadRead moves u's read marker of the thread rooted at root forward to seq, for
// members only, and returns the marker and u's unread count of the thread.
func (s *Service) MarkThreadRead(ctx context.Context, u User, roomID string, root, seq int64) (protocol.ThreadReadMarker, error) {
	if e := protocol.ValidateThreadRead(roomID, root, &seq); e != nil {
		return protocol.ThreadReadMarker{}, e
	}
	ts, err := s.threads()
	if err != nil {
		return protocol.ThreadReadMarker{}, err
	}
	if _, err := s.Access(ctx, u, roomID); err != nil {
		return protocol.ThreadReadMarker{}, err
	}
	marker, unread, err := ts.MarkThreadRead(ctx, u.ID, roomID, root, seq)
	switch {
	case errors.Is(err, store.ErrNoThread):
		return protocol.ThreadReadMarker{}, protocol.NewError(protocol.CodeNotFound, "no thread with replies at that seq")
	case errors.Is(err, store.ErrPastEnd):
		msg := fmt.Sprintf("seq %d is past the thread's last reply", seq)
		if pe, ok := errors.AsType[*store.PastEndError](err); ok {
			msg = fmt.Sprintf("%s %d", msg, pe.LastSeq)
		}
		return protocol.ThreadReadMarker{}, protocol.NewError(protocol.CodeBadRequest, msg)
	case err != nil:
		return protocol.ThreadReadMarker{}, s.internal(ctx, "cannot mark thread read", err)
	}
	return protocol.ThreadReadMarker{Base: protocol.Base{Type: protocol.TypeThreadRead}, Room: roomID, Root: root, Seq: marker, Unread: unread}, nil
}
