package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"github.com/kchat/kchat/pkg/protocol"
)

// The raw server is the same-run baseline for fanout and connections: the least a Go
// WebSocket server on the same library (coder/websocket) can do. It accepts connections
// without authentication, keeps a reader and a writer goroutine with a bounded queue per
// connection (the gateway's minimal shape), and for every send frame of a sender
// connection (?role=sender) encodes one message frame once and queues it to every other
// connection, dropping (and counting) when a queue is full. chatbench runs it as a child
// process (itself, with CHATBENCH_RAW_ADDR set) so that its CPU and memory are its own.

const rawServerEnv = "CHATBENCH_RAW_ADDR"

type rawConn struct {
	ws *websocket.Conn
	q  chan []byte
}

type rawServer struct {
	mu      sync.RWMutex
	conns   map[*rawConn]struct{}
	seq     atomic.Int64
	dropped atomic.Int64
}

func serveRaw(addr string) error {
	s := &rawServer{conns: map[*rawConn]struct{}{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", s.handle)
	mux.HandleFunc("/stats", func(w http.ResponseWriter, _ *http.Request) {
		s.mu.RLock()
		n := len(s.conns)
		s.mu.RUnlock()
		_ = json.NewEncoder(w).Encode(map[string]int64{"goroutines": int64(runtime.NumGoroutine()), "conns": int64(n), "dropped": s.dropped.Load()})
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return http.Serve(ln, mux)
}

func (s *rawServer) handle(w http.ResponseWriter, r *http.Request) {
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return
	}
	ws.SetReadLimit(16 << 10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &rawConn{ws: ws, q: make(chan []byte, 256)}
	sender := r.URL.Query().Get("role") == "sender"
	done := make(chan struct{})
	go func() { // writer
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case b := <-c.q:
				wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
				err := ws.Write(wctx, websocket.MessageText, b)
				wcancel()
				if err != nil {
					cancel()
					return
				}
			}
		}
	}()
	c.q <- protocol.Encode(&protocol.Welcome{Base: protocol.Base{Type: protocol.TypeWelcome}, GatewayID: "raw"})
	if !sender {
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
	}
	for {
		_, data, err := ws.Read(ctx)
		if err != nil {
			break
		}
		if sender {
			s.publish(c, data)
		}
	}
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	cancel()
	<-done
	_ = ws.CloseNow()
}

func (s *rawServer) publish(from *rawConn, data []byte) {
	// Not protocol.Decode: the baseline does the least a server must (no validation).
	var in protocol.Send
	if json.Unmarshal(data, &in) != nil {
		return
	}
	now := time.Now().UTC()
	seq := s.seq.Add(1)
	frame := protocol.Encode(&protocol.Message{Base: protocol.Base{Type: protocol.TypeMessage}, Room: in.Room, Seq: seq, Kind: protocol.KindMessage,
		MessageID: fmt.Sprint(seq), Sender: "raw", SenderName: "raw", ClientMsgID: in.ClientMsgID, Text: in.Text, SentAt: now, StoredAt: now})
	s.mu.RLock()
	for c := range s.conns {
		select {
		case c.q <- frame:
		default:
			s.dropped.Add(1)
		}
	}
	s.mu.RUnlock()
	select {
	case from.q <- protocol.Encode(&protocol.Ack{Base: protocol.Base{Type: protocol.TypeAck, Ref: in.Ref}, ClientMsgID: in.ClientMsgID}):
	default:
	}
}

// rawProc is a running raw server.
type rawProc struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{}
}

func startRaw() (*rawProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort())
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), rawServerEnv+"="+addr)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &rawProc{cmd: cmd, addr: addr, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := p.stats(); err == nil {
			return p, nil
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("raw server did not start on %s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *rawProc) url() string { return "ws://" + p.addr + "/ws" }

func (p *rawProc) stats() (map[string]int64, error) {
	c := http.Client{Timeout: 2 * time.Second}
	res, err := c.Get("http://" + p.addr + "/stats")
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	var m map[string]int64
	return m, json.NewDecoder(res.Body).Decode(&m)
}

func (p *rawProc) stop() { terminate(p.cmd, p.done) }

// terminate stops a child process the bench started: SIGTERM, then SIGKILL after 5 s.
// done is closed when its Wait returned.
func terminate(cmd *exec.Cmd, done <-chan struct{}) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// metricValue reads one unlabelled sample (e.g. go_goroutines) from a Prometheus
// text endpoint.
func metricValue(url, name string) (float64, error) {
	c := http.Client{Timeout: 5 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 8<<20))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			_, err := fmt.Sscan(v, &f)
			return f, err
		}
	}
	return 0, fmt.Errorf("%s: no %s", url, name)
}
