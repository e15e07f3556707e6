package forward

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/consumer"
	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/producer"
)

// fakeWriter records each Write call; it is the in-memory stand-in for the producer.
type fakeWriter struct {
	calls [][]kafka.Message
	err   error
}

func (w *fakeWriter) Write(_ context.Context, msgs ...kafka.Message) error {
	if w.err != nil {
		return w.err
	}
	w.calls = append(w.calls, msgs)
	return nil
}

// fakeRouter is a fixed routing table.
type fakeRouter map[string][]string

func (r fakeRouter) Gateways(room string) []string { return r[room] }
func (r fakeRouter) AllGateways() []string {
	var all []string
	for _, gws := range r {
		for _, gw := range gws {
			if !slices.Contains(all, gw) {
				all = append(all, gw)
			}
		}
	}
	slices.Sort(all)
	return all
}

var router = fakeRouter{"r1": {"gw-a"}, "r2": {"gw-a", "gw-b"}}

// typing is a typing event in room from user, as fanout consumes it from chat.ephemeral.
func typing(t testing.TB, room, user string) *consumer.Message {
	t.Helper()
	return msg(t, "chat.ephemeral", event.Typing{RoomID: room, User: user, UserName: "U <&>", State: event.TypingStarted})
}

func msg(t testing.TB, topic string, p event.Payload) *consumer.Message {
	t.Helper()
	e, err := event.New("kchat/test", p)
	if err != nil {
		t.Fatal(err)
	}
	km, err := producer.Message(topic, e.Subject, e)
	if err != nil {
		t.Fatal(err)
	}
	return &consumer.Message{Topic: km.Topic, Key: km.Key, Value: km.Value, Headers: km.Headers, Event: e}
}

// delivered is one copy as (gateway key, event id).
type delivered struct{ gateway, eventID string }

func TestHandleBatch_routes(t *testing.T) {
	tests := []struct {
		name   string
		batch  func(t *testing.T) []*consumer.Message
		want   []delivered
		events map[string]float64 // kchat_fanout_events_total by type
	}{
		{
			name: "typing goes to the gateways subscribed to its room only",
			batch: func(t *testing.T) []*consumer.Message {
				return []*consumer.Message{typing(t, "r1", "u-1"), typing(t, "r2", "u-1"), typing(t, "r3", "u-1")}
			},
			want: []delivered{{"gw-a", "0"}, {"gw-a", "1"}, {"gw-b", "1"}},
		},
		{
			name: "one room's typing keeps its order per gateway",
			batch: func(t *testing.T) []*consumer.Message {
				return []*consumer.Message{typing(t, "r2", "u-1"), typing(t, "r2", "u-2"), typing(t, "r2", "u-3")}
			},
			want: []delivered{{"gw-a", "0"}, {"gw-b", "0"}, {"gw-a", "1"}, {"gw-b", "1"}, {"gw-a", "2"}, {"gw-b", "2"}},
		},
		{
			name: "notifications go to every gateway with subscriptions",
			batch: func(t *testing.T) []*consumer.Message {
				return []*consumer.Message{msg(t, "chat.notifications", event.NotificationCreated{NotificationID: "n", User: "u-9", RoomID: "r9", Seq: 1,
					Reason: event.ReasonMention, Sender: "u-1", CreatedAt: time.Now()})}
			},
			want: []delivered{{"gw-a", "0"}, {"gw-b", "0"}},
		},
		{
			name: "other types are not forwarded",
			batch: func(t *testing.T) []*consumer.Message {
				return []*consumer.Message{msg(t, "chat.submitted", event.MembershipChanged{RoomID: "r1", User: "u", UserName: "U",
					Change: event.ChangeJoined, By: "u", ChangedAt: time.Now()})}
			},
			want: nil,
		},
		{
			// Gateways read chat.stored themselves; a stray copy here would be a second path.
			name: "the timeline is not forwarded, even to subscribed gateways",
			batch: func(t *testing.T) []*consumer.Message {
				return []*consumer.Message{msg(t, "chat.stored", event.MessageStored{RoomID: "r2", Seq: 1, Kind: event.KindMessage,
					MessageID: "m", Sender: "u-1", SenderName: "U", Text: "hi <&>", RoomKind: event.RoomKindRoom,
					SentAt: time.Now(), StoredAt: time.Now()})}
			},
			want: nil,
		},
		{
			name: "nobody subscribed: no write at all",
			batch: func(t *testing.T) []*consumer.Message {
				return []*consumer.Message{typing(t, "r3", "u-1"), typing(t, "r4", "u-1")}
			},
			want: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &fakeWriter{}
			f, err := New(Config{Topic: "chat.deliveries"}, w, router)
			if err != nil {
				t.Fatal(err)
			}
			batch := tt.batch(t)
			if err := f.HandleBatch(context.Background(), batch); err != nil {
				t.Fatal(err)
			}
			if tt.want == nil {
				if len(w.calls) != 0 {
					t.Fatalf("wrote %d times, want no write", len(w.calls))
				}
				return
			}
			if len(w.calls) != 1 {
				t.Fatalf("wrote %d times, want exactly one Write for the batch", len(w.calls))
			}
			var got []delivered
			for _, d := range w.calls[0] {
				i := slices.IndexFunc(batch, func(m *consumer.Message) bool { return bytes.Equal(m.Value, d.Value) })
				if i < 0 {
					t.Fatalf("delivery value is not one of the consumed values: %s", d.Value)
				}
				if &d.Value[0] != &batch[i].Value[0] {
					t.Errorf("delivery value was copied or re-encoded; want the consumed bytes themselves")
				}
				if d.Topic != "chat.deliveries" {
					t.Errorf("topic = %q", d.Topic)
				}
				gw := string(d.Key)
				if h := lastHeader(d.Headers, HeaderGateway); h != gw {
					t.Errorf("%s header = %q, key = %q", HeaderGateway, h, gw)
				}
				if len(d.Headers) != len(batch[i].Headers)+1 || !slices.EqualFunc(d.Headers[:len(batch[i].Headers)], batch[i].Headers,
					func(a, b kafka.Header) bool { return a.Key == b.Key && bytes.Equal(a.Value, b.Value) }) {
					t.Errorf("headers = %v, want the original ones plus %s", d.Headers, HeaderGateway)
				}
				got = append(got, delivered{gw, string(rune('0' + i))})
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("deliveries = %v, want %v", got, tt.want)
			}
			for _, m := range batch {
				if n := len(m.Headers); n > 0 && m.Headers[n-1].Key == HeaderGateway {
					t.Fatal("the consumed message's headers were modified")
				}
			}
		})
	}
}

