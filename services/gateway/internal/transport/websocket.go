package transport

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/kchat/kchat/services/gateway/internal/protocol"
)

// Config configures the WebSocket endpoint. Zero values take the defaults noted.
type Config struct {
	ReadLimit      int64         // bytes per frame; larger frames close with 1009 (default 16 KiB)
	SendQueue      int           // frames per connection (default 256)
	IdleTimeout    time.Duration // no frame from the client for this long closes 4000 (default 5m)
	PingInterval   time.Duration // WebSocket pings, which also detect dead peers (default 25s)
	WriteTimeout   time.Duration // per frame; a client that cannot take a frame this long is dropped (default 10s)
	AllowedOrigins []string      // see OriginAllowed (default DefaultOrigins)
}

func (c *Config) setDefaults() {
	if c.ReadLimit <= 0 {
		c.ReadLimit = 16 << 10
	}
	if c.SendQueue <= 0 {
		c.SendQueue = 256
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 5 * time.Minute
	}
	if c.PingInterval <= 0 {
		c.PingInterval = 25 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if len(c.AllowedOrigins) == 0 {
		c.AllowedOrigins = DefaultOrigins
	}
}

// Session is the chat side of one connection. HandleFrame is called from the connection's
// read loop, one frame at a time, in arrival order; Closed is called once, last.
type Session interface {
	HandleFrame(ctx context.Context, data []byte)
	Closed()
}

// Opener creates the Session of a newly upgraded connection.
type Opener interface {
	Open(ctx context.Context, c *Conn, r *http.Request) Session
}

// FrameCounter observes written frames (metrics).
type FrameCounter interface {
	FrameOut(frameType string)
}

// Handler is the WebSocket endpoint, an http.Handler to mount on any router.
type Handler struct {
	cfg     Config
	opener  Opener
	counter FrameCounter
	log     *slog.Logger
	wg      sync.WaitGroup
}

// NewHandler returns the endpoint. counter and log may be nil.
func NewHandler(cfg Config, opener Opener, counter FrameCounter, log *slog.Logger) *Handler {
	cfg.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg, opener: opener, counter: counter, log: log}
}

// Wait blocks until every connection's goroutines have ended (after shutdown closed them).
func (h *Handler) Wait() { h.wg.Wait() }

// ServeHTTP upgrades and runs the read loop until the connection ends.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !OriginAllowed(r, h.cfg.AllowedOrigins) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write(protocol.Encode(map[string]string{"code": protocol.CodeForbidden, "message": "origin not allowed"}))
		return
	}
	// The origin was checked above with our own rules, which the library's check would
	// apply differently (it has no notion of "any port").
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		h.log.Debug("upgrade failed", "error", err)
		return
	}
	h.wg.Add(1)
	defer h.wg.Done()
	ws.SetReadLimit(h.cfg.ReadLimit)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := newConn(ctx, cancel, ws, h.cfg, h.counter, h.log)
	go c.writeLoop()
	go c.pingLoop()
	sess := h.opener.Open(ctx, c, r)

	idle := time.AfterFunc(h.cfg.IdleTimeout, func() {
		c.Close(protocol.CloseIdle, protocol.ReasonIdle, nil, false)
	})
	defer idle.Stop()
	for {
		_, data, err := ws.Read(ctx)
		if err != nil {
			c.noteReadError(err)
			break
		}
		idle.Reset(h.cfg.IdleTimeout)
		sess.HandleFrame(ctx, data)
	}
	c.Close(protocol.CloseNormal, "", nil, false)
	<-c.done
	sess.Closed()
}

type closeRequest struct {
	code   protocol.CloseCode
	reason string
	final  []byte
	flush  bool
}

// Conn is one WebSocket connection's outbound side: a bounded queue drained by a writer
// goroutine with a deadline per frame. Every method is safe for concurrent use and none
// blocks on the network.
type Conn struct {
	id      string
	ws      *websocket.Conn
	cfg     Config
	queue   *Queue
	counter FrameCounter
	log     *slog.Logger
	ctx     context.Context
	cancel  context.CancelFunc

	closeOnce sync.Once
	closeReq  chan closeRequest
	done      chan struct{} // the writer has finished and the socket is closed

	mu        sync.Mutex
	written   map[string]int64 // room -> highest seq handed to the socket
	closeCode protocol.CloseCode
}

