// Package notifications reads and writes the notifications table: the notification
// service inserts rows (inside its inbox transaction), the gateways list them, count the
// unread ones, deliver the unread ones at login and mark them read.
//
// Ids are UUIDv7 strings stored with COLLATE "C", so ordering by id is ordering by
// creation time; "newest first" and paging use the id alone.
package notifications

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const (
	// DefaultListLimit is used by List when limit is zero or negative.
	DefaultListLimit = 50
	// MaxListLimit caps one page of List.
	MaxListLimit = 200
	// MaxPending caps Pending: a user back after a long absence gets the newest MaxPending
	// unread notifications at login, and the rest through List.
	MaxPending = 500
)

// ErrInvalid reports an argument no query could satisfy (an empty user id).
var ErrInvalid = errors.New("notifications: invalid argument")

// Notification is one row of the notifications table.
type Notification struct {
	ID        string
	UserID    string // the recipient
	RoomID    string
	Seq       int64
	Reason    string // event.ReasonDM, event.ReasonMention or event.ReasonRoom
	Sender    string
	Preview   string
	CreatedAt time.Time
	ReadAt    *time.Time // nil while unread
	// Quiet: created during the recipient's do-not-disturb hours; in the app only, no
	// outside channel (e-mail, push) sends it (pkg/notifications/prefs).
	Quiet bool
}

// Querier is what the store needs from PostgreSQL. *pgxpool.Pool, *pgx.Conn and pgx.Tx
// satisfy it, so Insert runs inside the caller's transaction and the read methods on a pool.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Store reads and updates a user's notifications. It holds no state besides db and is
// safe for concurrent use. Every method is scoped to one user: no method reads or changes
// another user's rows, whatever ids it is given.
type Store struct {
	db Querier
}

// NewStore returns a Store on db (normally a *pgxpool.Pool).
func NewStore(db Querier) *Store { return &Store{db: db} }

const columns = `id, user_id, room_id, seq, reason, sender, preview, created_at, read_at, quiet`

// List returns userID's notifications newest first, at most limit of them (DefaultListLimit
// when limit <= 0, never more than MaxListLimit). With beforeID set it returns those older
// than that notification: pass the last id of a page to get the next one. Paging by id is
// stable while new notifications arrive, unlike an offset.
func (s *Store) List(ctx context.Context, userID, beforeID string, limit int) ([]Notification, error) {
	if userID == "" {
		return nil, fmt.Errorf("%w: empty user id", ErrInvalid)
	}
	if limit <= 0 {
		limit = DefaultListLimit
	}
	limit = min(limit, MaxListLimit)
	rows, err := s.db.Query(ctx, `
		SELECT `+columns+` FROM notifications
		WHERE user_id = $1 AND ($2 = '' OR id < $2)
		ORDER BY id DESC
		LIMIT $3`, userID, beforeID, limit)
	if err != nil {
		return nil, fmt.Errorf("cannot list notifications: %w", err)
	}
	return collect(rows)
}

// Pending returns userID's unread notifications in creation order (oldest first, the
// order to show them in), at most the newest MaxPending.
func (s *Store) Pending(ctx context.Context, userID string) ([]Notification, error) {
	if userID == "" {
		return nil, fmt.Errorf("%w: empty user id", ErrInvalid)
	}
	rows, err := s.db.Query(ctx, `
		SELECT * FROM (
			SELECT `+columns+` FROM notifications
			WHERE user_id = $1 AND read_at IS NULL
			ORDER BY id DESC
			LIMIT $2
		) newest ORDER BY id`, userID, MaxPending)
	if err != nil {
		return nil, fmt.Errorf("cannot read pending notifications: %w", err)
	}
	return collect(rows)
}

// UnreadCount returns how many of userID's notifications are unread.
func (s *Store) UnreadCount(ctx context.Context, userID string) (int, error) {
	if userID == "" {
		return 0, fmt.Errorf("%w: empty user id", ErrInvalid)
	}
	var n int
	if err := s.db.QueryRow(ctx, `SELECT count(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL`,
		userID).Scan(&n); err != nil {
		return 0, fmt.Errorf("cannot count unread notifications: %w", err)
	}
	return n, nil
}

