package push

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DB is what the worker needs from PostgreSQL; *pgxpool.Pool satisfies it.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// store holds the worker's SQL. Every time comparison uses the database's clock, so that
// instances whose clocks disagree still agree on what is due.
type store struct {
	db DB
}

// plan creates a pending delivery for every unread, not quiet notification younger than
// maxAge and every device its user subscribed before it was created, unless one exists
// (sent, failed or pending alike: the primary key is what keeps a push from being
// planned twice). It reads each subscribed user's unread notifications through the
// (user_id, id) partial index. Returns how many were planned.
func (s store) plan(ctx context.Context, maxAge time.Duration) (int, error) {
	tag, err := s.db.Exec(ctx, `
		INSERT INTO push_deliveries (notification_id, subscription_id)
		SELECT n.id, s.id
		FROM push_subscriptions s
		JOIN notifications n ON n.user_id = s.user_id AND n.read_at IS NULL
		WHERE NOT n.quiet AND n.created_at >= s.created_at AND n.created_at > now() - make_interval(secs => $1)
		ON CONFLICT DO NOTHING`, maxAge.Seconds())
	if err != nil {
		return 0, fmt.Errorf("cannot plan pushes: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// claimed is a delivery this worker holds the lease of.
type claimed struct {
	notificationID, subscriptionID string
	attempts                       int // including the one about to be made
}

// claim takes the most overdue pending delivery and leases it: its due time moves to the
// lease's end, so nobody else sends it meanwhile, and if this worker dies it is due again
// then. ok is false when nothing is due.
func (s store) claim(ctx context.Context, lease time.Duration) (c claimed, ok bool, err error) {
	err = s.db.QueryRow(ctx, `
		UPDATE push_deliveries d SET attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => $1)
		WHERE (d.notification_id, d.subscription_id) = (
		    SELECT notification_id, subscription_id FROM push_deliveries
		    WHERE status = 'pending' AND next_attempt_at <= now()
		    ORDER BY next_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED)
		RETURNING d.notification_id, d.subscription_id, d.attempts`, lease.Seconds()).Scan(&c.notificationID, &c.subscriptionID, &c.attempts)
	if errors.Is(err, pgx.ErrNoRows) {
		return claimed{}, false, nil
	}
	if err != nil {
		return claimed{}, false, fmt.Errorf("cannot claim a push: %w", err)
	}
	return c, true, nil
}

// delivery is a claimed push with what it sends and where.
type delivery struct {
	Endpoint, P256dh, Auth string
	Message
	Read bool          // read since it was planned
	Age  time.Duration // since the notification was created
}

// load reads a claimed delivery. ok is false when it no longer exists (its subscription
// was removed meanwhile, which deletes its deliveries).
func (s store) load(ctx context.Context, c claimed) (d delivery, ok bool, err error) {
	var secs float64
	err = s.db.QueryRow(ctx, `
		SELECT s.endpoint, s.p256dh, s.auth, n.id, n.room_id, r.name, r.kind, n.seq, n.reason,
		       coalesce(u.username, n.sender), n.preview, n.read_at IS NOT NULL,
		       extract(epoch FROM now() - n.created_at)::float8
		FROM push_deliveries d
		JOIN push_subscriptions s ON s.id = d.subscription_id
		JOIN notifications n ON n.id = d.notification_id
		JOIN rooms r ON r.id = n.room_id
		LEFT JOIN users u ON u.id = n.sender
		WHERE d.notification_id = $1 AND d.subscription_id = $2`, c.notificationID, c.subscriptionID).Scan(
		&d.Endpoint, &d.P256dh, &d.Auth, &d.ID, &d.Room, &d.RoomName, &d.RoomKind, &d.Seq, &d.Reason,
		&d.Sender, &d.Preview, &d.Read, &secs)
	if errors.Is(err, pgx.ErrNoRows) {
		return delivery{}, false, nil
	}
	if err != nil {
		return delivery{}, false, fmt.Errorf("cannot read push %s/%s: %w", c.notificationID, c.subscriptionID, err)
	}
	d.Age = time.Duration(secs * float64(time.Second))
	return d, true, nil
}

// settle records how an attempt ended. Only a pending delivery changes: if a lease
// expired and two workers sent the same push, the second to finish changes nothing.
// OutcomeRemoved deletes the subscription, and with it all its deliveries.
func (s store) settle(ctx context.Context, c claimed, outcome string, retryIn time.Duration, cause error) error {
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
		_, err = s.db.Exec(ctx, `UPDATE push_deliveries SET status = 'sent', sent_at = now(), last_error = NULL
			WHERE notification_id = $1 AND subscription_id = $2 AND status = 'pending'`, c.notificationID, c.subscriptionID)
	case OutcomeRetry:
		_, err = s.db.Exec(ctx, `UPDATE push_deliveries SET next_attempt_at = now() + make_interval(secs => $3), last_error = $4
			WHERE notification_id = $1 AND subscription_id = $2 AND status = 'pending'`, c.notificationID, c.subscriptionID, retryIn.Seconds(), msg)
	case OutcomeFailed, OutcomeCancelled:
		_, err = s.db.Exec(ctx, `UPDATE push_deliveries SET status = $3, last_error = $4
			WHERE notification_id = $1 AND subscription_id = $2 AND status = 'pending'`, c.notificationID, c.subscriptionID, outcome, msg)
	case OutcomeRemoved:
		_, err = s.db.Exec(ctx, `DELETE FROM push_subscriptions WHERE id = $1`, c.subscriptionID)
	default:
		return fmt.Errorf("unknown outcome %q", outcome)
	}
	if err != nil {
		return fmt.Errorf("cannot record push %s/%s as %s: %w", c.notificationID, c.subscriptionID, outcome, err)
	}
	return nil
}

// nextAttempt returns how long until the next pending delivery is due; ok is false when
// none is pending.
func (s store) nextAttempt(ctx context.Context) (time.Duration, bool, error) {
	var secs *float64
	err := s.db.QueryRow(ctx, `
		SELECT extract(epoch FROM min(next_attempt_at) - now())::float8 FROM push_deliveries WHERE status = 'pending'`).Scan(&secs)
	if err != nil {
		return 0, false, fmt.Errorf("cannot find the next push attempt: %w", err)
	}
	if secs == nil {
		return 0, false, nil
	}
	return time.Duration(*secs * float64(time.Second)), true, nil
}