func newConn(ctx context.Context, cancel context.CancelFunc, ws *websocket.Conn, cfg Config, counter FrameCounter, log *slog.Logger) *Conn {
	id := newConnID()
	return &Conn{
		id: id, ws: ws, cfg: cfg, queue: NewQueue(cfg.SendQueue), counter: counter,
		log: log.With("conn_id", id), ctx: ctx, cancel: cancel,
		closeReq: make(chan closeRequest, 1), done: make(chan struct{}),
		written: map[string]int64{},
	}
}

func newConnID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ID identifies the connection in logs and frames.
func (c *Conn) ID() string { return c.id }

// Queue is the connection's send queue.
func (c *Conn) Queue() *Queue { return c.queue }

// Done is closed once the connection is gone.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Written returns, per room, the highest seq actually handed to the socket: the resumable
// cursor when queued frames are thrown away.
func (c *Conn) Written() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int64, len(c.written))
	for k, v := range c.written {
		out[k] = v
	}
	return out
}

// Close ends the connection with code and reason. With flush, frames already queued are
// written first (graceful shutdown); without, they are discarded (slow or broken clients).
// final, if set, is written last before the close frame. Only the first call counts.
func (c *Conn) Close(code protocol.CloseCode, reason string, final []byte, flush bool) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closeCode = code
		c.mu.Unlock()
		c.closeReq <- closeRequest{code: code, reason: reason, final: final, flush: flush}
	})
}

// CloseCode is the code the connection was closed with (0 while open).
func (c *Conn) CloseCode() protocol.CloseCode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeCode
}

func (c *Conn) noteReadError(err error) {
	code := websocket.CloseStatus(err)
	switch {
	case code == websocket.StatusMessageTooBig || errors.Is(err, websocket.ErrMessageTooBig):
		c.log.Info("frame over read limit", "limit", c.cfg.ReadLimit)
		c.mu.Lock()
		if c.closeCode == 0 {
			c.closeCode = protocol.CloseMessageTooBig
		}
		c.mu.Unlock()
	case code != -1:
		c.log.Debug("client closed", "code", int(code))
	case c.ctx.Err() == nil:
		c.log.Debug("read failed", "error", err)
	}
}

func (c *Conn) writeLoop() {
	defer close(c.done)
	defer c.cancel()
	for {
		select {
		case <-c.queue.Ready():
			for _, it := range c.queue.TakeAll() {
				if err := c.write(it, c.cfg.WriteTimeout); err != nil {
					c.log.Info("write failed, dropping connection", "error", err, "frame", it.Type)
					// A missed deadline means the client stopped reading (slow); any other
					// error means it is gone.
					c.mu.Lock()
					if c.closeCode == 0 && errors.Is(err, context.DeadlineExceeded) {
						c.closeCode = protocol.CloseSlow
					}
					c.mu.Unlock()
					c.queue.Close()
					_ = c.ws.CloseNow()
					return
				}
			}
		case req := <-c.closeReq:
			c.finish(req)
			return
		case <-c.ctx.Done():
			c.queue.Close()
			_ = c.ws.CloseNow()
			return
		}
	}
}

// finish performs a requested close: optionally drain, write the final frame, close.
func (c *Conn) finish(req closeRequest) {
	rest := c.queue.Close()
	deadline := time.Now().Add(c.cfg.WriteTimeout)
	if req.flush {
		for _, it := range rest {
			if err := c.write(it, time.Until(deadline)); err != nil {
				_ = c.ws.CloseNow()
				return
			}
		}
	}
	if req.final != nil {
		if err := c.write(Item{Data: req.final, Type: "final"}, min(time.Until(deadline), 2*time.Second)); err != nil {
			_ = c.ws.CloseNow()
			return
		}
	}
	// Close waits up to 5s for the peer's close frame; the reader loop sees the close and ends.
	_ = c.ws.Close(websocket.StatusCode(req.code), req.reason)
}

func (c *Conn) write(it Item, timeout time.Duration) error {
	if timeout <= 0 {
		return context.DeadlineExceeded
	}
	ctx, cancel := context.WithTimeout(c.ctx, timeout)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, it.Data); err != nil {
		return err
	}
	if it.Class == Timeline {
		c.mu.Lock()
		if it.Seq > c.written[it.Room] {
			c.written[it.Room] = it.Seq
		}
		c.mu.Unlock()
	}
	if c.counter != nil {
		c.counter.FrameOut(it.Type)
	}
	return nil
}

func (c *Conn) pingLoop() {
	t := time.NewTicker(c.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(c.ctx, c.cfg.WriteTimeout)
			err := c.ws.Ping(ctx)
			cancel()
			if err != nil && c.ctx.Err() == nil {
				c.log.Info("ping failed, dropping connection", "error", err)
				c.cancel()
				return
			}
		}
	}
}
