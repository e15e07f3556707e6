package email

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DB is what the worker needs from PostgreSQL; *pgxpool.Pool satisfies it.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Begin(ctx context.Context) (pgx.Tx, error)
}

// store holds the worker's SQL. Every time comparison uses the database's clock, so that
// instances whose clocks disagree still agree on what is due.
type store struct {
	db DB
}

// due is a user with notifications to mail and how long until their digest is due
// (negative: overdue).
type due struct {
	userID string
	wait   time.Duration
}

// pendingSQL selects a user's notifications that a digest may cover: unread, not quiet
// (created during do-not-disturb hours: in the app only), created since e-mail was
// switched on, and covered by no digest yet.
const pendingSQL = `
	n.read_at IS NULL AND NOT n.quiet AND n.created_at >= s.enabled_at
	AND NOT EXISTS (SELECT 1 FROM email_digest_items i WHERE i.notification_id = n.id)`

// dueUsers returns up to limit users with e-mail on, notifications to mail and no digest
// in flight, soonest due first. A digest is due one interval after the oldest notification
// it would cover (the batching window), and not before one interval after the last one.
func (s store) dueUsers(ctx context.Context, limit int) ([]due, error) {
	rows, err := s.db.Query(ctx, `
		SELECT s.user_id,
		       extract(epoch FROM greatest(min(n.created_at), coalesce(s.last_digest_at, '-infinity'))
		                          + s.digest_interval - now())::float8
		FROM email_settings s
		JOIN notifications n ON n.user_id = s.user_id
		WHERE s.enabled AND `+pendingSQL+`
		  AND NOT EXISTS (SELECT 1 FROM email_digests d WHERE d.user_id = s.user_id AND d.status = 'pending')
		GROUP BY s.user_id
		ORDER BY 2
		LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("cannot find due digests: %w", err)
	}
	var out []due
	var d due
	var secs float64
	_, err = pgx.ForEachRow(rows, []any{&d.userID, &secs}, func() error {
		d.wait = seconds(secs)
		out = append(out, d)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cannot find due digests: %w", err)
	}
	return out, nil
}

// plan creates the next digest of userID if it is due: the digest row, the notifications
// it covers (at most maxItems, oldest first) and the user's last_digest_at, in one
// transaction. It returns the digest id and how many notifications it covers; an empty id
// when there was nothing to do (not due any more, e-mail switched off, a digest in flight,
// or another instance planning this user right now).
func (s store) plan(ctx context.Context, userID string, maxItems int) (string, int, error) {
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return "", 0, fmt.Errorf("cannot begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	// The row lock serialises planners of one user across instances; SKIP LOCKED lets
	// the loser move on instead of waiting to find nothing left.
	var inFlight, isDue bool
	var ids []string
	err = tx.QueryRow(ctx, `
		WITH s AS (
		    SELECT user_id, enabled_at, last_digest_at, digest_interval FROM email_settings
		    WHERE user_id = $1 AND enabled FOR UPDATE SKIP LOCKED),
		p AS (
		    SELECT n.id, n.created_at FROM s JOIN notifications n ON n.user_id = s.user_id
		    WHERE `+pendingSQL+`
		    ORDER BY n.id LIMIT $2)
		SELECT EXISTS (SELECT 1 FROM email_digests d WHERE d.user_id = $1 AND d.status = 'pending'),
		       coalesce((SELECT greatest(min(p.created_at), coalesce(s.last_digest_at, '-infinity')) + s.digest_interval <= now()
		                 FROM s, p GROUP BY s.last_digest_at, s.digest_interval), false),
		       coalesce((SELECT array_agg(id ORDER BY id) FROM p), '{}')`, userID, maxItems).Scan(&inFlight, &isDue, &ids)
	if err != nil {
		return "", 0, fmt.Errorf("cannot plan a digest for %s: %w", userID, err)
	}
	if inFlight || !isDue || len(ids) == 0 {
		return "", 0, nil
	}
	id, err := uuid.NewV7()
	if err != nil {
		return "", 0, fmt.Errorf("cannot mint a digest id: %w", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO email_digests (id, user_id) VALUES ($1, $2)`, id.String(), userID); err != nil {
		return "", 0, fmt.Errorf("cannot plan a digest for %s: %w", userID, err)
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO email_digest_items (notification_id, digest_id)
		SELECT unnest($1::text[]), $2`, ids, id.String()); err != nil {
		return "", 0, fmt.Errorf("cannot plan a digest for %s: %w", userID, err)
	}
	if _, err := tx.Exec(ctx, `UPDATE email_settings SET last_digest_at = now() WHERE user_id = $1`, userID); err != nil {
		return "", 0, fmt.Errorf("cannot plan a digest for %s: %w", userID, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return "", 0, fmt.Errorf("cannot plan a digest for %s: %w", userID, err)
	}
	return id.String(), len(ids), nil
}

// claimed is a digest this worker holds the lease of.
type claimed struct {
	id, userID string
	attempts   int // including the one about to be made
}

// claim takes the most overdue pending digest and leases it for lease: its due time moves
// to the lease's end, so nobody else sends it meanwhile, and if this worker dies it is due
// again then. ok is false when nothing is due.
func (s store) claim(ctx context.Context, lease time.Duration) (c claimed, ok bool, err error) {
	err = s.db.QueryRow(ctx, `
		UPDATE email_digests d SET attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => $1)
		WHERE d.id = (SELECT id FROM email_digests WHERE status = 'pending' AND next_attempt_at <= now()
		              ORDER BY next_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED)
		RETURNING d.id, d.user_id, d.attempts`, lease.Seconds()).Scan(&c.id, &c.userID, &c.attempts)
	if errors.Is(err, pgx.ErrNoRows) {
		return claimed{}, false, nil
	}
	if err != nil {
		return claimed{}, false, fmt.Errorf("cannot claim a digest: %w", err)
	}
	return c, true, nil
}

// nextAttempt returns how long until the next pending digest is due; ok is false when
// none is pending.
func (s store) nextAttempt(ctx context.Context) (time.Duration, bool, error) {
	var secs *float64
	err := s.db.QueryRow(ctx, `
		SELECT extract(epoch FROM min(next_attempt_at) - now())::float8 FROM email_digests WHERE status = 'pending'`).Scan(&secs)
	if err != nil {
		return 0, false, fmt.Errorf("cannot find the next digest attempt: %w", err)
	}
	if secs == nil {
		return 0, false, nil
	}
	return seconds(*secs), true, nil
}

// load reads a digest with its recipient's current settings and its notifications.
// enabled is false when the user has switched e-mail off (or removed the settings) since
// the digest was planned.
func (s store) load(ctx context.Context, id string) (d Digest, enabled bool, err error) {
	var address *string
	err = s.db.QueryRow(ctx, `
		SELECT d.user_id, u.username, s.address, coalesce(s.enabled, false)
		FROM email_digests d
		JOIN users u ON u.id = d.user_id
		LEFT JOIN email_settings s ON s.user_id = d.user_id
		WHERE d.id = $1`, id).Scan(&d.UserID, &d.Username, &address, &enabled)
	if err != nil {
		return Digest{}, false, fmt.Errorf("cannot read digest %s: %w", id, err)
	}
	d.ID = id
	if address != nil {
		d.Address = *address
	}
	rows, err := s.db.Query(ctx, `
		SELECT n.id, n.room_id, r.name, r.kind, n.seq, n.reason, coalesce(su.username, n.sender), n.preview, n.created_at
		FROM email_digest_items i
		JOIN notifications n ON n.id = i.notification_id
		JOIN rooms r ON r.id = n.room_id
		LEFT JOIN users su ON su.id = n.sender
		WHERE i.digest_id = $1
		ORDER BY n.id`, id)
	if err != nil {
		return Digest{}, false, fmt.Errorf("cannot read digest %s: %w", id, err)
	}
	var it Item
	_, err = pgx.ForEachRow(rows, []any{&it.NotificationID, &it.RoomID, &it.RoomName, &it.RoomKind, &it.Seq, &it.Reason,
		&it.Sender, &it.Preview, &it.CreatedAt}, func() error {
		d.Items = append(d.Items, it)
		return nil
	})
	if err != nil {
		return Digest{}, false, fmt.Errorf("cannot read digest %s: %w", id, err)
	}
	return d, enabled, nil
}

// settle records how an attempt ended. Only a pending digest changes: if a lease expired
// and two workers sent the same digest, the second to finish changes nothing.
func (s store) settle(ctx context.Context, id, outcome string, retryIn time.Duration, cause error) error {
	var msg *string
	if cause != nil {
		m := cause.Error()
		if len(m) > 1000 {
			m = m[:1000]
		}
		msg = &m
	}
	var err error
	switch outcome {
	case OutcomeSent:
		_, err = s.db.Exec(ctx, `UPDATE email_digests SET status = 'sent', sent_at = now(), last_error = NULL
			WHERE id = $1 AND status = 'pending'`, id)
	case OutcomeRetry:
		_, err = s.db.Exec(ctx, `UPDATE email_digests SET next_attempt_at = now() + make_interval(secs => $2), last_error = $3
			WHERE id = $1 AND status = 'pending'`, id, retryIn.Seconds(), msg)
	case OutcomeFailed, OutcomeCancelled:
		_, err = s.db.Exec(ctx, `UPDATE email_digests SET status = $2, last_error = $3
			WHERE id = $1 AND status = 'pending'`, id, outcome, msg)
	default:
		return fmt.Errorf("unknown outcome %q", outcome)
	}
	if err != nil {
		return fmt.Errorf("cannot record digest %s as %s: %w", id, outcome, err)
	}
	return nil
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
