package transport

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/kchat/kchat/pkg/protocol"
)

// Config configures the WebSocket endpoint. Zero values take the defaults noted.
type Config struct {
	ReadLimit      int64         // bytes per frame; larger frames close with 1009 (default 16 KiB)
	SendQueue      int           // frames per connection (default 256)
	IdleTimeout    time.Duration // no frame from the client for this long closes 4000 (default 5m)
	PingInterval   time.Duration // WebSocket pings, which also detect dead peers (default 25s)
	WriteTimeout   time.Duration // per frame; a client that cannot take a frame this long is dropped (default 10s)
	WorkQueue      int           // requests waiting for the connection's worker; past it Go answers ErrBusy (default 32)
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
	if c.WorkQueue <= 0 {
		c.WorkQueue = 32
	}
	if len(c.AllowedOrigins) == 0 {
		c.AllowedOrigins = DefaultOrigins
	}
}

// Session is the chat side of one connection. HandleFrame is called from the connection's
// read loop, one frame at a time, in arrival order, and must not block: the read loop is
// also what reads the client's pongs (and close frames), so a read loop waiting for Kafka
// or PostgreSQL fails the connection's pings. Work that may wait goes to Conn.Go, which
// runs it on the connection's worker in the order given. Closed is called once, last,
// after the worker has finished.
type Session interface {
	HandleFrame(ctx context.Context, data []byte)
	Closed()
}

// Opener creates the Session of a newly upgraded connection. ctx ends when Open returns.
type Opener interface {
	Open(ctx context.Context, c *Conn, r *http.Request) Session
}

// FrameCounter observes written frames (metrics): n frames of frameType.
type FrameCounter interface {
	FrameOut(frameType string, n int)
}

// Handler is the WebSocket endpoint, an http.Handler to mount on any router.
type Handler struct {
	cfg     Config
	opener  Opener
	counter FrameCounter
	log     *slog.Logger

	// mu orders wg.Add against Stop: a WaitGroup may not be added to from zero while
	// Wait runs, and an upgrade can still be in flight when shutdown begins.
	mu       sync.Mutex
	stopping bool
	wg       sync.WaitGroup
}

// NewHandler returns the endpoint. counter and log may be nil.
func NewHandler(cfg Config, opener Opener, counter FrameCounter, log *slog.Logger) *Handler {
	cfg.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg, opener: opener, counter: counter, log: log}
}

// Stop refuses every connection from now on: a request still arriving during shutdown
// gets 503, and one whose upgrade was under way is closed with 1012 so the client goes to
// another gateway; nobody opens a session that shutdown would no longer close.
func (h *Handler) Stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stopping = true
}

// Wait blocks until every connection's goroutines have ended (after shutdown closed
// them). Call Stop first.
func (h *Handler) Wait() { h.wg.Wait() }

// track counts a new connection unless the handler is stopping.
func (h *Handler) track() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopping {
		return false
	}
	h.wg.Add(1)
	return true
}

func (h *Handler) stopped() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stopping
}

// ServeHTTP upgrades, opens the session and starts the connection's read loop. The read
// loop is the only goroutine an idle connection has: the writer and the worker run only
// while there is something to write or to handle, and pings run from a timer.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !OriginAllowed(r, h.cfg.AllowedOrigins) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write(protocol.Encode(map[string]string{"code": protocol.CodeForbidden, "message": "origin not allowed"}))
		return
	}
	if h.stopped() {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write(protocol.Encode(map[string]string{"code": protocol.CodeUnavailable, "message": "gateway is shutting down"}))
		return
	}
	hw := &hijackWriter{ResponseWriter: w}
	// The origin was checked above with our own rules, which the library's check would
	// apply differently (it has no notion of "any port").
	ws, err := websocket.Accept(hw, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		h.log.Debug("upgrade failed", "error", err)
		return
	}
	if hw.wire == nil {
		h.log.Error("upgrade failed", "error", errNoWire)
		_ = ws.CloseNow()
		return
	}
	if !h.track() {
		_ = ws.Close(websocket.StatusCode(protocol.CloseServiceRestart), protocol.ReasonShutdown)
		return
	}
	ws.SetReadLimit(h.cfg.ReadLimit)
	ctx, cancel := context.WithCancel(context.Background())
	c := newConn(ctx, cancel, ws, hw.wire, h.cfg, h.counter, h.log)
	// Open (authentication by ?token=) runs before anything can end the connection, so it
	// needs none of the connection's context, and the database client registers itself
	// on whatever context it gets: on the connection's, that would allocate for good.
	octx, ocancel := context.WithCancel(context.Background())
	sess := h.opener.Open(octx, c, r)
	ocancel()
	// The read loop gets a goroutine of its own and this one returns: net/http's
	// goroutine has a stack grown by routing, the upgrade and Open (authentication), and
	// keeps the request, the response and their buffers reachable, all of which an idle
	// connection would otherwise hold for its whole life.
	go h.readLoop(c, sess)
}

