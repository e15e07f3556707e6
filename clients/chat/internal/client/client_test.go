package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kchat/kchat/pkg/protocol"
)

func TestNormalizeURL(t *testing.T) {
	tests := []struct{ in, want, base string }{
		{"ws://127.0.0.1:8081/ws", "ws://127.0.0.1:8081/ws", "http://127.0.0.1:8081"},
		{"127.0.0.1:8082", "ws://127.0.0.1:8082/ws", "http://127.0.0.1:8082"},
		{"http://localhost:8081", "ws://localhost:8081/ws", "http://localhost:8081"},
		{"https://chat.example/", "wss://chat.example/ws", "https://chat.example"},
		{"wss://chat.example/custom", "wss://chat.example/custom", "https://chat.example"},
	}
	for _, tt := range tests {
		got, err := NormalizeURL(tt.in)
		if err != nil || got != tt.want || HTTPBase(got) != tt.base {
			t.Errorf("NormalizeURL(%q) = %q, %v (base %q); want %q (base %q)", tt.in, got, err, HTTPBase(got), tt.want, tt.base)
		}
	}
	for _, bad := range []string{"", "ftp://x", "ws://"} {
		if _, err := NormalizeURL(bad); err == nil {
			t.Errorf("NormalizeURL(%q) accepted", bad)
		}
	}
}

// fakeGateway is a scripted WebSocket server: each connection gets the next script.
type fakeGateway struct {
	t       *testing.T
	mu      sync.Mutex
	scripts []func(ctx context.Context, c *websocket.Conn, hello map[string]any)
	hellos  []map[string]any
}

func (g *fakeGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	ctx := r.Context()
	hello := readFrame(ctx, c)
	g.mu.Lock()
	g.hellos = append(g.hellos, hello)
	n := len(g.hellos)
	var script func(context.Context, *websocket.Conn, map[string]any)
	if n <= len(g.scripts) {
		script = g.scripts[n-1]
	}
	g.mu.Unlock()
	if script != nil {
		script(ctx, c, hello)
	}
}

func readFrame(ctx context.Context, c *websocket.Conn) map[string]any {
	_, data, err := c.Read(ctx)
	if err != nil {
		return nil
	}
	var f map[string]any
	_ = json.Unmarshal(data, &f)
	return f
}

func writeFrame(ctx context.Context, c *websocket.Conn, f map[string]any) {
	b, _ := json.Marshal(f)
	_ = c.Write(ctx, websocket.MessageText, b)
}

func msg(room string, seq int64, text string) map[string]any {
	return map[string]any{"type": "message", "room": room, "seq": seq, "kind": "message", "text": text, "sender_name": "bob"}
}

