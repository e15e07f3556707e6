package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kchat/kchat/pkg/protocol"
)

// The writer frames data itself and shares the socket with the library, which writes its
// pings, pongs and close frame through wireConn.Write (see wire.go). That is correct only
// while the library hands over each control frame whole, in one Write; a library upgrade
// that changes its buffer or writer could split one and let a batch of data frames land in
// the middle. This test makes those writes meet: several producers push frames of every
// length class (batches larger than a write chunk included) while the server pings the
// client in a loop and the client pings the server (whose pongs go the same way), and the
// connection is closed, with flush, while the producers are still pushing. The client is
// coder/websocket's own reader, which fails on any malformed frame (bad header, split
// control frame, data after close); on top of that every payload is checked byte for
// byte, each producer's frames in the order pushed, none missing, and the stream must end
// with the final frame and the close code.
func TestWire_pings_and_close_interleave_with_batched_frames(t *testing.T) {
	t.Parallel()
	for i := range 3 {
		t.Run(fmt.Sprint("conn", i), func(t *testing.T) {
			t.Parallel()
			interleave(t)
		})
	}
}

const (
	wireProducers = 4
	wireMinFrames = 600 // per producer, before the close
	wireMinPings  = 10  // each way, completed while the producers push, before the close
	// wirePingers ping concurrently each way: a ping waits for its pong behind the
	// backlog, so one pinger alone writes few ping frames into the stream.
	wirePingers = 3
	// wireWindow bounds the frames pushed but not yet read by the client. The close
	// handshake waits only 5 s for the client's close frame (then the socket is closed,
	// and the unread rest is lost to a reset), so the backlog at the close must be one
	// the client reads in well under that, even under the race detector on a busy machine.
	wireWindow = 256
)

// wirePayload is producer p's frame n: a header naming it, padded to a length that cycles
// through the frame length classes (7-bit, 16-bit, 64-bit; some larger than maxChunk).
func wirePayload(p, n int) []byte {
	size := 20 + (n*37)%200
	switch {
	case n%173 == 0:
		size = 70000
	case n%61 == 0:
		size = maxChunk + 1000
	case n%13 == 0:
		size = 126 + n%5000
	}
	b := bytes.Repeat([]byte{byte('a' + (p*7+n)%26)}, size)
	copy(b, fmt.Sprintf("p=%d n=%d|", p, n))
	return b
}