func (h *Handler) readLoop(c *Conn, sess Session) {
	defer h.wg.Done()
	defer c.cancel()
	c.startPings()
	idle := time.AfterFunc(h.cfg.IdleTimeout, func() {
		c.Close(protocol.CloseIdle, protocol.ReasonIdle, nil, false)
	})
	defer idle.Stop()
	for {
		// No context: one the library can watch costs a registration per read, held for
		// as long as the read waits (an idle connection's whole life). Whatever ends the
		// connection closes the socket, which ends the read.
		_, data, err := c.ws.Read(context.Background())
		if err != nil {
			c.noteReadError(err)
			break
		}
		idle.Reset(h.cfg.IdleTimeout)
		sess.HandleFrame(c.ctx, data)
	}
	c.Close(protocol.CloseNormal, "", nil, false)
	// Requests read before the end are still handled (a send followed by a close is
	// published, as when they were handled on the read loop), but a worker held by Kafka
	// or PostgreSQL gets workDrainTimeout before its context is cancelled.
	c.closeWork()
	drain := time.AfterFunc(workDrainTimeout, c.cancel)
	c.workers.Wait()
	drain.Stop()
	<-c.done
	c.stopPings()
	sess.Closed()
}

// workDrainTimeout bounds how long a closed connection's worker may take over the
// requests it had queued before their context is cancelled.
const workDrainTimeout = 5 * time.Second

type closeRequest struct {
	code   protocol.CloseCode
	reason string
	final  []byte
	flush  bool
}

// Conn is one WebSocket connection's outbound side: a bounded queue drained by a writer
// goroutine, which is started by the first push into an idle queue and ends when the
// queue is empty again. Every method is safe for concurrent use and none blocks on the
// network.
type Conn struct {
	id      string
	ws      *websocket.Conn
	wire    *wireConn
	cfg     Config
	queue   *Queue
	counter FrameCounter
	log     *slog.Logger
	ctx     context.Context
	cancel  context.CancelFunc

	closeOnce sync.Once
	closeReq  atomic.Pointer[closeRequest]
	writing   atomic.Bool   // a writer goroutine runs (and stays set once the socket is closed)
	done      chan struct{} // the writer has finished and the socket is closed

	workMu     sync.Mutex
	work       []func(context.Context) // requests waiting for the worker, oldest first
	working    bool                    // a worker goroutine runs
	workClosed bool                    // the read loop ended: Go refuses
	workers    sync.WaitGroup          // the worker, while one runs

	mu        sync.Mutex
	written   map[string]int64 // room -> highest seq handed to the socket
	closeCode protocol.CloseCode
	pingTimer *time.Timer
	pingsOff  bool
}

func newConn(ctx context.Context, cancel context.CancelFunc, ws *websocket.Conn, wire *wireConn, cfg Config, counter FrameCounter, log *slog.Logger) *Conn {
	c := &Conn{
		id: newConnID(), ws: ws, wire: wire, cfg: cfg, counter: counter,
		log: log, ctx: ctx, cancel: cancel, done: make(chan struct{}),
	}
	c.queue = newWakingQueue(cfg.SendQueue, c.kick)
	return c
}

func newConnID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
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