func lastHeader(hs []kafka.Header, key string) string {
	for i := len(hs) - 1; i >= 0; i-- {
		if hs[i].Key == key {
			return string(hs[i].Value)
		}
	}
	return ""
}

func TestHandleBatch_writeErrorIsReturned(t *testing.T) {
	boom := errors.New("kafka down")
	reg := prometheus.NewRegistry()
	metrics := NewMetrics(reg)
	f, _ := New(Config{Topic: "d", Metrics: metrics}, &fakeWriter{err: boom}, router)
	if err := f.HandleBatch(context.Background(), []*consumer.Message{typing(t, "r1", "u-1")}); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want %v", err, boom)
	}
	// A failed batch is retried by the runner: counting it now would count it twice.
	if n := testutil.ToFloat64(metrics.eventsIn.WithLabelValues(event.TypeTyping)); n != 0 {
		t.Fatalf("events counted on failure: %v", n)
	}
}

type panicRouter struct{}

func (panicRouter) Gateways(string) []string { panic("bug") }
func (panicRouter) AllGateways() []string    { panic("bug") }

func TestHandleBatch_panicBecomesError(t *testing.T) {
	f, _ := New(Config{Topic: "d"}, &fakeWriter{}, panicRouter{})
	err := f.HandleBatch(context.Background(), []*consumer.Message{typing(t, "r1", "u-1")})
	if err == nil || !strings.Contains(err.Error(), "panic: bug") {
		t.Fatalf("err = %v, want the panic as an error", err)
	}
}

func TestHandleBatch_metrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	metrics := NewMetrics(reg)
	now := time.Now()
	f, _ := New(Config{Topic: "d", Metrics: metrics, Now: func() time.Time { return now }}, &fakeWriter{}, router)
	batch := []*consumer.Message{typing(t, "r1", "u-1"), typing(t, "r2", "u-1"), typing(t, "r3", "u-1")}
	if err := f.HandleBatch(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		got  float64
		want float64
	}{
		{"events", testutil.ToFloat64(metrics.eventsIn.WithLabelValues(event.TypeTyping)), 3},
		{"deliveries", testutil.ToFloat64(metrics.deliveries.WithLabelValues(event.TypeTyping)), 3},
		{"unrouted", testutil.ToFloat64(metrics.unrouted.WithLabelValues(event.TypeTyping)), 1},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if n := testutil.CollectAndCount(metrics.latency); n != 1 {
		t.Errorf("latency series = %d, want 1", n)
	}
}

func BenchmarkHandleBatch(b *testing.B) {
	batch := make([]*consumer.Message, 100)
	for i := range batch {
		batch[i] = typing(b, []string{"r1", "r2", "r3"}[i%3], fmt.Sprintf("u-%d", i))
	}
	f, _ := New(Config{Topic: "d"}, discard{}, router)
	for b.Loop() {
		if err := f.HandleBatch(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
}

type discard struct{}

func (discard) Write(context.Context, ...kafka.Message) error { return nil }
