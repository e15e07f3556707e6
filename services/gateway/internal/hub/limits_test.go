package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/services/gateway/internal/chat"
	"github.com/kchat/kchat/services/gateway/internal/ratelimit"
	"github.com/kchat/kchat/services/gateway/internal/transport"
)

// clock is a settable time for the limiters.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// ackChat accepts every send.
type ackChat struct{ nopChat }

func (ackChat) SendAsync(_ context.Context, _ chat.User, req chat.SendRequest, done func(protocol.Ack, error)) {
	done(protocol.Ack{Base: protocol.Base{Type: protocol.TypeAck}, Room: req.Room, ClientMsgID: req.ClientMsgID, Status: protocol.AckAccepted}, nil)
}

// frames takes every queued frame and decodes it.
func frames(out *fakeOut) []map[string]any {
	var fs []map[string]any
	for _, it := range out.q.TakeAll() {
		var f map[string]any
		_ = json.Unmarshal(it.Data, &f)
		fs = append(fs, f)
	}
	return fs
}

func TestSession_rate_limits(t *testing.T) {
	send := func(i int) string {
		return fmt.Sprintf(`{"type":"send","room":"r","client_msg_id":"c%d","text":"hi","ref":"%d"}`, i, i)
	}
	typing := func(int) string { return `{"type":"typing","room":"r"}` }
	type step struct {
		conn    int // which connection sends
		frame   func(int) string
		n       int           // how many frames
		advance time.Duration // clock moves before the frames
		// want: acks and rate_limited errors among the replies; wantWait the last error's retry_after_ms.
		acks, limited int
		wantWait      int64
	}
	tests := []struct {
		name  string
		cfg   Config
		steps []step
		// wantClose is the close code the first connection ends with (0: open).
		wantClose protocol.CloseCode
	}{
		{
			name: "per connection: the burst, then retry_after_ms, then the refill",
			cfg:  Config{ConnRate: ratelimit.Rate{PerSecond: 10, Burst: 3}},
			steps: []step{
				{frame: send, n: 5, acks: 3, limited: 2, wantWait: 100},
				{frame: send, n: 1, advance: 100 * time.Millisecond, acks: 1},
			},
		},
		{
			name: "per user across connections",
			cfg:  Config{ConnRate: ratelimit.Rate{PerSecond: 10, Burst: 10}, UserLimiter: ratelimit.NewKeyed(ratelimit.Rate{PerSecond: 1, Burst: 2})},
			steps: []step{
				{conn: 0, frame: send, n: 2, acks: 2},
				{conn: 1, frame: send, n: 1, limited: 1, wantWait: 1000},
				{conn: 1, frame: send, n: 1, advance: time.Second, acks: 1},
			},
		},
		{
			name: "typing over the frame limit is dropped without an answer",
			cfg:  Config{FrameRate: ratelimit.Rate{PerSecond: 1, Burst: 2}},
			steps: []step{
				{frame: typing, n: 10},
				{frame: send, n: 1, limited: 1, wantWait: 1000},
			},
		},
		{
			name: "far over the limit for the whole window closes 1008",
			cfg:  Config{ConnRate: ratelimit.Rate{PerSecond: 1, Burst: 1}, AbuseFactor: 2, AbuseWindow: 2 * time.Second},
			// 2 × (1/s × 2 s + 1) = 6 attempts allowed in the window; the 7th closes.
			// Replies queued before the close are discarded with the queue, as on a real socket.
			steps:     []step{{frame: send, n: 6, acks: 1, limited: 5}, {frame: send, n: 1}},
			wantClose: protocol.ClosePolicy,
		},
		{
			name:  "no limits configured",
			cfg:   Config{},
			steps: []step{{frame: send, n: 50, acks: 50}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := &clock{now: time.Unix(1_700_000_000, 0)}
			cfg := tc.cfg
			cfg.GatewayID, cfg.Now = "gw-test", clk.Now
			pr := &fakePresence{sets: map[string]int{}}
			h, err := New(cfg, ackChat{}, &fakeTimeline{last: map[string]int64{}}, nopAnnouncer{}, pr, pr, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			outs := []*fakeOut{newFakeOut(256), newFakeOut(256)}
			var sessions []*Session
			for _, out := range outs {
				s := h.Attach(out)
				s.mu.Lock()
				s.user = &chat.User{ID: "u1", Username: "alice"}
				s.mu.Unlock()
				sessions = append(sessions, s)
			}
			i := 0
			for n, st := range tc.steps {
				clk.advance(st.advance)
				for range st.n {
					sessions[st.conn].HandleFrame(context.Background(), []byte(st.frame(i)))
					i++
				}
				acks, limited := 0, 0
				var wait int64
				for _, f := range frames(outs[st.conn]) {
					switch {
					case f["type"] == "ack":
						acks++
					case f["type"] == "error" && f["code"] == protocol.CodeRateLimited:
						limited++
						wait = int64(f["retry_after_ms"].(float64))
						// A client retries the message the error names; its ref alone
						// would leave it to guess.
						if f["client_msg_id"] != "c"+f["ref"].(string) || f["room"] != "r" {
							t.Fatalf("step %d: rate_limited for ref %v names client_msg_id %v, room %v", n, f["ref"], f["client_msg_id"], f["room"])
						}
					default:
						t.Fatalf("step %d: unexpected frame %v", n, f)
					}
				}
				if acks != st.acks || limited != st.limited {
					t.Fatalf("step %d: %d acks, %d rate_limited; want %d, %d", n, acks, limited, st.acks, st.limited)
				}
				if st.wantWait > 0 && wait != st.wantWait {
					t.Fatalf("step %d: retry_after_ms %d, want %d", n, wait, st.wantWait)
				}
			}
			code, final := outs[0].closed()
			if code != tc.wantClose {
				t.Fatalf("close code %d, want %d", code, tc.wantClose)
			}
			if code == protocol.ClosePolicy {
				var f map[string]any
				if json.Unmarshal(final, &f) != nil || f["code"] != protocol.CodeRateLimited {
					t.Fatalf("final frame %s", final)
				}
			}
		})
	}
}

func TestSession_notification_once_per_connection(t *testing.T) {
	h := newTestHub(t, &fakeTimeline{last: map[string]int64{}}, Config{})
	out := newFakeOut(16)
	s := h.Attach(out)
	s.mu.Lock()
	s.user = &chat.User{ID: "u1", Username: "alice"}
	s.mu.Unlock()
	n := protocol.Notification{Base: protocol.Base{Type: protocol.TypeNotification}, NotificationID: "0193b2c4-0000-7000-8000-000000000001"}
	s.deliverNotification(n, true)  // at hello, from the store
	s.deliverNotification(n, false) // the live copy of the same
	items := out.q.TakeAll()
	if len(items) != 1 || items[0].Class != transport.Control {
		t.Fatalf("queued %d frames (%v), want one control frame", len(items), items)
	}
}