// Go queues fn to run on the connection's worker, after everything queued before it, and
// returns at once. The worker is a goroutine that is started by the first request of an
// idle connection and ends when none is left, so an idle connection has none. fn gets the
// connection's context, which ends once the connection is gone and the worker has had
// workDrainTimeout to finish what was queued. Go returns ErrBusy, without queueing, when WorkQueue requests are already
// waiting (the worker is held up, say by a Kafka or PostgreSQL stall: the caller answers
// the client at once instead of blocking the read loop), and ErrQueueClosed once the read
// loop has ended. Safe for concurrent use.
func (c *Conn) Go(fn func(ctx context.Context)) error {
	c.workMu.Lock()
	if c.workClosed {
		c.workMu.Unlock()
		return ErrQueueClosed
	}
	if len(c.work) >= c.cfg.WorkQueue {
		c.workMu.Unlock()
		return ErrBusy
	}
	c.work = append(c.work, fn)
	start := !c.working
	if start {
		c.working = true
		c.workers.Add(1)
	}
	c.workMu.Unlock()
	if start {
		go c.workLoop()
	}
	return nil
}

// workLoop runs queued requests one at a time until there are none, then ends.
func (c *Conn) workLoop() {
	defer c.workers.Done()
	for {
		c.workMu.Lock()
		if len(c.work) == 0 {
			c.work, c.working = nil, false
			c.workMu.Unlock()
			return
		}
		fn := c.work[0]
		c.work[0] = nil
		c.work = c.work[1:]
		c.workMu.Unlock()
		fn(c.ctx)
	}
}

// closeWork makes Go refuse from now on; what is queued still runs.
func (c *Conn) closeWork() {
	c.workMu.Lock()
	c.workClosed = true
	c.workMu.Unlock()
}

// Close ends the connection with code and reason. With flush, frames already queued are
// written first (graceful shutdown); without, they are discarded (slow or broken clients).
// final, if set, is written last before the close frame. Only the first call counts.
func (c *Conn) Close(code protocol.CloseCode, reason string, final []byte, flush bool) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		// A code recorded earlier (slow at the write deadline, frame over the read limit)
		// is what really ended the connection; the close that follows does not replace it.
		if c.closeCode == 0 {
			c.closeCode = code
		}
		c.mu.Unlock()
		c.closeReq.Store(&closeRequest{code: code, reason: reason, final: final, flush: flush})
		c.kick()
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
		c.log.Info("frame over read limit", "conn_id", c.id, "limit", c.cfg.ReadLimit)
		c.mu.Lock()
		if c.closeCode == 0 {
			c.closeCode = protocol.CloseMessageTooBig
		}
		c.mu.Unlock()
	case code != -1:
		c.log.Debug("client closed", "conn_id", c.id, "code", int(code))
	case c.ctx.Err() == nil:
		c.log.Debug("read failed", "conn_id", c.id, "error", err)
	}
}

// kick makes sure a writer runs. Called after every push and by Close.
func (c *Conn) kick() {
	if c.writing.CompareAndSwap(false, true) {
		go c.writeLoop()
	}
}

// writeLoop writes until the queue is empty, then ends; the next push starts another.
// There is only ever one: kick starts it only on the false→true edge of writing, and it
// hands writing back before its last look at the queue, so a push racing its exit either
// is seen by that look or starts the next writer.
func (c *Conn) writeLoop() {
	var items []Item
	for {
		if req := c.closeReq.Load(); req != nil {
			c.finish(*req)
			close(c.done)
			return
		}
		items = c.queue.takeAllInto(items)
		if len(items) > 0 {
			err := c.writeItems(items, time.Time{})
			clear(items)
			if err != nil {
				c.log.Info("write failed, dropping connection", "conn_id", c.id, "error", err)
				// A missed deadline means the client stopped reading (slow); any other
				// error means it is gone.
				c.mu.Lock()
				if c.closeCode == 0 && isTimeout(err) {
					c.closeCode = protocol.CloseSlow
				}
				c.mu.Unlock()
				c.queue.Close()
				_ = c.ws.CloseNow()
				close(c.done)
				return
			}
			continue
		}
		c.writing.Store(false)
		if (c.queue.release() && c.closeReq.Load() == nil) || !c.writing.CompareAndSwap(false, true) {
			return
		}
	}
}

