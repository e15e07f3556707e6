package app_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kchat/kchat/services/gateway/internal/app"
	"github.com/kchat/kchat/services/gateway/internal/gwtest"
)

// Cross-site WebSocket hijacking: a page on another site must not be able to open a
// socket to the gateway. Browsers always send Origin on a WebSocket upgrade; the
// gateway refuses the upgrade (403) unless the origin is its own host or allowed.
func TestSecurity_websocket_origin(t *testing.T) {
	t.Parallel()
	def := start(t, nil)
	strict := start(t, func(c *app.Config) { c.AllowedOrigins = []string{"https://chat.example.com"} })
	selfHost := strings.TrimPrefix(def.base, "http://")
	for _, tc := range []struct {
		h      *harness
		origin string
		ok     bool
	}{
		{def, "", true}, // not a browser: no Origin
		{def, "http://" + selfHost, true},
		{def, "http://localhost:5173", true},
		{def, "http://127.0.0.1:3000", true},
		{def, "https://evil.example", false},
		{def, "null", false}, // sandboxed iframes and file:// pages
		{def, "http://localhost.evil.example", false},
		{def, "http://localhost:1.evil.example", false},
		{def, "http://evil.example:" + strings.Split(selfHost, ":")[1], false},
		{def, "https://chat.example.com", false},
		{strict, "https://chat.example.com", true},
		{strict, "HTTPS://CHAT.EXAMPLE.COM", true},
		{strict, "http://chat.example.com", false}, // scheme matters
		{strict, "https://chat.example.com.evil.example", false},
		{strict, "http://localhost:5173", false}, // an explicit list replaces the defaults
	} {
		t.Run(fmt.Sprintf("%s/%q", map[bool]string{true: "default", false: "strict"}[tc.h == def], tc.origin), func(t *testing.T) {
			var opts *websocket.DialOptions
			if tc.origin != "" {
				opts = &websocket.DialOptions{HTTPHeader: http.Header{"Origin": []string{tc.origin}}}
			}
			c, err := gwtest.DialErr(tc.h.ws, opts)
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				_ = c.Conn.CloseNow()
				return
			}
			if err == nil {
				_ = c.Conn.CloseNow()
				t.Fatal("a cross-site page could open a WebSocket")
			}
			if !strings.Contains(err.Error(), "403") {
				t.Fatalf("refused, but not with 403: %v", err)
			}
		})
	}
}

// Tokens are stored as SHA-256 hashes only: a copy of the database (a backup, a read-only
// SQL injection) must not yield a usable session. Every table is searched for every
// form a token could take: the base64url text, its raw bytes (hex, as PostgreSQL prints
// bytea) and standard base64.
func TestSecurity_tokens_stored_hashed(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	alice := gwtest.NewAccount(t, h.base, "alice")
	_, resumed := gwtest.Do(t, "POST", h.base+"/api/resume", "", map[string]string{"reconnect_token": alice.Reconnect})
	c := h.dial(t, alice)
	c.Send(map[string]any{"type": "token", "ref": "t"})
	wsTok := c.Expect("token", "t").Str("reconnect_token")
	tokens := []string{alice.Token, alice.Reconnect, resumed.Str("token"), resumed.Str("reconnect_token"), wsTok}

	ctx := context.Background()
	rows, err := h.db.Query(ctx, `SELECT quote_ident(table_name) FROM information_schema.tables
		WHERE table_schema = 'public' AND table_type = 'BASE TABLE'`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		_ = rows.Scan(&n)
		tables = append(tables, n)
	}
	rows.Close()
	if len(tables) < 5 {
		t.Fatalf("found only tables %v", tables)
	}
	var sessions int
	_ = h.db.QueryRow(ctx, `SELECT count(*) FROM sessions`).Scan(&sessions)
	if sessions < len(tokens) {
		t.Fatalf("%d session rows for %d tokens", sessions, len(tokens))
	}
	for _, tok := range tokens {
		if tok == "" {
			t.Fatal("a token is missing")
		}
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil {
			t.Fatal(err)
		}
		forms := []string{tok, hex.EncodeToString(raw), base64.StdEncoding.EncodeToString(raw)}
		for _, table := range tables {
			for _, form := range forms {
				var n int
				// The row's text form holds every column, bytea as hex.
				err := h.db.QueryRow(ctx, `SELECT count(*) FROM `+table+` t WHERE strpos(lower(t::text), lower($1)) > 0`, form).Scan(&n)
				if err != nil {
					t.Fatalf("%s: %v", table, err)
				}
				if n > 0 {
					t.Errorf("table %s holds a token in clear (as %q)", table, form[:8]+"...")
				}
			}
		}
	}
	// And passwords are stored as argon2id hashes, never in clear.
	var hash string
	_ = h.db.QueryRow(ctx, `SELECT password_hash FROM users WHERE username = 'alice'`).Scan(&hash)
	if !strings.HasPrefix(hash, "$argon2id$") || strings.Contains(hash, "password-alice") {
		t.Fatalf("password stored as %q", hash)
	}
}

