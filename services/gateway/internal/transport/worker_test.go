package transport

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// workOpener's sessions hand every frame to the connection's worker, as the chat session
// does; the first job waits on gate, like a request held by a Kafka stall.
type workOpener struct {
	conns  chan *Conn
	gate   chan struct{}
	held   chan struct{} // the held job started
	mu     sync.Mutex
	done   []string // frames handled by the worker, in order
	busy   int      // frames Go refused with ErrBusy
	closed chan struct{}
}

type workSession struct {
	o *workOpener
	c *Conn
}

func (s workSession) HandleFrame(_ context.Context, data []byte) {
	frame := string(data)
	err := s.c.Go(func(ctx context.Context) {
		if frame == "hold" {
			if o := s.o; o.held != nil {
				close(o.held)
			}
			select {
			case <-s.o.gate:
			case <-ctx.Done():
			}
		}
		s.o.mu.Lock()
		s.o.done = append(s.o.done, frame)
		s.o.mu.Unlock()
	})
	if errors.Is(err, ErrBusy) {
		s.o.mu.Lock()
		s.o.busy++
		s.o.mu.Unlock()
	}
}

func (s workSession) Closed() { close(s.o.closed) }

func (o *workOpener) Open(_ context.Context, c *Conn, _ *http.Request) Session {
	o.conns <- c
	return workSession{o: o, c: c}
}

func (o *workOpener) conn(t *testing.T) *Conn {
	t.Helper()
	select {
	case c := <-o.conns:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no connection")
		return nil
	}
}

func (o *workOpener) state() ([]string, int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.done...), o.busy
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// While the worker is held (a request waiting for Kafka or PostgreSQL) the read loop goes
// on reading: the transport's pings keep being answered (a ping is only sent once the
// previous one's pong was read), frames past WorkQueue are refused with ErrBusy rather
// than read later, and once the worker is free it handles the queued frames in order and
// ends, so an idle connection has no worker goroutine.
func TestConn_held_worker_does_not_stop_reads_or_pings(t *testing.T) {
	t.Parallel()
	o := &workOpener{conns: make(chan *Conn, 1), gate: make(chan struct{}), held: make(chan struct{}), closed: make(chan struct{})}
	h := NewHandler(Config{WorkQueue: 4, PingInterval: 20 * time.Millisecond, WriteTimeout: 500 * time.Millisecond}, o, nil, nil)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	var pings atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), &websocket.DialOptions{
		OnPingReceived: func(context.Context, []byte) bool { pings.Add(1); return true },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ws.CloseNow() })
	ws.CloseRead(context.Background()) // the client reads (and so answers pings) on its own
	c := o.conn(t)

	write := func(s string) {
		t.Helper()
		if err := ws.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	write("hold")
	<-o.held
	for i := range 10 {
		write(fmt.Sprint(i))
	}
	// Four wait for the worker, six are refused; then the pings go on regardless.
	waitFor(t, "six refusals", func() bool { _, busy := o.state(); return busy == 6 })
	from := pings.Load()
	waitFor(t, "five more pings answered while the worker is held", func() bool { return pings.Load() >= from+5 })
	if done, _ := o.state(); len(done) != 0 {
		t.Fatalf("handled %v while the worker was held", done)
	}
	close(o.gate)
	waitFor(t, "the queued frames", func() bool { done, _ := o.state(); return len(done) == 5 })
	if done, _ := o.state(); strings.Join(done, ",") != "hold,0,1,2,3" {
		t.Fatalf("worker handled %v, want hold,0,1,2,3", done)
	}
	waitFor(t, "the worker to end", func() bool {
		c.workMu.Lock()
		defer c.workMu.Unlock()
		return !c.working && c.work == nil
	})
	// And it starts again for the next frame.
	write("again")
	waitFor(t, "a frame after the worker ended", func() bool { done, _ := o.state(); return len(done) == 6 })
}

// A connection that ends while its worker is held waits at most workDrainTimeout: the
// worker's context is cancelled, and Closed comes after the worker has finished.
func TestConn_closed_connection_cancels_held_worker(t *testing.T) {
	t.Parallel()
	o := &workOpener{conns: make(chan *Conn, 1), gate: make(chan struct{}), closed: make(chan struct{})}
	h := NewHandler(Config{}, o, nil, nil)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	ws := dialTest(t, "ws"+strings.TrimPrefix(srv.URL, "http"))
	o.conn(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ws.Write(ctx, websocket.MessageText, []byte("hold")); err != nil {
		t.Fatal(err)
	}
	if err := ws.Write(ctx, websocket.MessageText, []byte("after")); err != nil {
		t.Fatal(err)
	}
	_ = ws.CloseNow()
	select {
	case <-o.closed:
	case <-time.After(workDrainTimeout + 5*time.Second):
		t.Fatal("Closed not called")
	}
	if done, _ := o.state(); strings.Join(done, ",") != "hold,after" {
		t.Fatalf("worker handled %v before Closed, want hold,after", done)
	}
}
