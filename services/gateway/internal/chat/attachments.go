// Attachments as the message logic sees them: a send's upload ids are checked before the
// message is published, and history pages get their messages' files. The uploads
// themselves (REST, blob store, sweeper) are package attach's.

package chat

import (
	"context"
	"slices"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/protocol"
)

// Attachments is the part of *attach.Service the message logic uses.
type Attachments interface {
	// Unattachable returns the first of ids that userID may not attach to a message in
	// roomID (unknown, another user's or room's upload, attached already or deleted), or
	// "" if every one may be.
	Unattachable(ctx context.Context, roomID, userID string, ids []string) (string, error)
	// OfMessages returns the files of the given messages of a room, by seq, in the order
	// each message named them.
	OfMessages(ctx context.Context, roomID string, seqs []int64) (map[int64][]event.Attachment, error)
}

// UseAttachments gives the Service the attachments it checks sends against and lists in
// history; call it before the Service serves. Without it, a send with attachments is
// refused as unavailable and history lists no files. (A setter, not a Config field: the
// attachments check room access through this Service.)
func (s *Service) UseAttachments(a Attachments) { s.attachments = a }

func (s *Service) checkAttachable(ctx context.Context, u User, req SendRequest) error {
	if s.attachments == nil {
		return protocol.NewError(protocol.CodeUnavailable, "attachments are not configured on this gateway")
	}
	bad, err := s.attachments.Unattachable(ctx, req.Room, u.ID, req.Attachments)
	if err != nil {
		return s.internal(ctx, "cannot check attachments", err)
	}
	if bad != "" {
		return protocol.NewError(protocol.CodeBadRequest, "attachments: "+bad+" is not an upload of yours to this room that can still be attached")
	}
	return nil
}

// addAttachments fills in the files of a page's live messages with one query.
func (s *Service) addAttachments(ctx context.Context, roomID string, page []protocol.Message) error {
	if s.attachments == nil {
		return nil
	}
	var seqs []int64
	for _, m := range page {
		if m.Kind == event.KindMessage && m.DeletedAt == nil {
			seqs = append(seqs, m.Seq)
		}
	}
	if len(seqs) == 0 {
		return nil
	}
	files, err := s.attachments.OfMessages(ctx, roomID, seqs)
	if err != nil {
		return s.internal(ctx, "cannot read attachments", err)
	}
	for i := range page {
		if fs, ok := files[page[i].Seq]; ok && page[i].DeletedAt == nil {
			page[i].Attachments = slices.Clone(fs)
		}
	}
	return nil
}
