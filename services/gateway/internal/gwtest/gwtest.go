// Package gwtest has the client helpers the gateway's integration and end-to-end tests
// share: a JSON REST caller and a WebSocket client that reads frames by type.
package gwtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Frame is a decoded server frame.
type Frame map[string]any

// Type is the frame's type.
func (f Frame) Type() string { s, _ := f["type"].(string); return s }

// Str reads a string field.
func (f Frame) Str(k string) string { s, _ := f[k].(string); return s }

// Int reads a number field.
func (f Frame) Int(k string) int64 { n, _ := f[k].(float64); return int64(n) }

// Do calls a JSON endpoint and decodes the JSON answer.
func Do(t testing.TB, method, url, token string, body any) (int, Frame) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var f Frame
	_ = json.Unmarshal(raw, &f)
	return res.StatusCode, f
}

// Account is a registered and logged-in user.
type Account struct {
	ID, Name, Token, Reconnect string
}

// NewAccount registers and logs in.
func NewAccount(t testing.TB, base, name string) Account {
	t.Helper()
	if st, f := Do(t, "POST", base+"/api/register", "", map[string]string{"username": name, "password": "password-" + name}); st != 201 {
		t.Fatalf("register %s: %d %v", name, st, f)
	}
	st, f := Do(t, "POST", base+"/api/login", "", map[string]string{"username": name, "password": "password-" + name})
	if st != 200 {
		t.Fatalf("login %s: %d %v", name, st, f)
	}
	u, _ := f["user"].(map[string]any)
	return Account{ID: u["id"].(string), Name: name, Token: f.Str("token"), Reconnect: f.Str("reconnect_token")}
}

// Client is a WebSocket test client. A reader goroutine decodes frames into a buffer so
// that tests can wait for a frame type; Stall stops it, like a client that stops reading.
type Client struct {
	t      testing.TB
	Conn   *websocket.Conn
	mu     sync.Mutex
	frames []Frame
	more   chan struct{}
	closed chan struct{}
	err    error
	gate   chan struct{} // when non-nil, the reader waits on it
}

// Dial connects to a gateway's /ws.
func Dial(t testing.TB, wsURL string, opts *websocket.DialOptions) *Client {
	t.Helper()
	c, err := DialErr(wsURL, opts)
	if err != nil {
		t.Fatalf("dial %s: %v", wsURL, err)
	}
	c.t = t
	t.Cleanup(func() { _ = c.Conn.CloseNow() })
	return c
}

// DialErr connects and reports the dial error instead of failing.
func DialErr(wsURL string, opts *websocket.DialOptions) (*Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, wsURL, opts)
	if err != nil {
		return nil, err
	}
	conn.SetReadLimit(1 << 20)
	c := &Client{Conn: conn, more: make(chan struct{}, 1), closed: make(chan struct{})}
	go c.read()
	return c, nil
}

func (c *Client) read() {
	defer close(c.closed)
	for {
		c.mu.Lock()
		gate := c.gate
		c.mu.Unlock()
		if gate != nil {
			<-gate
		}
		_, data, err := c.Conn.Read(context.Background())
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		var f Frame
		if json.Unmarshal(data, &f) != nil {
			f = Frame{"type": "!undecodable", "raw": string(data)}
		}
		c.mu.Lock()
		c.frames = append(c.frames, f)
		c.mu.Unlock()
		select {
		case c.more <- struct{}{}:
		default:
		}
	}
}

// Stall stops reading from the socket until the returned function is called. The frame
// being read when Stall is called may still arrive.
func (c *Client) Stall() (resume func()) {
	gate := make(chan struct{})
	c.mu.Lock()
	c.gate = gate
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		c.gate = nil
		c.mu.Unlock()
		close(gate)
	}
}

// Send writes one frame (a map or struct, or a raw string).
func (c *Client) Send(v any) {
	c.t.Helper()
	var data []byte
	if s, ok := v.(string); ok {
		data = []byte(s)
	} else {
		data, _ = json.Marshal(v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Conn.Write(ctx, websocket.MessageText, data); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// Next waits for the first buffered frame matching pred, removes and returns it.
func (c *Client) Next(pred func(Frame) bool, timeout time.Duration) (Frame, bool) {
	deadline := time.After(timeout)
	for {
		c.mu.Lock()
		for i, f := range c.frames {
			if pred(f) {
				c.frames = append(c.frames[:i:i], c.frames[i+1:]...)
				c.mu.Unlock()
				return f, true
			}
		}
		c.mu.Unlock()
		select {
		case <-c.more:
		case <-c.closed:
			// Drain what arrived before the close.
			c.mu.Lock()
			for i, f := range c.frames {
				if pred(f) {
					c.frames = append(c.frames[:i:i], c.frames[i+1:]...)
					c.mu.Unlock()
					return f, true
				}
			}
			c.mu.Unlock()
			return nil, false
		case <-deadline:
			return nil, false
		}
	}
}

// Expect waits for a frame of type typ (and ref, when given).
func (c *Client) Expect(typ string, ref ...string) Frame {
	c.t.Helper()
	f, ok := c.Next(func(f Frame) bool {
		return f.Type() == typ && (len(ref) == 0 || f.Str("ref") == ref[0])
	}, 15*time.Second)
	if !ok {
		c.t.Fatalf("no %s frame (ref %v); buffered: %v; err: %v", typ, ref, c.Buffered(), c.Err())
	}
	return f
}

// Buffered returns a copy of the frames not yet taken.
func (c *Client) Buffered() []Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Frame(nil), c.frames...)
}

// Err is the read error once the connection ended.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// WaitClosed waits for the connection to end and returns its close code (-1 if none).
func (c *Client) WaitClosed(timeout time.Duration) websocket.StatusCode {
	c.t.Helper()
	select {
	case <-c.closed:
	case <-time.After(timeout):
		c.t.Fatalf("connection still open after %s", timeout)
	}
	return websocket.CloseStatus(c.Err())
}

// Messages collects message frames of room until it has seq `until` or timeout, returning
// their seqs in arrival order.
func (c *Client) Messages(room string, until int64, timeout time.Duration) []int64 {
	var seqs []int64
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		f, ok := c.Next(func(f Frame) bool { return f.Type() == "message" && f.Str("room") == room }, time.Until(deadline))
		if !ok {
			break
		}
		seqs = append(seqs, f.Int("seq"))
		if f.Int("seq") >= until {
			break
		}
	}
	return seqs
}

// Contiguous reports whether seqs is exactly from..to.
func Contiguous(seqs []int64, from, to int64) error {
	if int64(len(seqs)) != to-from+1 {
		return fmt.Errorf("got %d entries, want %d (%d..%d): %v", len(seqs), to-from+1, from, to, seqs)
	}
	for i, s := range seqs {
		if s != from+int64(i) {
			return fmt.Errorf("entry %d is %d, want %d: %v", i, s, from+int64(i), seqs)
		}
	}
	return nil
}
