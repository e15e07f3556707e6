package transport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// The WebSocket library (coder/websocket) does the handshake, reads every frame and
// writes its own control frames (pongs, pings, close). Data frames do not go through it:
// its Write costs a context, a timer registration, two channel locks and one syscall per
// frame, which is most of the gateway's cost per delivery when one message goes to
// thousands of connections. The writer goroutine frames them itself (server frames are
// unmasked, so a frame is a 2–10 byte header and the payload) and writes everything
// queued with one Write.
//
// Both write paths meet in wireConn, under one mutex. The library hands wireConn whole
// frames, one Write each: it is only ever asked for control frames (nothing here calls
// its Write), and its buffered writer, at least as large as the largest control frame, is
// flushed at the end of every frame. So frames never interleave.

const (
	// libWriteBuf is the library's write buffer: a server control frame is at most 2+125
	// bytes (it must fit whole, see above).
	libWriteBuf = 128
	// readBuf is the library's read buffer (net/http's is 4 KiB). Client frames are small
	// JSON objects, and a payload longer than the buffer is read straight into the
	// message, so a small one costs a few more reads for a large frame and nothing else.
	readBuf = 512
	// maxChunk bounds the bytes written (and buffered) per Write; each chunk gets its own
	// write deadline, so a large backlog is not held to the deadline of a single frame.
	maxChunk = 32 << 10

	opText  = 0x1
	opClose = 0x8
)

// wireConn is the hijacked connection under the library.
type wireConn struct {
	net.Conn

	mu        sync.Mutex
	closeSent bool      // the library sent a close frame: no data frame may follow (RFC 6455 5.5.1)
	deadline  bool      // a write deadline of the writer's is still set on the socket
	at        time.Time // that deadline
}

// Write is the library's path: one whole control frame per call. The library bounds its
// writes with its own timeouts, so a deadline the writer left behind is cleared first.
func (w *wireConn) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.deadline {
		if err := w.Conn.SetWriteDeadline(time.Time{}); err != nil {
			return 0, err
		}
		w.deadline = false
	}
	if len(p) > 0 && p[0]&0x0f == opClose {
		w.closeSent = true
	}
	return w.Conn.Write(p)
}

// writeFrames is the writer goroutine's path: data frames already framed, one Write,
// bounded by deadline. The deadline is left set (the library's path clears it), and the
// next batch keeps it when it is no later than its own and leaves at least half the time
// its own would: re-arming the socket's timer for every batch was a tenth of a gateway's
// CPU in a room of a thousand members. A batch is so given between half and all of
// the time asked for, never more.
func (w *wireConn) writeFrames(b []byte, deadline time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closeSent {
		return net.ErrClosed
	}
	if !w.keepDeadline(deadline, time.Now()) {
		if err := w.Conn.SetWriteDeadline(deadline); err != nil {
			return err
		}
		w.deadline, w.at = true, deadline
	}
	_, err := w.Conn.Write(b)
	return err
}

// keepDeadline says whether the deadline set on the socket will do for a write at now
// that asks for deadline.
func (w *wireConn) keepDeadline(deadline, now time.Time) bool {
	return w.deadline && !w.at.After(deadline) && w.at.Sub(now) >= deadline.Sub(now)/2
}

// appendFrame appends one unfragmented, unmasked text frame holding payload.
func appendFrame(b, payload []byte) []byte {
	n := len(payload)
	switch {
	case n <= 125:
		b = append(b, 0x80|opText, byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|opText, 126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|opText, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, payload...)
}

// chunkPool holds write buffers between batches: an idle connection holds none.
var chunkPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// hijackWriter hands the library a wireConn and small buffers when it hijacks the
// connection. net/http's 4 KiB reader and writer would otherwise stay with every idle
// connection for its lifetime.
type hijackWriter struct {
	http.ResponseWriter
	wire *wireConn
}

func (h *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.wire = &wireConn{Conn: nc}
	r := brw.Reader
	if r.Buffered() == 0 {
		// Bytes the client sent right behind its handshake are in net/http's reader; only
		// when there are none can it be swapped for a smaller one.
		r = bufio.NewReaderSize(nc, readBuf)
	}
	return h.wire, bufio.NewReadWriter(r, bufio.NewWriterSize(h.wire, libWriteBuf)), nil
}

func (h *hijackWriter) Unwrap() http.ResponseWriter { return h.ResponseWriter }

var errNoWire = errors.New("transport: connection was not hijacked through hijackWriter")
