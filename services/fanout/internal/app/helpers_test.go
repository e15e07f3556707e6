package app

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/producer"
	"github.com/kchat/kchat/pkg/route"
	"github.com/kchat/kchat/pkg/service"
	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/services/fanout/internal/forward"
)

// stack is one test's view of the real cluster: its own topics and a producer.
type stack struct {
	t      *testing.T
	env    *stacktest.Env
	topic  func(string) string
	prod   *producer.Producer
	client *kafka.Client
}

func newStack(t *testing.T) *stack {
	t.Helper()
	env := stacktest.Get(t)
	topic := env.Topics(t)
	prod, err := producer.New(producer.Config{Brokers: env.Brokers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = prod.Close() })
	return &stack{t: t, env: env, topic: topic, prod: prod, client: env.Client()}
}

func (s *stack) partitions(name string) int {
	s.t.Helper()
	md, err := s.client.Metadata(context.Background(), &kafka.MetadataRequest{Topics: []string{s.topic(name)}})
	if err != nil || len(md.Topics) != 1 {
		s.t.Fatalf("metadata of %s: %v", name, err)
	}
	return len(md.Topics[0].Partitions)
}

func (s *stack) write(msgs ...kafka.Message) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.prod.Write(ctx, msgs...); err != nil {
		s.t.Fatal(err)
	}
}

// subscribe publishes subscription.changed as a gateway does.
func (s *stack) subscribe(gw, room string, subscribed bool) {
	s.t.Helper()
	e, err := event.New("kchat/gateway/"+gw, event.SubscriptionChanged{GatewayID: gw, RoomID: room, Subscribed: subscribed, At: time.Now()})
	if err != nil {
		s.t.Fatal(err)
	}
	m, err := producer.Message(s.topic("chat.subscriptions"), route.SubscriptionKey(gw, room), e)
	if err != nil {
		s.t.Fatal(err)
	}
	s.write(m)
}

// storedMsg builds a message.stored record as the outbox relay publishes it.
func (s *stack) storedMsg(room string, seq int64) kafka.Message {
	s.t.Helper()
	e, err := event.New("kchat/persistence/relay-test", event.MessageStored{RoomID: room, Seq: seq, Kind: event.KindMessage,
		MessageID: fmt.Sprintf("m-%s-%d", room, seq), Sender: "u-1", SenderName: "U", Text: fmt.Sprintf("msg %d <&>", seq),
		RoomKind: event.RoomKindRoom, SentAt: time.Now(), StoredAt: time.Now()})
	if err != nil {
		s.t.Fatal(err)
	}
	m, err := producer.Message(s.topic("chat.stored"), room, e)
	if err != nil {
		s.t.Fatal(err)
	}
	return m
}

// fanout is an in-process fanout instance.
type fanout struct {
	addr     string
	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
}

func (s *stack) startFanout(group string) *fanout { return s.startFanoutWith(group, nil) }

