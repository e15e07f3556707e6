// Attachments, linked to their message in the transaction that stores it. The gateway
// checked the upload ids when it accepted the message, but an event in chat.submitted is
// only as trustworthy as whoever wrote it, and two messages may name the same upload: so
// each id is checked again here, under a row lock, and a message naming an upload that is
// unknown, another user's, another room's or attached already is refused as a permanent
// error (the runner dead-letters it, the partition goes on). A delete marks its
// message's attachments deleted in the same transaction; the gateways' sweeper deletes
// their files after a grace period.

package store

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/kchat/kchat/pkg/consumer"
	"github.com/kchat/kchat/pkg/event"
)

// ErrBadAttachment refuses a message that names an upload it may not carry.
var ErrBadAttachment = errors.New("store: attachment is unknown, not the sender's upload to this room, or attached already")

// attachmentRow is an upload as the batch starts (or as an earlier message of the batch
// left it: attached marks one that message took).
type attachmentRow struct {
	room, uploader string
	attached       bool
	meta           event.Attachment
}

// queueAttachmentReads reads, and locks, every upload the batch's messages name. The
// lock keeps the sweeper (which skips locked rows) from deleting an upload this
// transaction is attaching.
func queueAttachmentReads(b *pgx.Batch, items []item, st *dbState) {
	var ids []string
	for _, it := range items {
		if it.sub != nil {
			ids = append(ids, it.sub.Attachments...)
		}
	}
	if len(ids) == 0 {
		return
	}
	b.Queue(`
		SELECT id, room_id, uploader, message_seq IS NOT NULL, filename, content_type, size,
		       coalesce(width, 0), coalesce(height, 0), thumb_key IS NOT NULL
		FROM attachments WHERE id = ANY($1::text[]) AND deleted_at IS NULL
		ORDER BY id
		FOR UPDATE`, ids).
		Query(func(rows pgx.Rows) error {
			var a attachmentRow
			_, err := pgx.ForEachRow(rows, []any{&a.meta.ID, &a.room, &a.uploader, &a.attached, &a.meta.Filename,
				&a.meta.ContentType, &a.meta.Size, &a.meta.Width, &a.meta.Height, &a.meta.Thumbnail}, func() error {
				aa := a
				st.attachments[aa.meta.ID] = &aa
				return nil
			})
			return err
		})
}

// checkAttachments resolves a message's upload ids to their metadata, in the order the
// message names them, and marks them taken for the rest of the batch.
func checkAttachments(it item, st *dbState) ([]event.Attachment, error) {
	ids := it.sub.Attachments
	if len(ids) == 0 {
		return nil, nil
	}
	out := make([]event.Attachment, 0, len(ids))
	for _, id := range ids {
		a := st.attachments[id]
		if a == nil || a.attached || a.room != it.room || a.uploader != it.sub.Sender {
			return nil, consumer.Permanent(fmt.Errorf("event %s: attachment %q: %w", it.env.ID, id, ErrBadAttachment))
		}
		out = append(out, a.meta)
	}
	for _, id := range ids {
		st.attachments[id].attached = true
	}
	return out, nil
}

// queueAttachmentWrites links the batch's messages to their uploads and marks the
// attachments of the messages it deletes.
func queueAttachmentWrites(b *pgx.Batch, w *writes) {
	for _, m := range w.messages {
		if len(m.attachments) == 0 {
			continue
		}
		ids := make([]string, len(m.attachments))
		for i, a := range m.attachments {
			ids[i] = a.ID
		}
		b.Queue(`UPDATE attachments SET message_seq = $2, attached_at = $3, position = array_position($1::text[], id) WHERE id = ANY($1::text[])`, ids, m.seq, w.storedAt)
	}
	for _, u := range w.updates {
		if u.kind == event.KindDelete {
			b.Queue(`UPDATE attachments SET deleted_at = $3 WHERE room_id = $1 AND message_seq = $2 AND deleted_at IS NULL`,
				u.room, u.targetSeq, w.storedAt)
		}
	}
}
