package transport

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kchat/kchat/pkg/protocol"
)

// testOpener hands each new connection to the test and echoes nothing.
type testOpener struct {
	conns  chan *Conn
	closed chan *Conn
}

type testSession struct {
	o *testOpener
	c *Conn
}

func (s testSession) HandleFrame(context.Context, []byte) {}
func (s testSession) Closed()                             { s.o.closed <- s.c }

func (o *testOpener) Open(_ context.Context, c *Conn, _ *http.Request) Session {
	o.conns <- c
	return testSession{o: o, c: c}
}

type countingFrames struct {
	mu sync.Mutex
	n  map[string]int
}

func (f *countingFrames) FrameOut(t string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n[t] += n
}

func (f *countingFrames) get(t string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n[t]
}

func serve(t *testing.T, cfg Config) (*testOpener, *countingFrames, string) {
	t.Helper()
	o := &testOpener{conns: make(chan *Conn, 4), closed: make(chan *Conn, 4)}
	fc := &countingFrames{n: map[string]int{}}
	h := NewHandler(cfg, o, fc, nil)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return o, fc, "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
}

func dialTest(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.SetReadLimit(1 << 20)
	t.Cleanup(func() { _ = ws.CloseNow() })
	return ws
}

func recvConn(t *testing.T, o *testOpener) *Conn {
	t.Helper()
	select {
	case c := <-o.conns:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no connection")
		return nil
	}
}

func readFrame(t *testing.T, ws *websocket.Conn) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	typ, b, err := ws.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if typ != websocket.MessageText {
		t.Fatalf("frame type %v", typ)
	}
	return b
}

func waitWriterIdle(t *testing.T, c *Conn) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for c.writing.Load() {
		if time.Now().After(deadline) {
			t.Fatal("writer still running on an empty queue")
		}
		time.Sleep(time.Millisecond)
	}
}