// TestResume drops the connection after three entries and a send that was written but
// never acknowledged; the next connection must resume from seq 3 with the reconnect token
// it was given, must not pass the repeated seq 3 on again, and must resend the message.
func TestResume(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sent := make(chan map[string]any, 4)
	g := &fakeGateway{t: t}
	g.scripts = []func(context.Context, *websocket.Conn, map[string]any){
		func(ctx context.Context, c *websocket.Conn, hello map[string]any) {
			_ = readFrame(ctx, c) // the init ping
			writeFrame(ctx, c, map[string]any{"type": "welcome", "ref": "hello", "user": map[string]any{"id": "u1", "username": "alice"}, "gateway_id": "gw-1", "reconnect_token": "rt-1"})
			writeFrame(ctx, c, map[string]any{"type": "subscribed", "ref": "hello", "room": "general", "since_seq": 0, "last_seq": 0, "recovered": true})
			writeFrame(ctx, c, map[string]any{"type": "pong", "ref": "init"})
			for i := int64(1); i <= 3; i++ {
				writeFrame(ctx, c, msg("general", i, "m"))
			}
			sent <- readFrame(ctx, c) // the send, left unanswered
			// Then the gateway dies without a close frame.
		},
		func(ctx context.Context, c *websocket.Conn, hello map[string]any) {
			writeFrame(ctx, c, map[string]any{"type": "welcome", "ref": "hello", "user": map[string]any{"id": "u1", "username": "alice"}, "gateway_id": "gw-2", "reconnect_token": "rt-2"})
			writeFrame(ctx, c, map[string]any{"type": "subscribed", "ref": "hello", "room": "general", "since_seq": 3, "last_seq": 4, "recovered": true})
			resent := readFrame(ctx, c)
			sent <- resent
			writeFrame(ctx, c, msg("general", 3, "m")) // a duplicate the client must drop
			writeFrame(ctx, c, msg("general", 4, "m"))
			writeFrame(ctx, c, map[string]any{"type": "ack", "ref": resent["ref"], "room": "general", "client_msg_id": resent["client_msg_id"], "status": "accepted"})
			for readFrame(ctx, c) != nil {
			}
		},
	}
	srv := httptest.NewServer(g)
	defer srv.Close()
	u, _ := NormalizeURL(srv.URL)
	cl := New(Config{URLs: []string{u}, ConnectTimeout: 5 * time.Second, BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond})
	cl.Start(ctx, "session-token")

	var seqs []int64
	var connects []string
	sentOnce := false
	for len(seqs) < 4 {
		select {
		case f := <-cl.Events():
			switch f := f.(type) {
			case *protocol.Message:
				seqs = append(seqs, f.Seq)
				if f.Seq == 3 && !sentOnce {
					sentOnce = true
					if _, err := cl.Send(ctx, "general", "hello"); err != nil {
						t.Fatal(err)
					}
				}
			case *Connected:
				status := ""
				if f.Resumed {
					status = "resumed"
				}
				connects = append(connects, f.GatewayID+"/"+status)
			}
		case <-ctx.Done():
			t.Fatalf("timed out; got seqs %v", seqs)
		}
	}
	if strings.Join(connects, ",") != "gw-1/,gw-2/resumed" {
		t.Fatalf("connects = %v", connects)
	}
	if got := []int64{1, 2, 3, 4}; !equal(seqs, got) {
		t.Fatalf("seqs = %v, want %v", seqs, got)
	}
	first, second := <-sent, <-sent
	if first["client_msg_id"] == nil || first["client_msg_id"] != second["client_msg_id"] || second["text"] != "hello" {
		t.Fatalf("the resend must repeat the client_msg_id: %v then %v", first, second)
	}
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	if n := cl.WaitPending(wctx); n != 0 {
		t.Fatalf("%d sends still pending", n)
	}
	g.mu.Lock()
	h1, h2 := g.hellos[0], g.hellos[1]
	g.mu.Unlock()
	if h1["token"] != "session-token" || h1["rooms"] != nil {
		t.Fatalf("first hello = %v", h1)
	}
	rooms, _ := h2["rooms"].(map[string]any)
	if h2["reconnect_token"] != "rt-1" || rooms["general"] != float64(3) {
		t.Fatalf("second hello must resume general from 3 with rt-1: %v", h2)
	}
	go func() {
		for range cl.Events() {
		}
	}()
	cl.Close()
	if err := cl.Err(); err != nil {
		t.Fatalf("Err after Close = %v", err)
	}
}

func equal(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestRefusedTokens: a refused reconnect token falls back to the session token, a refused
// session token to Reauth; when Reauth fails the client ends with its error.
func TestRefusedTokens(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	refuse := func(ctx context.Context, c *websocket.Conn, _ map[string]any) {
		writeFrame(ctx, c, map[string]any{"type": "error", "ref": "hello", "code": "invalid_token", "message": "invalid or expired token"})
		_ = c.Close(4001, "unauthorized")
	}
	g := &fakeGateway{t: t}
	g.scripts = []func(context.Context, *websocket.Conn, map[string]any){refuse}
	srv := httptest.NewServer(g)
	defer srv.Close()
	u, _ := NormalizeURL(srv.URL)
	reauths := 0
	cl := New(Config{URLs: []string{u}, ConnectTimeout: 5 * time.Second, BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond,
		Reauth: func(context.Context) (string, error) { reauths++; return "", errors.New("wrong password") }})
	cl.Start(ctx, "stale")
	go func() {
		for range cl.Events() {
		}
	}()
	select {
	case <-cl.Done():
	case <-ctx.Done():
		t.Fatal("client did not give up")
	}
	if err := cl.Err(); err == nil || !strings.Contains(err.Error(), "wrong password") || reauths != 1 {
		t.Fatalf("Err = %v after %d reauths", err, reauths)
	}
}

// TestDownGiveUp: nothing listening; the client retries, then ends within the timeout.
func TestDownGiveUp(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	u, _ := NormalizeURL(srv.URL)
	srv.Close() // now nothing listens there
	var logs []string
	var mu sync.Mutex
	cl := New(Config{URLs: []string{u}, ConnectTimeout: 700 * time.Millisecond, BackoffMin: 50 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
		Logf: func(f string, a ...any) { mu.Lock(); logs = append(logs, f); mu.Unlock() }})
	start := time.Now()
	cl.Start(context.Background(), "x")
	for range cl.Events() {
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("took %s to give up", took)
	}
	if err := cl.Err(); err == nil || !strings.Contains(err.Error(), "no gateway answered within 700ms") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Err = %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(logs) < 2 {
		t.Fatalf("expected retries to be reported, got %v", logs)
	}
}
