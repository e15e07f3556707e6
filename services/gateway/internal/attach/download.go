package attach

import (
	"context"
	"errors"
	"io"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/kchat/kchat/pkg/blobstore"
	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/services/gateway/internal/chat"
)

// File is an open download. The caller closes Body.
type File struct {
	Body        io.ReadCloser
	Size        int64
	ContentType string
	Filename    string
}

// errNoFile answers every download that may not happen, whatever the reason (unknown id,
// not a member, left, deleted message, another user's unattached upload), so that none
// tells whether the file exists.
func errNoFile() *protocol.Error {
	return protocol.NewError(protocol.CodeNotFound, "no such attachment")
}

// Open opens an attachment (or its thumbnail) for u. Membership is read now, at download
// time: a user who left or was removed from the room since gets not_found. An upload not
// attached yet is only its uploader's; a deleted message's files are nobody's.
func (s *Service) Open(ctx context.Context, u chat.User, id string, thumbnail bool) (File, error) {
	if !protocol.ValidUploadID(id) {
		return File{}, errNoFile()
	}
	var f File
	var key *string
	err := s.pool.QueryRow(ctx, `
		SELECT a.filename, a.content_type, CASE WHEN $3 THEN a.thumb_key ELSE a.blob_key END
		FROM attachments a
		JOIN room_members m ON m.room_id = a.room_id AND m.user_id = $2
		WHERE a.id = $1 AND a.deleted_at IS NULL AND (a.message_seq IS NOT NULL OR a.uploader = $2)`,
		id, u.ID, thumbnail).Scan(&f.Filename, &f.ContentType, &key)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && key == nil) {
		return File{}, errNoFile()
	}
	if err != nil {
		return File{}, s.unavailable(ctx, "cannot read attachment", err)
	}
	if thumbnail {
		f.ContentType = thumbType(f.ContentType)
	}
	body, info, err := s.blobs.Get(ctx, *key)
	if errors.Is(err, blobstore.ErrNotFound) {
		// Swept between the query and now.
		return File{}, errNoFile()
	}
	if err != nil {
		return File{}, s.unavailable(ctx, "cannot read file", err)
	}
	f.Body, f.Size = body, info.Size
	return f, nil
}

// Unattachable implements chat.Attachments.
func (s *Service) Unattachable(ctx context.Context, roomID, userID string, ids []string) (string, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT id FROM attachments
		WHERE id = ANY($1::text[]) AND room_id = $2 AND uploader = $3 AND message_seq IS NULL AND deleted_at IS NULL`,
		ids, roomID, userID)
	if err != nil {
		return "", err
	}
	ok, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", err
	}
	for _, id := range ids {
		if !slices.Contains(ok, id) {
			return id, nil
		}
	}
	return "", nil
}

// OfMessages implements chat.Attachments.
func (s *Service) OfMessages(ctx context.Context, roomID string, seqs []int64) (map[int64][]event.Attachment, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT message_seq, id, filename, content_type, size, coalesce(width, 0), coalesce(height, 0), thumb_key IS NOT NULL
		FROM attachments
		WHERE room_id = $1 AND message_seq = ANY($2::bigint[]) AND deleted_at IS NULL
		ORDER BY message_seq, position`, roomID, seqs)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int64][]event.Attachment{}
	var seq int64
	var a event.Attachment
	_, err = pgx.ForEachRow(rows, []any{&seq, &a.ID, &a.Filename, &a.ContentType, &a.Size, &a.Width, &a.Height, &a.Thumbnail}, func() error {
		out[seq] = append(out[seq], a)
		return nil
	})
	return out, err
}
