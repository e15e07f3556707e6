// Web Push subscriptions: the devices (browsers) a user asked to be pushed to, which the
// notification service's push worker sends each notification to.

package chat

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/pkg/webpush"
)

// PushSubscription is a stored device as the API shows it.
type PushSubscription struct {
	ID        string    `json:"id"`
	Endpoint  string    `json:"endpoint"`
	CreatedAt time.Time `json:"created_at"`
}

// PushDB is what the subscriptions need from PostgreSQL; *pgxpool.Pool satisfies it.
type PushDB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Push stores users' push subscriptions. Safe for concurrent use.
type Push struct {
	db        PushDB
	publicKey string // VAPID public key; "" when push is off
	log       *slog.Logger
}

// NewPush returns the subscriptions on db. publicKey is the VAPID public key browsers
// subscribe with (validated here: a malformed one is a configuration error); empty
// means push is off, and the endpoints answer unavailable.
func NewPush(db PushDB, publicKey string, log *slog.Logger) (*Push, error) {
	if db == nil {
		return nil, errors.New("chat: push subscriptions need a database")
	}
	if publicKey != "" {
		if _, err := webpush.ParsePublicKey(publicKey); err != nil {
			return nil, errors.New("chat: VAPID public key: " + err.Error())
		}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Push{db: db, publicKey: publicKey, log: log}, nil
}

func (p *Push) off() *protocol.Error {
	return protocol.NewError(protocol.CodeUnavailable, "web push is not configured on this server")
}

// PublicKey returns the VAPID public key (base64url) for PushManager.subscribe.
func (p *Push) PublicKey() (string, error) {
	if p.publicKey == "" {
		return "", p.off()
	}
	return p.publicKey, nil
}

// Subscribe stores s as one of u's devices. The same endpoint again replaces its keys; an
// endpoint another user subscribed (a shared browser now logged in as u) becomes u's
// alone, with a new id, so nothing planned for the other user reaches it.
func (p *Push) Subscribe(ctx context.Context, u User, s webpush.Subscription) (PushSubscription, error) {
	if p.publicKey == "" {
		return PushSubscription{}, p.off()
	}
	if err := s.Validate(); err != nil {
		return PushSubscription{}, protocol.NewError(protocol.CodeBadRequest, strings.TrimPrefix(err.Error(), webpush.ErrInvalid.Error()+": "))
	}
	id, err := uuid.NewV7()
	if err != nil {
		return PushSubscription{}, p.internal(ctx, "cannot mint a subscription id", err)
	}
	tx, err := p.db.Begin(ctx)
	if err != nil {
		return PushSubscription{}, p.internal(ctx, "cannot begin", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `DELETE FROM push_subscriptions WHERE endpoint = $1 AND user_id <> $2`, s.Endpoint, u.ID); err != nil {
		return PushSubscription{}, p.internal(ctx, "cannot write push subscription", err)
	}
	var out PushSubscription
	err = tx.QueryRow(ctx, `
		INSERT INTO push_subscriptions (id, user_id, endpoint, p256dh, auth) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (endpoint) DO UPDATE SET p256dh = EXCLUDED.p256dh, auth = EXCLUDED.auth
		RETURNING id, endpoint, created_at`, id.String(), u.ID, s.Endpoint, s.P256dh, s.Auth).Scan(&out.ID, &out.Endpoint, &out.CreatedAt)
	if err != nil {
		return PushSubscription{}, p.internal(ctx, "cannot write push subscription", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return PushSubscription{}, p.internal(ctx, "cannot write push subscription", err)
	}
	return out, nil
}

// Unsubscribe removes u's device with endpoint and reports whether there was one.
// Removing what is not there (or another user's) is no error and changes nothing.
func (p *Push) Unsubscribe(ctx context.Context, u User, endpoint string) (bool, error) {
	if endpoint == "" {
		return false, protocol.NewError(protocol.CodeBadRequest, "endpoint is required")
	}
	tag, err := p.db.Exec(ctx, `DELETE FROM push_subscriptions WHERE user_id = $1 AND endpoint = $2`, u.ID, endpoint)
	if err != nil {
		return false, p.internal(ctx, "cannot delete push subscription", err)
	}
	return tag.RowsAffected() > 0, nil
}

func (p *Push) internal(ctx context.Context, what string, err error) *protocol.Error {
	p.log.ErrorContext(ctx, what, "error", err)
	return errUnavailable(err)
}