// MarkRead marks the given notifications of userID read and returns how many changed.
// Ids of other users' notifications, unknown ids and ids already read are ignored, so a
// client may retry freely and can never touch someone else's notifications.
func (s *Store) MarkRead(ctx context.Context, userID string, ids []string) (int, error) {
	if userID == "" {
		return 0, fmt.Errorf("%w: empty user id", ErrInvalid)
	}
	if len(ids) == 0 {
		return 0, nil
	}
	tag, err := s.db.Exec(ctx, `
		UPDATE notifications SET read_at = now()
		WHERE user_id = $1 AND id = ANY($2::text[]) AND read_at IS NULL`, userID, ids)
	if err != nil {
		return 0, fmt.Errorf("cannot mark notifications read: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// MarkAllRead marks every unread notification of userID read and returns how many changed.
func (s *Store) MarkAllRead(ctx context.Context, userID string) (int, error) {
	if userID == "" {
		return 0, fmt.Errorf("%w: empty user id", ErrInvalid)
	}
	tag, err := s.db.Exec(ctx, `UPDATE notifications SET read_at = now() WHERE user_id = $1 AND read_at IS NULL`, userID)
	if err != nil {
		return 0, fmt.Errorf("cannot mark notifications read: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// Skip is a recipient the rules chose but who was not notified because they were online.
type Skip struct {
	UserID string
	RoomID string
	Seq    int64
	Reason string
}

// InsertSkips records skipped recipients through q (the caller's transaction, the same
// that inserts the notifications). Presence is not in the log; these rows are what lets a
// rebuild from the log reach the same decisions. Repeats are ignored.
func InsertSkips(ctx context.Context, q Querier, skips []Skip) error {
	if len(skips) == 0 {
		return nil
	}
	users, rooms, seqs, reasons := make([]string, len(skips)), make([]string, len(skips)), make([]int64, len(skips)), make([]string, len(skips))
	for i, k := range skips {
		users[i], rooms[i], seqs[i], reasons[i] = k.UserID, k.RoomID, k.Seq, k.Reason
	}
	if _, err := q.Exec(ctx, `
		INSERT INTO notification_skips (user_id, room_id, seq, reason)
		SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[])
		ON CONFLICT DO NOTHING`, users, rooms, seqs, reasons); err != nil {
		return fmt.Errorf("cannot record skipped recipients: %w", err)
	}
	return nil
}

// Insert writes ns through q (normally the caller's transaction) and returns the ones
// actually inserted, in the order given. A notification whose id or whose (user, room,
// seq, reason) already exists is skipped: that is how a redelivered event creates nothing.
// ReadAt is ignored; new notifications are unread.
func Insert(ctx context.Context, q Querier, ns []Notification) ([]Notification, error) {
	if len(ns) == 0 {
		return nil, nil
	}
	n := len(ns)
	ids, users, rooms := make([]string, n), make([]string, n), make([]string, n)
	seqs := make([]int64, n)
	reasons, senders, previews := make([]string, n), make([]string, n), make([]string, n)
	created := make([]time.Time, n)
	quiet := make([]bool, n)
	for i, x := range ns {
		ids[i], users[i], rooms[i], seqs[i] = x.ID, x.UserID, x.RoomID, x.Seq
		reasons[i], senders[i], previews[i], created[i], quiet[i] = x.Reason, x.Sender, x.Preview, x.CreatedAt, x.Quiet
	}
	rows, err := q.Query(ctx, `
		INSERT INTO notifications (id, user_id, room_id, seq, reason, sender, preview, created_at, quiet)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[],
		                     $7::text[], $8::timestamptz[], $9::boolean[])
		ON CONFLICT DO NOTHING
		RETURNING id`, ids, users, rooms, seqs, reasons, senders, previews, created, quiet)
	if err != nil {
		return nil, fmt.Errorf("cannot insert notifications: %w", err)
	}
	inserted, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("cannot insert notifications: %w", err)
	}
	isNew := make(map[string]bool, len(inserted))
	for _, id := range inserted {
		isNew[id] = true
	}
	out := make([]Notification, 0, len(inserted))
	for _, x := range ns {
		if isNew[x.ID] {
			x.ReadAt = nil
			out = append(out, x)
		}
	}
	return out, nil
}

func collect(rows pgx.Rows) ([]Notification, error) {
	ns, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Notification, error) {
		var n Notification
		err := r.Scan(&n.ID, &n.UserID, &n.RoomID, &n.Seq, &n.Reason, &n.Sender, &n.Preview, &n.CreatedAt, &n.ReadAt, &n.Quiet)
		return n, err
	})
	if err != nil {
		return nil, fmt.Errorf("cannot read notifications: %w", err)
	}
	return ns, nil
}
