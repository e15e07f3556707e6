package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/kchat/kchat/pkg/localstack"
	"github.com/kchat/kchat/tools/chatbench/internal/wsclient"
)

// centrifugoProc is a Centrifugo server of the run's own: memory engine, one node, on a
// free port, anonymous clients allowed to subscribe and publish to channels without a
// namespace, as the reference measurement ran it.
type centrifugoProc struct {
	cmd  *exec.Cmd
	addr string
	dir  string
	done chan struct{}
}

func (b *Bench) startCentrifugo(ctx context.Context) (*centrifugoProc, error) {
	bin, err := localstack.InstallCentrifugo(ctx, b.cfg.Root, filepath.Join(b.cfg.Root, ".cache"), b.log)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "chatbench-centrifugo-")
	if err != nil {
		return nil, err
	}
	port := freePort()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	conf, _ := json.Marshal(map[string]any{
		"http_server": map[string]any{"address": "127.0.0.1", "port": port},
		"log":         map[string]any{"level": "error"},
		// Application pings every 25 s would need answers the bench's client does not
		// give; a run is shorter than these.
		"client":   map[string]any{"insecure": true, "allowed_origins": []string{"*"}, "ping_interval": "600s", "pong_timeout": "300s"},
		"channel":  map[string]any{"without_namespace": map[string]any{"allow_subscribe_for_client": true, "allow_publish_for_client": true}},
		"http_api": map[string]any{"insecure": true},
	})
	path := filepath.Join(dir, "config.json")
	if err := os.WriteFile(path, conf, 0o600); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	cmd := exec.Command(bin, "--config", path)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	p := &centrifugoProc{cmd: cmd, addr: addr, dir: dir, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	c := http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := c.Post("http://"+addr+"/api/info", "application/json", bytes.NewReader([]byte("{}")))
		if err == nil {
			_ = res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case <-p.done:
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("centrifugo exited at start-up (its log is above)")
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("centrifugo did not answer on %s within 20s", addr)
		}
	}
}

func (p *centrifugoProc) url() string { return "ws://" + p.addr + "/connection/websocket" }

func (p *centrifugoProc) stop() {
	terminate(p.cmd, p.done)
	_ = os.RemoveAll(p.dir)
}

// centrifugoWire is Centrifugo's JSON protocol: a member subscribes with command id 2
// (1 was connect); the sender publishes from its client connection, as a kchat sender
// sends over its WebSocket, with the client_msg_id in the publication's data.
func centrifugoWire() fanWire {
	var ids atomic.Int64
	ids.Store(2)
	return fanWire{
		open: func(ctx context.Context, url string, _ user) (*wsclient.Conn, error) {
			return wsclient.DialCentrifugo(ctx, url)
		},
		subscribe: func(room string) []byte {
			return fmt.Appendf(nil, `{"id":2,"subscribe":{"channel":%q}}`, room)
		},
		send: func(_, room, clientMsgID, text string) []byte {
			return fmt.Appendf(nil, `{"id":%d,"publish":{"channel":%q,"data":{"client_msg_id":%q,"text":%q}}}`, ids.Add(1), room, clientMsgID, text)
		},
		read: func(frame []byte, fn func(fanKind, []byte)) {
			for len(frame) > 0 {
				var msg []byte
				msg, frame, _ = bytes.Cut(frame, []byte{'\n'})
				switch {
				case bytes.HasPrefix(msg, []byte(`{"push":`)):
					fn(fanMessage, msg)
				case bytes.HasPrefix(msg, []byte(`{"id":2,"subscribe":`)):
					fn(fanSubscribed, msg)
				}
			}
		},
	}
}