// Frames of every length class (7-bit, 16-bit and 64-bit lengths), in batches larger
// than one write chunk, arrive whole and in order, and the writer goroutine ends when
// the queue is empty.
func TestConn_writes_frames_in_order_and_writer_ends_when_idle(t *testing.T) {
	t.Parallel()
	o, fc, url := serve(t, Config{SendQueue: 512})
	ws := dialTest(t, url)
	c := recvConn(t, o)

	sizes := []int{0, 1, 125, 126, 127, 1000, 65535, 65536, 70000}
	var want [][]byte
	for round := range 3 {
		for i, n := range sizes {
			b := bytes.Repeat([]byte{byte('a' + i)}, n)
			if n >= 10 {
				copy(b, fmt.Sprintf("%d.%d.", round, i))
			}
			want = append(want, b)
		}
		for i := range 100 {
			want = append(want, fmt.Appendf(nil, `{"n":%d,"round":%d}`, i, round))
		}
	}
	for i, b := range want {
		if err := c.Queue().Push(Item{Data: b, Type: "message", Class: Timeline, Room: "r", Seq: int64(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	for i, w := range want {
		if got := readFrame(t, ws); !bytes.Equal(got, w) {
			t.Fatalf("frame %d: got %d bytes %.20q, want %d bytes %.20q", i, len(got), got, len(w), w)
		}
	}
	waitWriterIdle(t, c)
	if got := c.Written()["r"]; got != int64(len(want)) {
		t.Fatalf("written cursor %d, want %d", got, len(want))
	}
	if got := fc.get("message"); got != len(want) {
		t.Fatalf("counted %d frames, want %d", got, len(want))
	}

	// The next push starts a writer again.
	if err := c.Queue().Push(Item{Data: []byte(`{"again":true}`), Type: "ack"}); err != nil {
		t.Fatal(err)
	}
	if got := readFrame(t, ws); string(got) != `{"again":true}` {
		t.Fatalf("got %q", got)
	}
	waitWriterIdle(t, c)
}

// Graceful close writes what is queued, then the final frame, then the close frame.
func TestConn_close_flushes_then_final_then_close_code(t *testing.T) {
	t.Parallel()
	o, _, url := serve(t, Config{})
	ws := dialTest(t, url)
	c := recvConn(t, o)
	for i := range 5 {
		_ = c.Queue().Push(Item{Data: fmt.Appendf(nil, `{"i":%d}`, i), Type: "message", Class: Timeline, Room: "r", Seq: int64(i + 1)})
	}
	c.Close(protocol.CloseServiceRestart, protocol.ReasonShutdown, []byte(`{"type":"reconnect"}`), true)
	for i := range 5 {
		if got := readFrame(t, ws); string(got) != fmt.Sprintf(`{"i":%d}`, i) {
			t.Fatalf("frame %d: %q", i, got)
		}
	}
	if got := readFrame(t, ws); string(got) != `{"type":"reconnect"}` {
		t.Fatalf("final: %q", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err := ws.Read(ctx)
	if code := websocket.CloseStatus(err); code != websocket.StatusCode(protocol.CloseServiceRestart) {
		t.Fatalf("close: %v", err)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("not done")
	}
	if err := c.Queue().Push(Item{Data: []byte("x")}); err == nil {
		t.Fatal("push after close succeeded")
	}
	if c.CloseCode() != protocol.CloseServiceRestart {
		t.Fatalf("close code %d", c.CloseCode())
	}
}

// Close without flush still works on a connection whose writer is not running.
func TestConn_close_idle_connection(t *testing.T) {
	t.Parallel()
	o, _, url := serve(t, Config{})
	ws := dialTest(t, url)
	c := recvConn(t, o)
	waitWriterIdle(t, c)
	c.Close(protocol.CloseSlow, protocol.ReasonSlow, []byte(`{"type":"error","code":"slow"}`), false)
	if got := readFrame(t, ws); !bytes.Contains(got, []byte("slow")) {
		t.Fatalf("final: %q", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err := ws.Read(ctx)
	if code := websocket.CloseStatus(err); code != websocket.StatusCode(protocol.CloseSlow) {
		t.Fatalf("close: %v", err)
	}
	select {
	case <-o.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("session not closed")
	}
}

// Pings keep a live peer connected and drop one that stopped answering.
func TestConn_pings_detect_dead_peer(t *testing.T) {
	t.Parallel()
	o, _, url := serve(t, Config{PingInterval: 30 * time.Millisecond, WriteTimeout: 300 * time.Millisecond})
	ws := dialTest(t, url)
	c := recvConn(t, o)

	// A reading client answers pings: it survives many intervals.
	go func() { _, _, _ = ws.Read(context.Background()) }()
	time.Sleep(300 * time.Millisecond)
	select {
	case <-c.Done():
		t.Fatal("a peer answering pings was dropped")
	default:
	}
	// One that never reads never answers.
	_ = dialTest(t, url)
	c2 := recvConn(t, o)
	select {
	case <-c2.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a peer that does not answer pings was not dropped")
	}
}

// The write deadline of a batch must not outlive it: pings the library writes long after
// it passed still go out, and so do later frames.
func TestConn_batch_deadline_does_not_linger(t *testing.T) {
	t.Parallel()
	o, _, url := serve(t, Config{WriteTimeout: 50 * time.Millisecond, PingInterval: 40 * time.Millisecond})
	ws := dialTest(t, url)
	c := recvConn(t, o)
	frames := make(chan []byte, 8)
	go func() {
		for {
			_, b, err := ws.Read(context.Background())
			if err != nil {
				close(frames)
				return
			}
			frames <- b
		}
	}()
	next := func() string {
		select {
		case b, ok := <-frames:
			if !ok {
				t.Fatal("connection closed")
			}
			return string(b)
		case <-time.After(5 * time.Second):
			t.Fatal("no frame")
			return ""
		}
	}
	for i := range 3 {
		want := fmt.Sprintf(`{"i":%d}`, i)
		if err := c.Queue().Push(Item{Data: []byte(want), Type: "ack"}); err != nil {
			t.Fatal(err)
		}
		if got := next(); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
		time.Sleep(300 * time.Millisecond) // several pings, all after the batch's deadline
	}
	select {
	case <-c.Done():
		t.Fatalf("dropped (close code %d)", c.CloseCode())
	default:
	}
}

// A client that stops reading is dropped at the write deadline with CloseSlow, and its
// written cursor stays at what the socket took.
func TestConn_write_deadline_marks_slow(t *testing.T) {
	t.Parallel()
	o, _, url := serve(t, Config{SendQueue: 64, WriteTimeout: 200 * time.Millisecond, PingInterval: time.Hour})
	_ = dialTest(t, url) // never reads
	c := recvConn(t, o)
	big := bytes.Repeat([]byte("x"), 256<<10)
	deadline := time.Now().Add(20 * time.Second)
	for seq := int64(1); ; seq++ {
		select {
		case <-c.Done():
			if c.CloseCode() != protocol.CloseSlow {
				t.Fatalf("close code %d, want slow", c.CloseCode())
			}
			if w := c.Written()["r"]; w >= seq {
				t.Fatalf("written %d of %d pushed", w, seq-1)
			}
			return
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("a client that does not read was never dropped")
		}
		if err := c.Queue().Push(Item{Data: big, Type: "message", Class: Timeline, Room: "r", Seq: seq}); err != nil {
			time.Sleep(10 * time.Millisecond)
			seq--
		}
	}
}

func TestAppendFrame_header(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		n    int
		want []byte
	}{
		{0, []byte{0x81, 0}},
		{125, []byte{0x81, 125}},
		{126, []byte{0x81, 126, 0, 126}},
		{65535, []byte{0x81, 126, 0xff, 0xff}},
		{65536, []byte{0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0}},
	} {
		got := appendFrame(nil, make([]byte, tc.n))
		if !bytes.Equal(got[:len(tc.want)], tc.want) || len(got) != len(tc.want)+tc.n {
			t.Fatalf("len %d: header % x", tc.n, got[:len(tc.want)])
		}
	}
}

// Upgrades racing a shutdown are either served and waited for, or refused (503 before the
// upgrade, 1012 after it); none is added to the wait group while Wait runs, which the race
// detector reports as a WaitGroup misuse.
func TestHandler_stop_refuses_connections_that_race_shutdown(t *testing.T) {
	o := &testOpener{conns: make(chan *Conn, 64), closed: make(chan *Conn, 64)}
	h := NewHandler(Config{}, o, nil, nil)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"

	var dialers sync.WaitGroup
	refused := make(chan int, 64)
	for range 32 {
		dialers.Add(1)
		go func() {
			defer dialers.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			ws, resp, err := websocket.Dial(ctx, url, nil)
			if err != nil {
				if resp != nil {
					refused <- resp.StatusCode
				}
				return
			}
			defer ws.CloseNow()
			_, _, err = ws.Read(ctx)
			if websocket.CloseStatus(err) == websocket.StatusCode(protocol.CloseServiceRestart) {
				refused <- 1012
			}
		}()
	}
	// Close every session the opener hands over, as the hub does at shutdown.
	stopClosing := make(chan struct{})
	go func() {
		for {
			select {
			case c := <-o.conns:
				c.Close(protocol.CloseServiceRestart, protocol.ReasonShutdown, nil, false)
			case <-stopClosing:
				return
			}
		}
	}()
	h.Stop()
	h.Wait()
	dialers.Wait()
	close(stopClosing)
	close(refused)
	for code := range refused {
		if code != http.StatusServiceUnavailable && code != 1012 {
			t.Fatalf("refused with %d", code)
		}
	}
	// After Stop, a new connection is refused before the upgrade.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, url, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial after Stop: %v, %+v", err, resp)
	}
}