func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded)
}

// finish performs a requested close: optionally drain, write the final frame, close.
func (c *Conn) finish(req closeRequest) {
	rest := c.queue.Close()
	if c.ctx.Err() != nil {
		// The reader or a failed ping already ended the connection.
		_ = c.ws.CloseNow()
		return
	}
	deadline := time.Now().Add(c.cfg.WriteTimeout)
	if req.flush && len(rest) > 0 {
		if err := c.writeItems(rest, deadline); err != nil {
			_ = c.ws.CloseNow()
			return
		}
	}
	if req.final != nil {
		final := []Item{{Data: req.final, Type: "final"}}
		if err := c.writeItems(final, minTime(deadline, time.Now().Add(2*time.Second))); err != nil {
			_ = c.ws.CloseNow()
			return
		}
	}
	// Close waits up to 5s for the peer's close frame; the reader loop sees the close and ends.
	_ = c.ws.Close(websocket.StatusCode(req.code), req.reason)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// writeItems frames items into chunks of up to maxChunk bytes and writes each chunk with
// one Write, within deadline or, if zero, within WriteTimeout of starting that chunk.
func (c *Conn) writeItems(items []Item, deadline time.Time) error {
	bp := chunkPool.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= 4*maxChunk {
			chunkPool.Put(bp)
		}
	}()
	for start := 0; start < len(items); {
		buf := (*bp)[:0]
		end := start
		for end < len(items) && (end == start || len(buf)+len(items[end].Data) <= maxChunk) {
			buf = appendFrame(buf, items[end].Data)
			end++
		}
		*bp = buf
		d := deadline
		if d.IsZero() {
			d = time.Now().Add(c.cfg.WriteTimeout)
		}
		if time.Until(d) <= 0 {
			return context.DeadlineExceeded
		}
		wstart := time.Now()
		if err := c.wire.writeFrames(buf, d); err != nil {
			c.traceWrites(items[start:end], wstart, err)
			return err
		}
		c.traceWrites(items[start:end], wstart, nil)
		c.wrote(items[start:end])
		start = end
	}
	return nil
}

// wrote records frames handed to the socket: resumable cursors and metrics.
func (c *Conn) wrote(items []Item) {
	c.mu.Lock()
	for i := range items {
		it := &items[i]
		if it.Class == Timeline && it.Seq > c.written[it.Room] {
			if c.written == nil {
				c.written = map[string]int64{}
			}
			c.written[it.Room] = it.Seq
		}
	}
	c.mu.Unlock()
	if c.counter == nil {
		return
	}
	// One count per run of frames of the same type (usually the whole batch).
	for i := 0; i < len(items); {
		j := i + 1
		for j < len(items) && items[j].Type == items[i].Type {
			j++
		}
		c.counter.FrameOut(items[i].Type, j-i)
		i = j
	}
}

// startPings pings the peer every PingInterval from a timer, so that a dead peer is
// noticed without a goroutine per connection waiting for the next ping.
func (c *Conn) startPings() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.pingsOff {
		c.pingTimer = time.AfterFunc(c.cfg.PingInterval, c.ping)
	}
}

func (c *Conn) stopPings() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pingsOff = true
	if c.pingTimer != nil {
		c.pingTimer.Stop()
	}
}

func (c *Conn) ping() {
	// Not derived from the connection's context, which would then keep a registration
	// for good; a ping on a closed connection fails at once anyway.
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.WriteTimeout)
	err := c.ws.Ping(ctx)
	cancel()
	if err != nil {
		if c.ctx.Err() == nil {
			c.log.Info("ping failed, dropping connection", "conn_id", c.id, "error", err)
			c.cancel()
			_ = c.ws.CloseNow()
		}
		return
	}
	c.mu.Lock()
	if !c.pingsOff {
		c.pingTimer.Reset(c.cfg.PingInterval)
	}
	c.mu.Unlock()
}
