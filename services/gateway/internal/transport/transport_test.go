package transport_test

import (
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/kchat/kchat/services/gateway/internal/transport"
)

func TestQueue_bounds_and_classes(t *testing.T) {
	t.Parallel()
	q := transport.NewQueue(3)
	for i := range 3 {
		if err := q.Push(transport.Item{Class: transport.Timeline, Room: "r", Seq: int64(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Push(transport.Item{Class: transport.Timeline, Room: "r", Seq: 4}); !errors.Is(err, transport.ErrQueueFull) {
		t.Fatalf("timeline over limit: %v", err)
	}
	if err := q.Push(transport.Item{Class: transport.Ephemeral}); !errors.Is(err, transport.ErrQueueFull) {
		t.Fatalf("ephemeral over limit: %v", err)
	}
	// Control frames have a reserve, so replies still go out behind a message backlog.
	for i := range transport.ControlReserve {
		if err := q.Push(transport.Item{Class: transport.Control, Type: "ack"}); err != nil {
			t.Fatalf("control %d: %v", i, err)
		}
	}
	if err := q.Push(transport.Item{Class: transport.Control}); !errors.Is(err, transport.ErrQueueFull) {
		t.Fatalf("control over reserve: %v", err)
	}
	dropped := q.DropDroppable()
	if len(dropped) != 3 || dropped[0].Seq != 1 || dropped[2].Seq != 3 {
		t.Fatalf("dropped %+v", dropped)
	}
	if q.Len() != transport.ControlReserve {
		t.Fatalf("control frames were dropped: len %d", q.Len())
	}
	select {
	case <-q.Space():
	default:
		t.Fatal("dropping did not signal space")
	}
	items := q.TakeAll()
	if len(items) != transport.ControlReserve || q.Len() != 0 {
		t.Fatalf("take all: %d left %d", len(items), q.Len())
	}
	if !q.HasSpace(1) {
		t.Fatal("empty queue has no space")
	}
	q.Close()
	if err := q.Push(transport.Item{Class: transport.Control}); !errors.Is(err, transport.ErrQueueClosed) {
		t.Fatalf("push after close: %v", err)
	}
}

func TestQueue_has_space_keeps_slack(t *testing.T) {
	t.Parallel()
	q := transport.NewQueue(8)
	for range 5 {
		_ = q.Push(transport.Item{Class: transport.Timeline})
	}
	if q.HasSpace(3) {
		t.Fatal("5 queued + slack 3 must not fit in 8")
	}
	if !q.HasSpace(2) {
		t.Fatal("5 queued + slack 2 fits in 8")
	}
}

func TestOriginAllowed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		origin   string
		host     string
		patterns []string
		want     bool
	}{
		{"no origin (not a browser)", "", "chat.example:8081", transport.DefaultOrigins, true},
		{"same host", "https://chat.example:8081", "chat.example:8081", transport.DefaultOrigins, true},
		{"localhost any port", "http://localhost:5173", "gw:8081", transport.DefaultOrigins, true},
		{"localhost no port", "http://localhost", "gw:8081", transport.DefaultOrigins, true},
		{"127.0.0.1", "http://127.0.0.1:3000", "gw:8081", transport.DefaultOrigins, true},
		{"https localhost not in default", "https://localhost:5173", "gw:8081", transport.DefaultOrigins, false},
		{"port must be digits", "http://localhost:1.evil.com", "gw:8081", transport.DefaultOrigins, false},
		{"other site", "https://evil.example", "gw:8081", transport.DefaultOrigins, false},
		{"explicit list", "https://app.kchat.dev", "gw:8081", []string{"https://app.kchat.dev"}, true},
		{"explicit wildcard", "https://a.kchat.dev", "gw:8081", []string{"https://*.kchat.dev"}, true},
		{"explicit list excludes localhost", "http://localhost:3000", "gw:8081", []string{"https://app.kchat.dev"}, false},
		{"star", "https://anything.example", "gw:8081", []string{"*"}, true},
		{"malformed", "::nonsense", "gw:8081", transport.DefaultOrigins, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "http://"+tc.host+"/ws", nil)
			r.Host = tc.host
			if tc.origin != "" {
				r.Header.Set("Origin", tc.origin)
			}
			if got := transport.OriginAllowed(r, tc.patterns); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}
