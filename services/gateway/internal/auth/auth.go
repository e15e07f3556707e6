// Package auth hashes passwords and mints and checks session tokens. It does no I/O:
// the store persists what it produces.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"
)

// Token kinds, as stored in sessions.kind.
const (
	KindSession   = "session"
	KindReconnect = "reconnect"
)

// ErrBadHash reports a stored password hash this package cannot read.
var ErrBadHash = errors.New("auth: unreadable password hash")

// Params are argon2id costs. The defaults follow OWASP's minimum recommendation for
// argon2id (19 MiB, 2 passes, 1 lane): memory-hard enough to make offline guessing
// expensive, cheap enough (~20 ms) that a 2-core gateway can take a burst of logins.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32
	Threads uint8
}

// DefaultParams are used by HashPassword.
var DefaultParams = Params{Memory: 19 * 1024, Time: 2, Threads: 1}

// HashPassword returns a self-describing argon2id hash (PHC string format), so the cost can
// be raised later without invalidating existing hashes.
func HashPassword(password string, p Params) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("cannot read random salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, 32)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// CheckPassword reports whether password matches hash, in constant time.
func CheckPassword(hash, password string) (bool, error) {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, ErrBadHash
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, ErrBadHash
	}
	var p Params
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil {
		return false, ErrBadHash
	}
	b64 := base64.RawStdEncoding
	salt, err := b64.DecodeString(parts[4])
	if err != nil {
		return false, ErrBadHash
	}
	want, err := b64.DecodeString(parts[5])
	if err != nil || len(want) == 0 {
		return false, ErrBadHash
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// Token is a freshly minted bearer token: Value goes to the client once, Hash to the store.
type Token struct {
	Value     string
	Hash      []byte
	Kind      string
	ExpiresAt time.Time
}

// NewToken mints 32 random bytes, base64url-encoded without padding (URL and header safe).
func NewToken(kind string, now time.Time, ttl time.Duration) (Token, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return Token{}, fmt.Errorf("cannot read random token: %w", err)
	}
	v := base64.RawURLEncoding.EncodeToString(raw)
	return Token{Value: v, Hash: HashToken(v), Kind: kind, ExpiresAt: now.Add(ttl).UTC()}, nil
}

// HashToken is what sessions.token_hash holds. A plain SHA-256 suffices (no salt, no
// stretching) because tokens have 256 bits of entropy: there is nothing to guess.
func HashToken(v string) []byte {
	sum := sha256.Sum256([]byte(v))
	return sum[:]
}

// WellFormed rejects values that cannot be tokens before they cost a database round trip.
func WellFormed(v string) bool {
	if len(v) != 43 {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(v)
	return err == nil && len(b) == 32
}

// Usable reports whether a stored token of kind, expiring at expiresAt, may authenticate a
// request that wants kind want at time now. Expiry is exclusive: at expiresAt it is dead.
func Usable(kind string, expiresAt time.Time, want string, now time.Time) bool {
	return kind == want && now.Before(expiresAt)
}