// Every input has a size limit, enforced before the input is buffered whole or parsed.
func TestSecurity_size_limits(t *testing.T) {
	t.Parallel()
	h := start(t, nil) // MaxTextBytes 100, ReadLimit 4096
	alice := gwtest.NewAccount(t, h.base, "alice")
	gwtest.Do(t, "POST", h.base+"/api/rooms", alice.Token, map[string]string{"id": "general"})

	post := func(path string, body []byte, token string) (int, gwtest.Frame) {
		t.Helper()
		req, _ := http.NewRequest("POST", h.base+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var f gwtest.Frame
		_ = json.NewDecoder(res.Body).Decode(&f)
		return res.StatusCode, f
	}
	big := func(n int) []byte {
		return []byte(`{"client_msg_id":"c","text":"x","pad":"` + strings.Repeat("p", n) + `"}`)
	}
	for _, tc := range []struct {
		name   string
		path   string
		body   []byte
		token  string
		status int
		code   string
	}{
		{"body just under 64 KiB", "/api/rooms/general/messages", big(64<<10 - 64), alice.Token, 202, ""},
		{"body over 64 KiB", "/api/rooms/general/messages", big(64 << 10), alice.Token, 413, "too_large"},
		{"8 MiB body", "/api/rooms/general/messages", big(8 << 20), alice.Token, 413, "too_large"},
		{"unauthenticated 8 MiB body", "/api/login", big(8 << 20), "", 413, "too_large"},
		{"text over max-text-bytes", "/api/rooms/general/messages", []byte(`{"client_msg_id":"c2","text":"` + strings.Repeat("t", 101) + `"}`), alice.Token, 413, "too_large"},
		{"client_msg_id over 64", "/api/rooms/general/messages", []byte(`{"client_msg_id":"` + strings.Repeat("i", 65) + `","text":"x"}`), alice.Token, 400, "bad_request"},
		{"long username", "/api/register", []byte(`{"username":"` + strings.Repeat("u", 33) + `","password":"long enough"}`), "", 400, "bad_request"},
		{"long password", "/api/register", []byte(`{"username":"bobby","password":"` + strings.Repeat("p", 257) + `"}`), "", 400, "bad_request"},
		{"long room name", "/api/rooms", []byte(`{"id":"named","name":"` + strings.Repeat("n", 101) + `"}`), alice.Token, 400, "bad_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, f := post(tc.path, tc.body, tc.token)
			if st != tc.status || code(f) != tc.code {
				t.Fatalf("got %d %v, want %d %s", st, f, tc.status, tc.code)
			}
		})
	}
	if st, f := gwtest.Do(t, "GET", h.base+"/api/rooms/general/messages?limit=201", alice.Token, nil); st != 400 {
		t.Fatalf("history limit 201: %d %v", st, f)
	}

	// WebSocket: frames up to the read limit are read; a larger one closes the connection
	// with 1009 before the gateway buffers it.
	c := h.dial(t, alice)
	pad := strings.Repeat("z", 4096-100)
	c.Send(`{"type":"ping","ref":"under","pad":"` + pad + `"}`)
	c.Expect("pong", "under")
	c.Send(`{"type":"ping","ref":"over","pad":"` + strings.Repeat("z", 4096) + `"}`)
	if cc := c.WaitClosed(10 * time.Second); cc != websocket.StatusMessageTooBig {
		t.Fatalf("frame over the read limit: close %d, want 1009", cc)
	}
	// Also before authentication: an anonymous peer cannot make the gateway buffer more.
	anonC := gwtest.Dial(t, h.ws, nil)
	anonC.Send(`{"type":"auth","token":"` + strings.Repeat("a", 8000) + `"}`)
	if cc := anonC.WaitClosed(10 * time.Second); cc != websocket.StatusMessageTooBig {
		t.Fatalf("anonymous large frame: close %d, want 1009", cc)
	}
}
