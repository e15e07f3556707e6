package auth_test

import (
	"strings"
	"testing"
	"time"

	"github.com/kchat/kchat/services/gateway/internal/auth"
)

var fast = auth.Params{Memory: 64, Time: 1, Threads: 1}

func TestPassword_roundtrip(t *testing.T) {
	t.Parallel()
	h, err := auth.HashPassword("s3cret pass", fast)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("unexpected hash format %q", h)
	}
	for _, tc := range []struct {
		pw   string
		want bool
	}{{"s3cret pass", true}, {"s3cret pasS", false}, {"", false}} {
		ok, err := auth.CheckPassword(h, tc.pw)
		if err != nil || ok != tc.want {
			t.Errorf("CheckPassword(%q) = %v, %v; want %v", tc.pw, ok, err, tc.want)
		}
	}
	h2, _ := auth.HashPassword("s3cret pass", fast)
	if h == h2 {
		t.Error("two hashes of one password are equal: salt missing")
	}
}

func TestPassword_bad_hashes(t *testing.T) {
	t.Parallel()
	for _, h := range []string{"", "plain", "$bcrypt$x$y$z$w", "$argon2id$v=19$m=x,t=1,p=1$AA$AA", "$argon2id$v=18$m=64,t=1,p=1$AA$AA", "$argon2id$v=19$m=64,t=1,p=1$!!$AA"} {
		if _, err := auth.CheckPassword(h, "x"); err == nil {
			t.Errorf("CheckPassword(%q): no error", h)
		}
	}
}

func TestToken_hashing_and_expiry(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tok, err := auth.NewToken(auth.KindReconnect, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !auth.WellFormed(tok.Value) {
		t.Fatalf("minted token %q is not well formed", tok.Value)
	}
	if string(auth.HashToken(tok.Value)) != string(tok.Hash) || len(tok.Hash) != 32 {
		t.Fatal("hash is not SHA-256 of the value")
	}
	if !tok.ExpiresAt.Equal(now.Add(time.Hour)) {
		t.Fatalf("expires at %v", tok.ExpiresAt)
	}
	other, _ := auth.NewToken(auth.KindReconnect, now, time.Hour)
	if other.Value == tok.Value {
		t.Fatal("tokens repeat")
	}
	tests := []struct {
		name string
		kind string
		want string
		at   time.Time
		ok   bool
	}{
		{"fresh", auth.KindReconnect, auth.KindReconnect, now.Add(time.Minute), true},
		{"just before expiry", auth.KindReconnect, auth.KindReconnect, now.Add(time.Hour - time.Nanosecond), true},
		{"at expiry", auth.KindReconnect, auth.KindReconnect, now.Add(time.Hour), false},
		{"expired", auth.KindReconnect, auth.KindReconnect, now.Add(2 * time.Hour), false},
		{"wrong kind", auth.KindSession, auth.KindReconnect, now, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := auth.Usable(tc.kind, tok.ExpiresAt, tc.want, tc.at); got != tc.ok {
				t.Errorf("Usable = %v, want %v", got, tc.ok)
			}
		})
	}
}

func TestToken_well_formed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		v  string
		ok bool
	}{
		{strings.Repeat("A", 43), true},
		{strings.Repeat("A", 42), false},
		{strings.Repeat("A", 44), false},
		{strings.Repeat("+", 43), false},
		{"", false},
	} {
		if got := auth.WellFormed(tc.v); got != tc.ok {
			t.Errorf("WellFormed(%q) = %v", tc.v, got)
		}
	}
}
