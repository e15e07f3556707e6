// Package wsclient is chatbench's minimal kchat WebSocket client: dial with a session
// token, write frames, and hand every received frame with its arrival time to a callback.
package wsclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/kchat/kchat/pkg/protocol"
)

// Handler receives each frame and the time it was read, on the connection's read
// goroutine. data is the client's own copy.
type Handler func(data []byte, at time.Time)

// Conn is one client connection.
type Conn struct {
	ws      *websocket.Conn
	handler atomic.Pointer[Handler]
	Welcome *protocol.Welcome
	done    chan struct{}
	err     atomic.Pointer[error]
}

// HTTPClient is shared by every dial; it keeps no idle connections (each WebSocket is its
// own TCP connection anyway).
var HTTPClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, MaxIdleConns: -1}}

// Dial connects to wsURL (ws://host:port/ws) authenticated with token and waits for the
// welcome frame. Later frames go to the handler set with SetHandler (dropped before).
func Dial(ctx context.Context, wsURL, token string) (*Conn, error) {
	sep := "?"
	if strings.Contains(wsURL, "?") {
		sep = "&"
	}
	return dial(ctx, wsURL+sep+"token="+token, nil, func(c *Conn, data []byte) error {
		f, err := protocol.DecodeServer(data)
		w, ok := f.(*protocol.Welcome)
		if err != nil || !ok {
			return fmt.Errorf("expected welcome, got %.200s", data)
		}
		c.Welcome = w
		return nil
	})
}

// DialCentrifugo connects to a Centrifugo server's JSON WebSocket endpoint
// (ws://host:port/connection/websocket) that accepts anonymous clients, sends the
// protocol's connect command and waits for its reply. Centrifugo writes several replies
// and pushes in one frame, one per line: a handler gets whole frames.
func DialCentrifugo(ctx context.Context, wsURL string) (*Conn, error) {
	return dial(ctx, wsURL, []byte(`{"id":1,"connect":{}}`), func(_ *Conn, data []byte) error {
		if !bytes.HasPrefix(data, []byte(`{"id":1,"connect":`)) {
			return fmt.Errorf("expected a connect reply, got %.200s", data)
		}
		return nil
	})
}

// dial opens the connection, writes hello (if any), and hands the first frame to greeted
// before the read loop starts.
func dial(ctx context.Context, wsURL string, hello []byte, greeted func(c *Conn, first []byte) error) (*Conn, error) {
	ws, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{
		HTTPClient:      HTTPClient,
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(1 << 20)
	c := &Conn{ws: ws, done: make(chan struct{})}
	if hello != nil {
		if err := ws.Write(ctx, websocket.MessageText, hello); err != nil {
			_ = ws.CloseNow()
			return nil, err
		}
	}
	_, data, err := ws.Read(ctx)
	if err != nil {
		_ = ws.CloseNow()
		return nil, fmt.Errorf("waiting for the server's first frame: %w", err)
	}
	if err := greeted(c, data); err != nil {
		_ = ws.CloseNow()
		return nil, err
	}
	go c.readLoop()
	return c, nil
}

// SetHandler sets the frame callback.
func (c *Conn) SetHandler(h Handler) { c.handler.Store(&h) }

func (c *Conn) readLoop() {
	defer close(c.done)
	for {
		_, data, err := c.ws.Read(context.Background())
		if err != nil {
			c.err.Store(&err)
			return
		}
		at := time.Now()
		if h := c.handler.Load(); h != nil {
			(*h)(data, at)
		}
	}
}

// Write sends one text frame. Safe for concurrent use.
func (c *Conn) Write(ctx context.Context, data []byte) error {
	return c.ws.Write(ctx, websocket.MessageText, data)
}

// WriteJSON encodes v and sends it.
func (c *Conn) WriteJSON(ctx context.Context, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.Write(ctx, b)
}

// Done is closed when the connection's read loop ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err is why the read loop ended (nil while open).
func (c *Conn) Err() error {
	if e := c.err.Load(); e != nil {
		return *e
	}
	return nil
}

// Close closes the connection without waiting for the peer.
func (c *Conn) Close() { _ = c.ws.CloseNow() }

// ErrNoField reports a field that is not in a frame.
var ErrNoField = errors.New("wsclient: field not found")

// StringField extracts the string value of a top-level "key" from a compact JSON frame
// without decoding it: cheap enough to call on every one of hundreds of thousands of
// deliveries per second. It handles only values without escapes, which is what kchat's
// frames carry in the fields the bench reads (type, ref, client_msg_id, room).
func StringField(data []byte, key string) ([]byte, error) {
	pat := make([]byte, 0, len(key)+4)
	pat = append(append(append(pat, '"'), key...), '"', ':', '"')
	i := bytes.Index(data, pat)
	if i < 0 {
		return nil, ErrNoField
	}
	rest := data[i+len(pat):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 || bytes.IndexByte(rest[:j], '\\') >= 0 {
		return nil, ErrNoField
	}
	return rest[:j], nil
}

// IntField extracts a top-level integer "key".
func IntField(data []byte, key string) (int64, error) {
	pat := make([]byte, 0, len(key)+3)
	pat = append(append(append(pat, '"'), key...), '"', ':')
	i := bytes.Index(data, pat)
	if i < 0 {
		return 0, ErrNoField
	}
	rest := data[i+len(pat):]
	j := 0
	for j < len(rest) && (rest[j] == '-' || rest[j] >= '0' && rest[j] <= '9') {
		j++
	}
	return strconv.ParseInt(string(rest[:j]), 10, 64)
}
