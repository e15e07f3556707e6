package presence_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/consumer"
	"github.com/kchat/kchat/pkg/presence"
	"github.com/kchat/kchat/pkg/producer"
	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/pkg/topics"
)

type cluster struct {
	env   *stacktest.Env
	topic string
	prod  *producer.Producer
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	env := stacktest.Get(t)
	names := env.Topics(t)
	p, err := producer.New(producer.Config{Brokers: env.Brokers, Security: env.Security})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return &cluster{env: env, topic: names(topics.Presence), prod: p}
}

// run starts fn in the background; the returned stop cancels it and waits for it.
func run(t *testing.T, fn func(context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- fn(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("run: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

func (c *cluster) announcer(t *testing.T, gw string, interval time.Duration) (*presence.Announcer, func()) {
	t.Helper()
	a, err := presence.NewAnnouncer(c.prod, presence.AnnouncerConfig{GatewayID: gw, Addr: "127.0.0.1:1",
		Topic: c.topic, Interval: interval})
	if err != nil {
		t.Fatal(err)
	}
	return a, run(t, a.Run)
}

func (c *cluster) view(t *testing.T, expiry time.Duration) *presence.View {
	t.Helper()
	v, err := presence.NewView(presence.ViewConfig{Brokers: c.env.Brokers, Security: c.env.Security, Topic: c.topic, Expiry: expiry,
		MaxWait: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	run(t, v.Run)
	select {
	case <-v.CaughtUp():
	case <-time.After(30 * time.Second):
		t.Fatal("view not caught up within 30s")
	}
	return v
}

func flush(t *testing.T, as ...*presence.Announcer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, a := range as {
		if err := a.Flush(ctx); err != nil {
			t.Fatalf("flush: %v", err)
		}
	}
}

// eventually fails the test unless cond holds within timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestView_follows_announcers(t *testing.T) {
	c := newCluster(t)
	view := c.view(t, 30*time.Second) // empty topic: caught up at once
	a, _ := c.announcer(t, "gw-a", 300*time.Millisecond)
	b, stopB := c.announcer(t, "gw-b", 300*time.Millisecond)

	// Two tabs on two gateways.
	a.Set("ann", "Ann", 1)
	b.Set("ann", "Ann", 2)
	flush(t, a, b)
	eventually(t, 10*time.Second, "ann has 3 connections", func() bool { return view.Connections("ann") == 3 })

	a.Set("ann", "Ann", 0)
	flush(t, a)
	eventually(t, 10*time.Second, "ann's tab on gw-a closed", func() bool { return view.Connections("ann") == 2 })
	if !view.Online("ann") {
		t.Fatal("ann went offline although still connected to gw-b")
	}
	b.Set("ann", "Ann", 0)
	flush(t, b)
	eventually(t, 10*time.Second, "ann offline once both tabs closed", func() bool { return !view.Online("ann") })

	// A graceful shutdown withdraws a gateway's users at once, not after the 30s expiry.
	b.Set("dan", "Dan", 1)
	a.Set("eve", "Eve", 1)
	flush(t, a, b)
	eventually(t, 10*time.Second, "dan and eve online", func() bool {
		u := view.OnlineUsers()
		return len(u) == 2 && u[0] == "dan" && u[1] == "eve"
	})
	shutdown := time.Now()
	stopB()
	eventually(t, 10*time.Second, "dan offline after gw-b shut down", func() bool { return !view.Online("dan") })
	if d := time.Since(shutdown); d > 15*time.Second {
		t.Errorf("shutdown took %s to be seen; it should not wait for the expiry", d)
	}
	if !view.Online("eve") {
		t.Error("eve on gw-a must stay online")
	}

	// A gateway that stops heartbeating (a crash: here its next heartbeat is an hour away)
	// expires. A second view started now also checks the rebuild from the compacted topic.
	cc, _ := c.announcer(t, "gw-c", time.Hour)
	cc.Set("cat", "Cat", 1)
	flush(t, cc)
	eventually(t, 10*time.Second, "cat online", func() bool { return view.Online("cat") })
	short := c.view(t, 1500*time.Millisecond)
	if !short.Online("eve") {
		t.Error("a view started later must rebuild eve's presence from the topic")
	}
	if short.Online("dan") || short.Online("ann") {
		t.Error("a view started later must rebuild dan's and ann's absence from the topic")
	}
	eventually(t, 10*time.Second, "cat expires in the 1.5s view", func() bool { return !short.Online("cat") })
	if !view.Online("cat") {
		t.Error("cat must still be online in the 30s view")
	}
	if !short.Online("eve") {
		t.Error("eve's gateway keeps heartbeating and must not expire")
	}

	checkKeys(t, c, map[string]bool{"ann@gw-a": false, "ann@gw-b": false, "gw/gw-a": false, "gw/gw-b": false})
}

// checkKeys reads the topic from the start and fails unless every key in want occurs;
// the documented key format is what compaction relies on.
func checkKeys(t *testing.T, c *cluster, want map[string]bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for p := range 3 {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: c.env.Brokers, Dialer: c.env.ReaderDialer(), Topic: c.topic, Partition: p,
			MaxWait: consumer.ReaderMaxWait(100 * time.Millisecond)})
		end, err := r.ReadLag(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for range end {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := want[string(m.Key)]; ok {
				want[string(m.Key)] = true
			}
			if _, _, ok := presence.ParseKey(string(m.Key)); !ok {
				t.Errorf("unparseable key %q on the presence topic", m.Key)
			}
		}
		r.Close()
	}
	for k, seen := range want {
		if !seen {
			t.Errorf("no record keyed %q on the presence topic", k)
		}
	}
}

func TestView_Check_until_caught_up(t *testing.T) {
	v, err := presence.NewView(presence.ViewConfig{Brokers: []string{"127.0.0.1:1"}, Topic: "none"})
	if err != nil {
		t.Fatal(err)
	}
	if v.Ready() || !errors.Is(v.Check(context.Background()), presence.ErrNotCaughtUp) {
		t.Error("a view that never ran must not be ready")
	}
	if _, err := presence.NewView(presence.ViewConfig{Topic: "x"}); err == nil {
		t.Error("a view without brokers must be refused")
	}
}

func TestNewAnnouncer_validates(t *testing.T) {
	p := &producer.Producer{}
	cases := []struct {
		name string
		cfg  presence.AnnouncerConfig
	}{
		{"no gateway", presence.AnnouncerConfig{Addr: "a", Topic: "t"}},
		{"no addr", presence.AnnouncerConfig{GatewayID: "g", Topic: "t"}},
		{"no topic", presence.AnnouncerConfig{GatewayID: "g", Addr: "a"}},
		{"@ in gateway id", presence.AnnouncerConfig{GatewayID: "g@1", Addr: "a", Topic: "t"}},
	}
	for _, tc := range cases {
		if _, err := presence.NewAnnouncer(p, tc.cfg); err == nil {
			t.Errorf("%s: want an error", tc.name)
		}
	}
}
