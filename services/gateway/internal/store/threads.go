// Threads: reads of the thread summaries persistence keeps, a thread's replies, and the
// per-user thread read markers (the one thing about threads the gateway writes).

package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// ThreadSummary is a root's thread as one user sees it.
type ThreadSummary struct {
	RootSeq     int64
	ReplyCount  int
	LastReplyAt *time.Time
	LastSeq     int64
	Participant bool  // wrote the root or a reply, or has a thread read marker
	Unread      int64 // participants only: replies by others after their marker and last reply
}

// ErrNoThread is MarkThreadRead's answer for a root without replies.
var ErrNoThread = errors.New("store: no thread")

// threadUnread is the SQL of a thread's unread count for the user $3, for the threads row
// t and the user's thread_reads row r (possibly absent): replies by others, not deleted,
// after both the marker and the user's own last reply (replying is reading). The LIMIT
// bounds the scan like a room's unread count.
var threadUnread = `(SELECT count(*) FROM (SELECT 1 FROM messages x
		WHERE x.room_id = t.room_id AND x.thread_root = t.root_seq AND x.kind = 'message'
		  AND x.sender <> $3 AND x.deleted_at IS NULL
		  AND x.seq > greatest(coalesce(r.last_read_seq, 0), coalesce((SELECT max(y.seq) FROM messages y
		      WHERE y.room_id = t.room_id AND y.thread_root = t.root_seq AND y.sender = $3), 0))
		LIMIT ` + strconv.Itoa(MaxUnread) + `) unread)`

// ThreadSummaries returns the threads rooted at seqs of roomID that have replies, for
// userID, in one query for a history page.
func (s *Store) ThreadSummaries(ctx context.Context, roomID, userID string, seqs []int64) ([]ThreadSummary, error) {
	if len(seqs) == 0 {
		return nil, nil
	}
	return s.threadSummaries(ctx, `t.room_id = $1 AND t.root_seq = ANY($2::bigint[]) AND t.reply_count > 0`, roomID, seqs, userID)
}

func (s *Store) threadSummaries(ctx context.Context, where string, args ...any) ([]ThreadSummary, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT t.root_seq, t.reply_count, t.last_reply_at, t.last_seq,
		       $3 = ANY(t.participants) OR r.user_id IS NOT NULL,
		       CASE WHEN $3 = ANY(t.participants) OR r.user_id IS NOT NULL THEN `+threadUnread+` ELSE 0 END
		FROM threads t
		LEFT JOIN thread_reads r ON r.user_id = $3 AND r.room_id = t.room_id AND r.root_seq = t.root_seq
		WHERE `+where+`
		ORDER BY t.root_seq`, args...)
	if err != nil {
		return nil, fmt.Errorf("cannot read threads: %w", err)
	}
	ts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ThreadSummary, error) {
		var x ThreadSummary
		err := r.Scan(&x.RootSeq, &x.ReplyCount, &x.LastReplyAt, &x.LastSeq, &x.Participant, &x.Unread)
		return x, err
	})
	if err != nil {
		return nil, fmt.Errorf("cannot read threads: %w", err)
	}
	return ts, nil
}

// ThreadReplies returns up to limit replies of the thread rooted at root with seq > after,
// oldest first.
func (s *Store) ThreadReplies(ctx context.Context, roomID string, root, after int64, limit int) ([]Message, error) {
	rows, err := s.pool.Query(ctx, selectMessages+` WHERE room_id = $1 AND thread_root = $2 AND seq > $3 ORDER BY seq LIMIT $4`,
		roomID, root, after, limit)
	if err != nil {
		return nil, fmt.Errorf("cannot read replies: %w", err)
	}
	return scanMessages(rows)
}

// MarkThreadRead moves userID's read marker of the thread rooted at root forward to seq
// (never back) and returns the marker and the thread's unread count for userID from
// there. The caller checked membership. ErrNoThread: the root has no replies (ever);
// PastEndError: seq is past the thread's last reply.
func (s *Store) MarkThreadRead(ctx context.Context, userID, roomID string, root, seq int64) (int64, int64, error) {
	var lastSeq, marker, unread *int64
	err := s.pool.QueryRow(ctx, `
		WITH t AS (
			SELECT room_id, root_seq, last_seq FROM threads WHERE room_id = $1 AND root_seq = $2
		), r AS (
			INSERT INTO thread_reads (user_id, room_id, root_seq, last_read_seq)
			SELECT $3, t.room_id, t.root_seq, $4 FROM t WHERE $4 <= t.last_seq
			ON CONFLICT (user_id, room_id, root_seq) DO UPDATE
			SET last_read_seq = greatest(thread_reads.last_read_seq, EXCLUDED.last_read_seq),
			    updated_at = CASE WHEN EXCLUDED.last_read_seq > thread_reads.last_read_seq THEN now() ELSE thread_reads.updated_at END
			RETURNING last_read_seq
		)
		SELECT (SELECT last_seq FROM t), (SELECT last_read_seq FROM r),
		       (SELECT `+threadUnread+` FROM t, r)`, roomID, root, userID, seq).Scan(&lastSeq, &marker, &unread)
	switch {
	case err != nil:
		return 0, 0, fmt.Errorf("cannot mark thread read: %w", err)
	case lastSeq == nil:
		return 0, 0, ErrNoThread
	case marker == nil || unread == nil:
		return 0, 0, &PastEndError{LastSeq: *lastSeq}
	}
	return *marker, *unread, nil
}
