package main_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/services/gateway/internal/gwtest"
)

// TestE2E_one_trace_per_message sends one message on gateway A to a room followed on
// gateway B, with every service exporting spans to a real Jaeger, and reads the trace back
// from Jaeger's query API: one trace, found by the message id from any service, whose
// spans cover every process the message crossed (the send on A, persistence's consume,
// transaction and publish, B's read of chat.stored and its socket write; notification
// and, for the mention of an offline member it causes, the relay's publish, fanout and
// the gateways' deliveries reads), each a child of the hop before it and starting after it.
func TestE2E_one_trace_per_message(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole platform and Jaeger")
	}
	env := stacktest.Get(t)
	jaeger := env.StartJaeger(t)
	db := env.NewDatabase(t)
	prefix := env.Topics(t)("")
	common := []string{"-brokers", strings.Join(env.Brokers, ","), "-topic-prefix", prefix}
	bins := map[string]string{}
	for _, svc := range []string{"persistence", "fanout", "notification", "gateway"} {
		bins[svc] = env.Build(t, "./services/"+svc)
	}
	var ready []string
	addr := func() string {
		a := fmt.Sprintf("127.0.0.1:%d", stacktest.FreePort(t))
		ready = append(ready, "http://"+a+"/readyz")
		return a
	}
	env.Start(t, "persistence", bins["persistence"], jaeger.Env, append(common, "-database-url", db, "-http-addr", addr())...)
	env.Start(t, "fanout", bins["fanout"], jaeger.Env, append(common, "-http-addr", addr(), "-start-offset", "first",
		"-group", stacktest.UniqueName("fanout-"))...)
	env.Start(t, "notification", bins["notification"], jaeger.Env, append(common, "-database-url", db, "-http-addr", addr(),
		"-start-offset", "first", "-group", stacktest.UniqueName("notification-"))...)
	base := map[string]string{}
	for _, id := range []string{"gw-a", "gw-b"} {
		a := addr()
		base[id] = "http://" + a
		env.Start(t, id, bins["gateway"], jaeger.Env, append(common, "-id", id, "-addr", a, "-database-url", db)...)
	}
	for _, u := range ready {
		stacktest.WaitHTTP(t, u, 2*time.Minute)
	}

	ann := gwtest.NewAccount(t, base["gw-a"], "ann")
	bob := gwtest.NewAccount(t, base["gw-b"], "bob")
	carol := gwtest.NewAccount(t, base["gw-b"], "carol") // never connects: offline, so notified
	if st, f := gwtest.Do(t, "POST", base["gw-a"]+"/api/rooms", ann.Token, map[string]string{"id": "traced"}); st != 201 {
		t.Fatalf("create: %d %v", st, f)
	}
	for _, acc := range []gwtest.Account{bob, carol} {
		if st, f := gwtest.Do(t, "POST", base["gw-b"]+"/api/rooms/traced/join", acc.Token, nil); st != 200 {
			t.Fatalf("join %s: %d %v", acc.Name, st, f)
		}
	}
	ca := hello(t, "ws"+strings.TrimPrefix(base["gw-a"], "http")+"/ws", ann, map[string]int64{"traced": 0}, nil)
	cb := hello(t, "ws"+strings.TrimPrefix(base["gw-b"], "http")+"/ws", bob, map[string]int64{"traced": 0}, nil)
	// Live delivery (which the socket-write spans belong to) starts once a room is synced
	// from PostgreSQL; an entry that arrives before is read back from there, untraced.
	for name, c := range map[string]*gwtest.Client{"ann": ca, "bob": cb} {
		if _, ok := c.Next(func(f gwtest.Frame) bool { return f.Type() == "synced" && f.Str("room") == "traced" }, 30*time.Second); !ok {
			t.Fatalf("%s: room not synced", name)
		}
	}
	ca.Send(map[string]any{"type": "send", "room": "traced", "client_msg_id": "t-1", "text": "hello @carol", "ref": "t-1"})
	ack := ca.Expect("ack", "t-1")
	id := ack.Str("message_id")
	if ack.Str("status") != "accepted" || id == "" {
		t.Fatalf("ack: %v", ack)
	}
	got, ok := cb.Next(func(f gwtest.Frame) bool { return f.Type() == "message" && f.Str("message_id") == id }, 30*time.Second)
	if !ok {
		t.Fatal("bob on gw-b did not get the message")
	}
	seq := fmt.Sprint(got.Int("seq"))

	// Each span of the trace this message should have, by its process and name, and the
	// span it must be a child of (by the same key).
	type want struct {
		key, service, instance, op, parent string
		attrs                              bool // carries room, seq and message id
	}
	stored, notifs, deliveries := prefix+"chat.stored", prefix+"chat.notifications", prefix+"chat.deliveries"
	wants := []want{
		{"send", "gateway", "gw-a", "gateway send", "", false},
		{"consume", "persistence", "", "process " + prefix + "chat.submitted", "send", false},
		{"tx", "persistence", "", "persistence store", "consume", true},
		{"publish", "persistence", "", "publish " + stored, "tx", false},
		{"read-b", "gateway", "gw-b", "process " + stored, "tx", true},
		{"write-b", "gateway", "gw-b", "gateway socket write", "read-b", true},
		{"read-a", "gateway", "gw-a", "process " + stored, "tx", true},
		{"write-a", "gateway", "gw-a", "gateway socket write", "read-a", true},
		{"notify", "notification", "", "process " + stored, "tx", true},
		{"relay", "persistence", "", "publish " + notifs, "notify", false},
		{"fanout", "fanout", "", "process " + notifs, "notify", false},
		{"delivery", "gateway", "", "process " + deliveries, "fanout", false},
	}

	// Spans reach Jaeger within the exporters' 100 ms delay plus Jaeger's batch; wait
	// until every expected one is there (or fail listing what is missing).
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var tr stacktest.JaegerTrace
	found := map[string]stacktest.JaegerSpan{}
	for {
		traces, err := jaeger.FindTraces(ctx, "gateway", map[string]string{"kchat.message_id": id})
		if err != nil {
			t.Fatal(err)
		}
		if len(traces) > 1 {
			t.Fatalf("%d traces hold message %s, want one", len(traces), id)
		}
		if len(traces) == 1 {
			tr = traces[0]
			found = map[string]stacktest.JaegerSpan{}
			for _, w := range wants {
				for _, s := range tr.Spans {
					p := tr.Processes[s.ProcessID]
					if s.OperationName == w.op && p.ServiceName == w.service &&
						(w.instance == "" || stacktest.Tag(p.Tags, "service.instance.id") == w.instance) {
						found[w.key] = s
						break
					}
				}
			}
			if len(found) == len(wants) {
				break
			}
		}
		select {
		case <-ctx.Done():
			var missing []string
			for _, w := range wants {
				if _, ok := found[w.key]; !ok {
					missing = append(missing, w.service+" "+w.instance+" "+w.op)
				}
			}
			t.Fatalf("trace of message %s incomplete after 60s; missing %q; have:\n%s", id, missing, describe(tr))
		case <-time.After(200 * time.Millisecond):
		}
	}

	for _, w := range wants {
		s := found[w.key]
		if w.parent == "" {
			if s.Parent() != "" {
				t.Errorf("%s: has parent %s, want the root", w.key, s.Parent())
			}
		} else {
			p := found[w.parent]
			if s.Parent() != p.SpanID {
				t.Errorf("%s (%s): parent %s, want %s (%s)\n%s", w.key, w.op, s.Parent(), w.parent, p.SpanID, describe(tr))
			}
			if s.StartTime < p.StartTime {
				t.Errorf("%s starts %dµs before its parent %s", w.key, p.StartTime-s.StartTime, w.parent)
			}
		}
		if w.attrs {
			for k, v := range map[string]string{"kchat.room": "traced", "kchat.seq": seq, "kchat.message_id": id} {
				if got := stacktest.Tag(s.Tags, k); got != v {
					t.Errorf("%s: %s = %q, want %q", w.key, k, got, v)
				}
			}
		}
	}
	if got := stacktest.Tag(found["send"].Tags, "kchat.room"); got != "traced" {
		t.Errorf("send span: room %q", got)
	}
	// One trace, whichever service it is looked up from.
	for _, svc := range []string{"persistence", "notification"} {
		traces, err := jaeger.FindTraces(ctx, svc, map[string]string{"kchat.message_id": id})
		if err != nil {
			t.Fatal(err)
		}
		if len(traces) != 1 || traces[0].TraceID != tr.TraceID {
			ids := make([]string, len(traces))
			for i, x := range traces {
				ids[i] = x.TraceID
			}
			t.Errorf("%s: traces %v for message %s, want only %s", svc, ids, id, tr.TraceID)
		}
	}
	t.Logf("trace %s: %d spans\n%s", tr.TraceID, len(tr.Spans), describe(tr))
}

// describe lists a trace's spans in start order, for failure messages and the log.
func describe(tr stacktest.JaegerTrace) string {
	spans := append([]stacktest.JaegerSpan(nil), tr.Spans...)
	for i := range spans {
		for j := i + 1; j < len(spans); j++ {
			if spans[j].StartTime < spans[i].StartTime {
				spans[i], spans[j] = spans[j], spans[i]
			}
		}
	}
	var b strings.Builder
	var t0 int64
	if len(spans) > 0 {
		t0 = spans[0].StartTime
	}
	for _, s := range spans {
		p := tr.Processes[s.ProcessID]
		fmt.Fprintf(&b, "  +%6.1fms %-12s %-5s %-40s span %s parent %-16s seq=%s\n", float64(s.StartTime-t0)/1000, p.ServiceName,
			stacktest.Tag(p.Tags, "service.instance.id"), s.OperationName, s.SpanID, s.Parent(), stacktest.Tag(s.Tags, "kchat.seq"))
	}
	return b.String()
}
