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

	"github.com/kchat/kchat/pkg/consumer"
	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/producer"
	"github.com/kchat/kchat/pkg/route"
	"github.com/kchat/kchat/pkg/service"
	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/services/fanout/internal/forward"
)

// stack is one test's view of the real cluster: its own topics and a producer.
type stack struct {
	t      testing.TB
	env    *stacktest.Env
	topic  func(string) string
	prod   *producer.Producer
	client *kafka.Client
}

func newStack(t testing.TB) *stack {
	t.Helper()
	env := stacktest.Get(t)
	topic := env.Topics(t)
	prod, err := producer.New(producer.Config{Brokers: env.Brokers, Security: env.Security})
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

// ends returns the end offset of every partition of a topic: what was written so far
// lies below it.
func (s *stack) ends(name string) map[int]int64 {
	s.t.Helper()
	var reqs []kafka.OffsetRequest
	for p := range s.partitions(name) {
		reqs = append(reqs, kafka.LastOffsetOf(p))
	}
	res, err := s.client.ListOffsets(context.Background(), &kafka.ListOffsetsRequest{
		Topics: map[string][]kafka.OffsetRequest{s.topic(name): reqs}})
	if err != nil {
		s.t.Fatalf("end offsets of %s: %v", name, err)
	}
	out := map[int]int64{}
	for _, po := range res.Topics[s.topic(name)] {
		if po.Error != nil {
			s.t.Fatalf("end offset of %s/%d: %v", name, po.Partition, po.Error)
		}
		out[po.Partition] = po.LastOffset
	}
	return out
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

// typingMsg builds a typing event on chat.ephemeral, keyed by room as gateways publish it.
// Typing carries no seq, so n is encoded in the user id ("u-<n>"): the watcher reads it back
// as delivery.N, which is how tests check order.
func (s *stack) typingMsg(room string, n int64) kafka.Message {
	s.t.Helper()
	e, err := event.New("kchat/gateway/gw-test", event.Typing{RoomID: room, User: fmt.Sprintf("u-%d", n),
		UserName: fmt.Sprintf("typist %d <&>", n), State: event.TypingStarted})
	if err != nil {
		s.t.Fatal(err)
	}
	m, err := producer.Message(s.topic("chat.ephemeral"), room, e)
	if err != nil {
		s.t.Fatal(err)
	}
	return m
}

// notificationMsg builds a notification.created for user on chat.notifications, keyed by
// user as the outbox relay publishes it. n is the notification's seq (delivery.N).
func (s *stack) notificationMsg(user string, n int64) kafka.Message {
	s.t.Helper()
	e, err := event.New("kchat/notification/relay-test", event.NotificationCreated{NotificationID: fmt.Sprintf("n-%s-%d", user, n),
		User: user, RoomID: "r-elsewhere", Seq: n, Reason: event.ReasonMention, Sender: "u-sender",
		Preview: fmt.Sprintf("@%s %d <&>", user, n), CreatedAt: time.Now()})
	if err != nil {
		s.t.Fatal(err)
	}
	m, err := producer.Message(s.topic("chat.notifications"), user, e)
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
		Brokers: s.env.Brokers, Security: s.env.Security, HTTPAddr: addr, TopicPrefix: strings.TrimSuffix(s.topic("x"), "x"), Group: group,
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
func (f *fanout) stop(t testing.TB) {
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
func (f *fanout) metric(t testing.TB, name string) float64 {
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

func (f *fanout) waitMetric(t testing.TB, name string, want float64) {
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
	Subject   string // the event's room (typing) or user (notification.created)
	N         int64  // the counter typingMsg or notificationMsg encoded; 0 for other events
}

// watcher reads every partition of a topic from the start, as one partition reader each
// (gateways read their own partition the same way, without a group).
type watcher struct {
	t    testing.TB
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
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: s.env.Brokers, Dialer: s.env.ReaderDialer(), Topic: s.topic(name), Partition: p,
			MinBytes: 1, MaxBytes: 10 << 20, MaxWait: consumer.ReaderMaxWait(100 * time.Millisecond)})
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
					d.Subject = e.Subject
					d.N = counter(e)
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

// counter reads back the n that typingMsg or notificationMsg encoded (0 if none).
func counter(e event.Envelope) int64 {
	switch e.Type {
	case event.TypeTyping:
		if ty, err := event.As[event.Typing](e); err == nil {
			if v, ok := strings.CutPrefix(ty.User, "u-"); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				return n
			}
		}
	case event.TypeNotificationCreated:
		if nc, err := event.As[event.NotificationCreated](e); err == nil {
			return nc.Seq
		}
	}
	return 0
}

// ns returns, for one gateway's records of one event type and subject (a room for typing,
// a user for notification.created), the counters in the order delivered.
func ns(recs []delivery, gateway, eventType, subject string) []int64 {
	var out []int64
	for _, d := range recs {
		if d.Gateway == gateway && d.Subject == subject && d.Event.Type == eventType {
			out = append(out, d.N)
		}
	}
	return out
}

// typed reports whether gateway got room's typing event n.
func typed(recs []delivery, gateway, room string, n int64) bool {
	return slices.Contains(ns(recs, gateway, event.TypeTyping, room), n)
}

// notified reports whether gateway got user's notification n.
func notified(recs []delivery, gateway, user string, n int64) bool {
	return slices.Contains(ns(recs, gateway, event.TypeNotificationCreated, user), n)
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

func nRange(from, to int64) []int64 {
	var out []int64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// roomOnPartitionOf returns a room id whose chat.ephemeral partition is the same as room's,
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
