// Accounts and tokens: registration, login, session and reconnect tokens.

package chat

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/services/gateway/internal/auth"
	"github.com/kchat/kchat/services/gateway/internal/store"
)

// Register creates an account.
func (s *Service) Register(ctx context.Context, username, password string) (User, error) {
	if !protocol.ValidUsername(username) {
		return User{}, protocol.NewError(protocol.CodeBadRequest, "username must be 3-32 characters of a-z, A-Z, 0-9, _ and -")
	}
	if len(password) < 8 || len(password) > 256 {
		return User{}, protocol.NewError(protocol.CodeBadRequest, "password must be 8-256 characters")
	}
	hash, err := auth.HashPassword(password, s.cfg.Password)
	if err != nil {
		return User{}, s.internal(ctx, "cannot hash password", err)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return User{}, s.internal(ctx, "cannot mint user id", err)
	}
	u := store.User{ID: id.String(), Username: username, PasswordHash: hash}
	if err := s.store.CreateUser(ctx, u); err != nil {
		if errors.Is(err, store.ErrUsernameTaken) {
			return User{}, protocol.NewError(protocol.CodeUsernameTaken, "username is taken")
		}
		return User{}, s.internal(ctx, "cannot register", err)
	}
	return User{ID: u.ID, Username: u.Username}, nil
}

// Session is what login and resume hand out.
type Session struct {
	Token              string    `json:"token"`
	ExpiresAt          time.Time `json:"expires_at"`
	ReconnectToken     string    `json:"reconnect_token"`
	ReconnectExpiresAt time.Time `json:"reconnect_expires_at"`
	User               User      `json:"user"`
}

// Login checks a password and issues a session token and a reconnect token.
func (s *Service) Login(ctx context.Context, username, password string) (Session, error) {
	bad := protocol.NewError(protocol.CodeInvalidCredentials, "wrong username or password")
	u, err := s.store.UserByName(ctx, username)
	if errors.Is(err, store.ErrNotFound) {
		// Hash anyway so that response time does not reveal which usernames exist.
		_, _ = auth.CheckPassword(dummyHash, password)
		return Session{}, bad
	}
	if err != nil {
		return Session{}, s.internal(ctx, "cannot read user", err)
	}
	ok, err := auth.CheckPassword(u.PasswordHash, password)
	if err != nil {
		return Session{}, s.internal(ctx, "cannot check password", err)
	}
	if !ok {
		return Session{}, bad
	}
	return s.issue(ctx, User{ID: u.ID, Username: u.Username})
}

// dummyHash has DefaultParams' cost; its password is random and unknown.
const dummyHash = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$wR6Mlq3U8p5g3x0qJp9m1yZ1m2Yb0pQm4Tn9o0dQx2A"

func (s *Service) issue(ctx context.Context, u User) (Session, error) {
	now := s.cfg.Now()
	tok, err := s.mint(ctx, u, auth.KindSession, now, s.cfg.SessionTTL)
	if err != nil {
		return Session{}, err
	}
	rt, err := s.mint(ctx, u, auth.KindReconnect, now, s.cfg.ReconnectTTL)
	if err != nil {
		return Session{}, err
	}
	return Session{Token: tok.Value, ExpiresAt: tok.ExpiresAt, ReconnectToken: rt.Value, ReconnectExpiresAt: rt.ExpiresAt, User: u}, nil
}

func (s *Service) mint(ctx context.Context, u User, kind string, now time.Time, ttl time.Duration) (auth.Token, error) {
	t, err := auth.NewToken(kind, now, ttl)
	if err != nil {
		return auth.Token{}, s.internal(ctx, "cannot mint token", err)
	}
	if err := s.store.CreateSession(ctx, u.ID, t.Hash, kind, t.ExpiresAt); err != nil {
		return auth.Token{}, s.internal(ctx, "cannot store token", err)
	}
	return t, nil
}

// NewReconnectToken issues a fresh reconnect token for an authenticated user.
func (s *Service) NewReconnectToken(ctx context.Context, u User) (auth.Token, error) {
	return s.mint(ctx, u, auth.KindReconnect, s.cfg.Now(), s.cfg.ReconnectTTL)
}

// Authenticate resolves a token of the wanted kind. Malformed, unknown, expired and
// wrong-kind tokens all fail the same way (invalid_token), so probing learns nothing.
func (s *Service) Authenticate(ctx context.Context, token, kind string) (User, error) {
	bad := protocol.NewError(protocol.CodeInvalidToken, "invalid or expired token")
	if !auth.WellFormed(token) {
		return User{}, bad
	}
	u, gotKind, exp, err := s.store.SessionUser(ctx, auth.HashToken(token))
	if errors.Is(err, store.ErrNotFound) {
		return User{}, bad
	}
	if err != nil {
		return User{}, s.internal(ctx, "cannot read session", err)
	}
	if !auth.Usable(gotKind, exp, kind, s.cfg.Now()) {
		return User{}, bad
	}
	return User{ID: u.ID, Username: u.Username}, nil
}

// Resume trades a valid reconnect token for a new session (REST clients that lost their
// session token).
func (s *Service) Resume(ctx context.Context, reconnectToken string) (Session, error) {
	u, err := s.Authenticate(ctx, reconnectToken, auth.KindReconnect)
	if err != nil {
		return Session{}, err
	}
	return s.issue(ctx, u)
}