// startFanoutWith is startFanout with tweak applied to the Config first.
func (s *stack) startFanoutWith(group string, tweak func(*Config)) *fanout {
	s.t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", stacktest.FreePort(s.t))
	ctx, cancel := context.WithCancel(context.Background())
	f := &fanout{addr: addr, cancel: cancel, done: make(chan error, 1)}
	cfg := Config{
		Brokers: s.env.Brokers, HTTPAddr: addr, TopicPrefix: strings.TrimSuffix(s.topic("x"), "x"), Group: group,
		StartOffset: kafka.FirstOffset, Logger: service.NewLogger("fanout-test", "warn"),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	go func() { f.done <- Run(ctx, cfg) }()
	s.t.Cleanup(func() { f.stop(s.t) })
	stacktest.WaitHTTP(s.t, "http://"+addr+"/readyz", 60*time.Second)
	return f
}

// stop shuts down like SIGTERM does and waits for Run to return; later calls do nothing.
func (f *fanout) stop(t *testing.T) {
	t.Helper()
	f.stopOnce.Do(func() {
		f.cancel()
		select {
		case err := <-f.done:
			if err != nil {
				t.Errorf("fanout.Run: %v", err)
			}
		case <-time.After(45 * time.Second):
			t.Error("fanout did not stop within 45s")
		}
	})
}

// metric reads one unlabelled gauge or counter from /metrics.
func (f *fanout) metric(t *testing.T, name string) float64 {
	t.Helper()
	res, err := http.Get("http://" + f.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

func (f *fanout) waitMetric(t *testing.T, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := f.metric(t, name)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want %v", name, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// delivery is one record read from chat.deliveries.
type delivery struct {
	Partition int
	Offset    int64
	Gateway   string // the record key
	Header    string // kchat_gateway
	Value     []byte
	Headers   []kafka.Header
	Event     event.Envelope
	Room      string
	Seq       int64 // message.stored only
}

// watcher reads every partition of a topic from the start, as one partition reader each
// (gateways read their own partition the same way, without a group).
type watcher struct {
	t    *testing.T
	mu   sync.Mutex
	recs []delivery
	wake chan struct{}
}

func (s *stack) watch(name string) *watcher {
	s.t.Helper()
	w := &watcher{t: s.t, wake: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	s.t.Cleanup(func() { cancel(); wg.Wait() })
	for p := range s.partitions(name) {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: s.env.Brokers, Topic: s.topic(name), Partition: p,
			MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 100 * time.Millisecond})
		if err := r.SetOffset(kafka.FirstOffset); err != nil {
			s.t.Fatal(err)
		}
		wg.Go(func() {
			defer r.Close()
			for {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					if ctx.Err() == nil {
						s.t.Errorf("reading %s/%d: %v", name, p, err)
					}
					return
				}
				d := delivery{Partition: m.Partition, Offset: m.Offset, Gateway: string(m.Key), Value: m.Value, Headers: m.Headers}
				for _, h := range m.Headers {
					if h.Key == forward.HeaderGateway {
						d.Header = string(h.Value)
					}
				}
				if e, err := event.Decode(m.Value); err == nil {
					d.Event = e
					d.Room = e.Subject
					if ms, err := event.As[event.MessageStored](e); err == nil {
						d.Seq = ms.Seq
					}
				}
				w.mu.Lock()
				w.recs = append(w.recs, d)
				w.mu.Unlock()
				select {
				case w.wake <- struct{}{}:
				default:
				}
			}
		})
	}
	return w
}

func (w *watcher) all() []delivery {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.recs)
}

// waitUntil waits until cond holds for what was read so far.
func (w *watcher) waitUntil(what string, timeout time.Duration, cond func([]delivery) bool) []delivery {
	w.t.Helper()
	deadline := time.After(timeout)
	for {
		recs := w.all()
		if cond(recs) {
			return recs
		}
		select {
		case <-w.wake:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			w.t.Fatalf("timed out after %s waiting for %s; have %d records", timeout, what, len(recs))
		}
	}
}

// seqs returns, for one gateway's records of room, the seqs in the order delivered.
func seqs(recs []delivery, gateway, room string) []int64 {
	var out []int64
	for _, d := range recs {
		if d.Gateway == gateway && d.Room == room && d.Event.Type == event.TypeMessageStored {
			out = append(out, d.Seq)
		}
	}
	return out
}

func has(recs []delivery, gateway, room string, seq int64) bool {
	return slices.Contains(seqs(recs, gateway, room), seq)
}

// inOrder reports whether s is non-decreasing: redelivery may repeat, never reorder.
func inOrder(s []int64) bool {
	return slices.IsSorted(s)
}

// dedupe drops repeats (at-least-once delivery), keeping the first occurrence.
func dedupe(s []int64) []int64 {
	var out []int64
	for _, v := range s {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func seqRange(from, to int64) []int64 {
	var out []int64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// roomOnPartitionOf returns a room id whose chat.stored partition is the same as room's,
// so that once it is delivered everything published before it for room was handled.
func roomOnPartitionOf(room string, partitions int) string {
	want := route.PartitionFor(room, partitions)
	for i := 0; ; i++ {
		r := fmt.Sprintf("sentinel-%d", i)
		if route.PartitionFor(r, partitions) == want {
			return r
		}
	}
}
