// E-mail settings: the address and switch the notification service's e-mail digests
// read, and the unsubscribe link those e-mails carry.

package chat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"strings"
	"unicode"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kchat/kchat/pkg/emailtoken"
	"github.com/kchat/kchat/pkg/protocol"
)

// EmailDB is what the e-mail settings need from PostgreSQL; *pgxpool.Pool satisfies it.
type EmailDB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// EmailSettings is a user's e-mail notification settings as REST and WebSocket show them.
type EmailSettings = protocol.EmailSettings

// Email reads and writes users' e-mail settings. Safe for concurrent use.
type Email struct {
	db  EmailDB
	key []byte
	log *slog.Logger
}

// NewEmail returns the e-mail settings on db. key verifies unsubscribe links (the
// notification service signs them with the same key); without one, Unsubscribe answers
// unavailable and everything else works.
func NewEmail(db EmailDB, key []byte, log *slog.Logger) (*Email, error) {
	if db == nil {
		return nil, errors.New("chat: e-mail settings need a database")
	}
	if len(key) > 0 && len(key) < emailtoken.MinKeyLen {
		return nil, fmt.Errorf("chat: the e-mail token key must be at least %d bytes, not %d", emailtoken.MinKeyLen, len(key))
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Email{db: db, key: key, log: log}, nil
}

// Settings returns u's settings; a user who never set any has no address and e-mail off.
func (e *Email) Settings(ctx context.Context, u User) (EmailSettings, error) {
	var s EmailSettings
	err := e.db.QueryRow(ctx, `SELECT address, enabled FROM email_settings WHERE user_id = $1`, u.ID).Scan(&s.Address, &s.Enabled)
	if errors.Is(err, pgx.ErrNoRows) {
		return EmailSettings{}, nil
	}
	if err != nil {
		return EmailSettings{}, e.internal(ctx, "cannot read e-mail settings", err)
	}
	return s, nil
}

// SetSettings replaces u's settings. The address must be a bare address (see
// ValidateEmailAddress) and is stored exactly as given. Switching e-mail on starts a new
// window: notifications from before are not mailed.
func (e *Email) SetSettings(ctx context.Context, u User, address string, enabled bool) (EmailSettings, error) {
	if perr := ValidateEmailAddress(address); perr != nil {
		return EmailSettings{}, perr
	}
	var s EmailSettings
	err := e.db.QueryRow(ctx, `
		INSERT INTO email_settings (user_id, address, enabled) VALUES ($1, $2, $3)
		ON CONFLICT (user_id) DO UPDATE SET address = EXCLUDED.address, enabled = EXCLUDED.enabled,
		    enabled_at = CASE WHEN EXCLUDED.enabled AND NOT email_settings.enabled THEN now() ELSE email_settings.enabled_at END,
		    updated_at = now()
		RETURNING address, enabled`, u.ID, address, enabled).Scan(&s.Address, &s.Enabled)
	if err != nil {
		return EmailSettings{}, e.internal(ctx, "cannot write e-mail settings", err)
	}
	return s, nil
}

// Unsubscribe turns e-mail off for the user a link's token was signed for. Following the
// link twice, or for a user without settings, is not an error.
func (e *Email) Unsubscribe(ctx context.Context, token string) error {
	if len(e.key) == 0 {
		return protocol.NewError(protocol.CodeUnavailable, "unsubscribe links are not configured on this server")
	}
	if token == "" {
		return protocol.NewError(protocol.CodeBadRequest, "token is required")
	}
	userID, err := emailtoken.Verify(e.key, token)
	if err != nil {
		return protocol.NewError(protocol.CodeBadRequest, "invalid unsubscribe link")
	}
	if _, err := e.db.Exec(ctx, `UPDATE email_settings SET enabled = false, updated_at = now() WHERE user_id = $1`, userID); err != nil {
		return e.internal(ctx, "cannot turn e-mail off", err)
	}
	e.log.InfoContext(ctx, "e-mail turned off by unsubscribe link", "user", userID)
	return nil
}

func (e *Email) internal(ctx context.Context, what string, err error) *protocol.Error {
	e.log.ErrorContext(ctx, what, "error", err)
	return errUnavailable(err)
}

// ValidateEmailAddress accepts one bare address (local@domain, RFC 5322 addr-spec) of at
// most 254 bytes whose domain has a dot, and nothing else: no display name, comment,
// angle brackets or surrounding space. It never corrects an address: what is stored is
// what the user typed, or nothing.
func ValidateEmailAddress(s string) *protocol.Error {
	bad := func(msg string) *protocol.Error { return protocol.NewError(protocol.CodeBadRequest, msg) }
	switch {
	case s == "":
		return bad("address is required")
	case len(s) > 254:
		return bad("address is longer than 254 bytes")
	case strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return bad("address must not contain spaces or control characters")
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return bad("address must be a single plain address like name@example.com")
	}
	at := strings.LastIndex(s, "@") // ParseAddress found one
	local, domain := s[:at], s[at+1:]
	switch {
	case len(local) > 64:
		return bad("address: the part before @ is longer than 64 bytes")
	case !strings.Contains(domain, ".") || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") || strings.HasPrefix(domain, "["):
		return bad("address: the domain must be a name like example.com")
	}
	return nil
}