func interleave(t *testing.T) {
	o, _, url := serve(t, Config{SendQueue: 1024, PingInterval: 2 * time.Millisecond, WriteTimeout: 10 * time.Second})
	ws := dialTest(t, url)
	c := recvConn(t, o)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The client reads everything, answering the server's pings as it goes.
	type result struct {
		frames [][]byte
		err    error
	}
	read := make(chan result, 1)
	readEnded := make(chan struct{}) // a broken stream ends the test at once
	var received, pushed atomic.Int64
	go func() {
		defer close(readEnded)
		var r result
		for {
			typ, b, err := ws.Read(ctx)
			if err != nil {
				r.err = err
				read <- r
				return
			}
			if typ != websocket.MessageText {
				r.err = fmt.Errorf("frame %d: type %v", len(r.frames), typ)
				read <- r
				return
			}
			r.frames = append(r.frames, b)
			received.Add(1)
		}
	}()

	// Pingers ping in a loop until told to stop; a ping in progress is finished (its pong
	// read), so a stopped pinger has nothing in flight. After the close, the server's
	// pings fail (the library refuses them once its close frame is out): expected.
	type pingers struct {
		stop atomic.Bool
		done sync.WaitGroup
		n    atomic.Int64
	}
	var closing atomic.Bool
	var server, client pingers
	pingLoop := func(what string, ping func(context.Context) error, ps *pingers) {
		defer ps.done.Done()
		for !ps.stop.Load() {
			pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
			err := ping(pctx)
			pcancel()
			if err != nil {
				if !closing.Load() {
					t.Errorf("%s ping failed before the close: %v", what, err)
				}
				return
			}
			ps.n.Add(1)
		}
	}
	server.done.Add(wirePingers)
	client.done.Add(wirePingers)
	for range wirePingers {
		go pingLoop("server", c.ws.Ping, &server)
		go pingLoop("client", ws.Ping, &client)
	}

	// Producers push until the queue is closed; accepted[p] is how many got in.
	var accepted [wireProducers]int
	var producers, warm sync.WaitGroup
	producers.Add(wireProducers)
	warm.Add(wireProducers)
	for p := range wireProducers {
		go func() {
			defer producers.Done()
			warmed := false
			defer func() {
				if !warmed {
					warm.Done()
				}
			}()
			for n := 0; ; {
				if !warmed && n >= wireMinFrames && server.n.Load() >= wireMinPings && client.n.Load() >= wireMinPings {
					warmed = true
					warm.Done()
				}
				select {
				case <-readEnded:
					return // the stream broke; the reader's error says how
				case <-ctx.Done():
					t.Errorf("producer %d: timed out", p)
					return
				default:
				}
				if pushed.Load()-received.Load() > wireWindow {
					time.Sleep(50 * time.Microsecond) // the client is behind; let it read
					continue
				}
				err := c.Queue().Push(Item{Data: wirePayload(p, n), Type: "message", Class: Timeline, Room: fmt.Sprint("r", p), Seq: int64(n + 1)})
				switch {
				case err == nil:
					n++
					accepted[p] = n
					pushed.Add(1)
				case errors.Is(err, ErrQueueFull):
					time.Sleep(50 * time.Microsecond)
				case errors.Is(err, ErrQueueClosed):
					return
				default:
					t.Errorf("producer %d: %v", p, err)
					return
				}
			}
		}()
	}

	warm.Wait()
	// The client stops pinging before the close: coder/websocket fails its close handshake
	// when a peer's ping arrives after its own close frame (it will not write the pong),
	// and the socket closed under unread pongs becomes a reset. That is the library's
	// handshake, not the framing under test; the server's pings go on through the close.
	client.stop.Store(true)
	client.done.Wait()
	closing.Store(true)
	c.Close(protocol.CloseServiceRestart, protocol.ReasonShutdown, []byte(`{"type":"reconnect"}`), true)
	producers.Wait()
	r := <-read
	server.stop.Store(true)
	server.done.Wait()

	if code := websocket.CloseStatus(r.err); code != websocket.StatusCode(protocol.CloseServiceRestart) {
		t.Fatalf("after %d frames the stream ended with %v, not the close code", len(r.frames), r.err)
	}
	if len(r.frames) == 0 || string(r.frames[len(r.frames)-1]) != `{"type":"reconnect"}` {
		t.Fatalf("the last frame is not the final one")
	}
	next := make([]int, wireProducers)
	for i, f := range r.frames[:len(r.frames)-1] {
		var p, n int
		if _, err := fmt.Sscanf(string(f[:min(len(f), 24)]), "p=%d n=%d|", &p, &n); err != nil || p < 0 || p >= wireProducers {
			t.Fatalf("frame %d: unreadable header %.24q", i, f)
		}
		if n != next[p] {
			t.Fatalf("frame %d: producer %d frame %d, want %d", i, p, n, next[p])
		}
		if !bytes.Equal(f, wirePayload(p, n)) {
			t.Fatalf("frame %d (producer %d frame %d): payload damaged (%d bytes)", i, p, n, len(f))
		}
		next[p]++
	}
	for p := range wireProducers {
		if next[p] != accepted[p] {
			t.Fatalf("producer %d: %d frames arrived, %d were accepted", p, next[p], accepted[p])
		}
	}
	t.Logf("%d frames, %d server pings, %d client pings", len(r.frames), server.n.Load(), client.n.Load())
}

// A batch keeps the deadline already on the socket only when that is no later than its
// own and leaves it at least half its time; anything else re-arms it.
func TestWireConn_keeps_a_deadline_only_when_it_is_no_laxer_and_leaves_half(t *testing.T) {
	now := time.Unix(1000, 0)
	tests := []struct {
		name     string
		set      bool          // a writer's deadline is on the socket
		current  time.Duration // that deadline, from now
		asked    time.Duration // the batch's deadline, from now
		wantKeep bool
	}{
		{"none set", false, 0, 10 * time.Second, false},
		{"set moments ago", true, 9900 * time.Millisecond, 10 * time.Second, true},
		{"exactly half left", true, 5 * time.Second, 10 * time.Second, true},
		{"less than half left", true, 4 * time.Second, 10 * time.Second, false},
		{"already passed", true, -time.Second, 50 * time.Millisecond, false},
		{"later than asked (a close's short deadline)", true, 10 * time.Second, 2 * time.Second, false},
		{"the same", true, 2 * time.Second, 2 * time.Second, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &wireConn{deadline: tt.set, at: now.Add(tt.current)}
			if got := w.keepDeadline(now.Add(tt.asked), now); got != tt.wantKeep {
				t.Fatalf("keepDeadline = %v, want %v", got, tt.wantKeep)
			}
		})
	}
}
