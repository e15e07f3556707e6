package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kchat/kchat/pkg/topics"
	"github.com/kchat/kchat/services/chatbench/internal/harness"
	"github.com/kchat/kchat/services/chatbench/internal/report"
	"github.com/kchat/kchat/services/chatbench/internal/wsclient"
)

// msgFrame is the part of a message frame the e2e scenario reads.
type msgFrame struct {
	Type        string    `json:"type"`
	Room        string    `json:"room"`
	Seq         int64     `json:"seq"`
	MessageID   string    `json:"message_id"`
	ClientMsgID string    `json:"client_msg_id"`
	SentAt      time.Time `json:"sent_at"`
	StoredAt    time.Time `json:"stored_at"`
}

// trace is what is known about one message's way through the platform.
type trace struct {
	intended, sentAt, storedAt, received time.Time
	storedTs, deliveredTs                time.Time // Kafka record timestamps (ms)
}

// e2eState is one fixed-rate e2e step.
type e2eState struct {
	ack      *ackState
	rec      *harness.Recorder
	received atomic.Int64
	mu       sync.Mutex
	traces   map[string]*trace // by message id
}

// Stage names, in the order a message passes them.
var stageNames = []string{"client→gateway accept", "gateway→ack (Kafka acks=all)", "Kafka→persistence tx",
	"commit→relay publish", "relay→fanout publish", "fanout→socket B"}

// scenarioE2E: WebSocket send on gateway A → WebSocket receive on gateway B through
// persistence, the outbox relay and fanout, at fixed rates, against the raw hop at the
// same rates; per-stage times from the events' own timestamps and Kafka record times.
func (b *Bench) scenarioE2E(ctx context.Context, sc *report.Scenario) error {
	S, R := b.plan.Senders, b.plan.Rooms
	senders, err := b.users(ctx, "bench-u", S)
	if err != nil {
		return err
	}
	receivers, err := b.users(ctx, "bench-r", R)
	if err != nil {
		return err
	}
	mkRooms := func(tag string) (func(int) string, error) {
		room := func(k int) string { return fmt.Sprintf("bench-%s-%s-%02d", b.run, tag, k) }
		members := map[string][]string{}
		for j, u := range senders {
			members[room(j%R)] = append(members[room(j%R)], u.id)
		}
		for k, u := range receivers {
			members[room(k)] = append(members[room(k)], u.id)
		}
		return room, b.rooms(ctx, members)
	}
	a, bb := wsURL(b.cfg.Gateways[0]), wsURL(b.cfg.Gateways[1])
	sp, err := dial(ctx, []string{a}, senders, 50)
	if err != nil {
		return err
	}
	defer sp.close()
	sp.startWriters(4096)
	var cur atomic.Pointer[e2eState]
	sp.setHandler(func(_ int, data []byte, at time.Time) {
		if st := cur.Load(); st != nil {
			st.ack.onFrame(data, at)
		}
	})
	text := strings.Repeat("x", b.plan.TextBytes)
	stepID := 100
	e2eStart := time.Now()

	// series runs the rates with receivers on recvURL, in rooms tagged tag.
	series := func(name, tag, recvURL string, rates []float64) (report.Series, map[float64]*e2eState, string, error) {
		room, err := mkRooms(tag)
		if err != nil {
			return report.Series{}, nil, "", err
		}
		rp, err := dial(ctx, []string{recvURL}, receivers, 50)
		if err != nil {
			return report.Series{}, nil, "", err
		}
		defer rp.close()
		rp.startWriters(16)
		gwID := rp.conns[0].Welcome.GatewayID
		var synced atomic.Int64
		ready := make([]atomic.Bool, R)
		warm := make([]atomic.Bool, R)
		rp.setHandler(func(k int, data []byte, at time.Time) {
			typ, _ := wsclient.StringField(data, "type")
			switch string(typ) {
			case "synced", "subscribed":
				// Either means the room is followed (see fanRun); the warm-up proves delivery.
				if !ready[k].Swap(true) {
					synced.Add(1)
				}
			case "message":
				st := cur.Load()
				cid, err := wsclient.StringField(data, "client_msg_id")
				if err != nil {
					return
				}
				parts := strings.Split(string(cid), ".")
				if len(parts) != 3 {
					return
				}
				if parts[1] == "w" {
					warm[k].Store(true)
					return
				}
				sid, _ := strconv.Atoi(parts[1])
				i, err := strconv.Atoi(parts[2])
				if st == nil || sid != st.ack.id || err != nil || i < 0 || i >= st.ack.sched.Count {
					return
				}
				var f msgFrame
				if json.Unmarshal(data, &f) != nil {
					return
				}
				intended := st.ack.sched.Intended(i)
				st.rec.Record(intended, at)
				st.received.Add(1)
				st.mu.Lock()
				st.traces[f.MessageID] = &trace{intended: intended, sentAt: f.SentAt, storedAt: f.StoredAt, received: at}
				st.mu.Unlock()
			}
		})
		for k := range receivers {
			rp.send(k, fmt.Appendf(nil, `{"type":"subscribe","ref":"s","room":"%s"}`, room(k)))
		}
		if !waitFor(ctx, 30*time.Second, func() bool { return synced.Load() >= int64(R) }) {
			return report.Series{}, nil, "", fmt.Errorf("%s: %d of %d receivers synced", name, synced.Load(), R)
		}
		// Warm-up until every room's receiver got a message through the whole pipeline
		// (fanout must have learnt the new subscriptions first).
		deadline := time.Now().Add(60 * time.Second)
		for n := 0; ; n++ {
			done := true
			for k := range R {
				if !warm[k].Load() {
					done = false
					sp.send(k, fmt.Appendf(nil, `{"type":"send","ref":"w","room":"%s","client_msg_id":"%s.w.%d-%d","text":"warm-up"}`, room(k), b.run, k, n))
				}
			}
			if done {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return report.Series{}, nil, "", fmt.Errorf("%s: warm-up messages did not reach every receiver within 60s", name)
			}
			waitFor(ctx, 3*time.Second, func() bool {
				for k := range R {
					if !warm[k].Load() {
						return false
					}
				}
				return true
			})
		}
		out := report.Series{Name: name}
		states := map[float64]*e2eState{}
		var acked int64
		for _, rate := range rates {
			stepID++
			count := int(rate * b.plan.E2EDur.Seconds())
			sched := harness.NewSchedule(time.Now().Add(20*time.Millisecond), rate, count)
			st := &e2eState{ack: newAckState(stepID, sched), rec: harness.NewRecorder(), traces: make(map[string]*trace, count)}
			cur.Store(st)
			sched.Run(ctx, func(i int, _ time.Time) {
				c := i % S
				sp.send(c, sendFrame(st.ack.id, i, room(c%R), fmt.Sprintf("%s.%d.%d", b.run, st.ack.id, i), text))
			})
			waitFor(ctx, 20*time.Second, func() bool { return st.received.Load() >= int64(count) })
			step := harness.Step{Rate: rate, Throughput: harness.Round(st.rec.Throughput()), Latency: st.rec.Summary(),
				Lost: int64(count) - st.received.Load()}
			step.Latency.Errors = st.ack.failed.Load()
			logStep(b.log, name, step)
			out.Steps = append(out.Steps, step)
			states[rate] = st
			// Let the platform work off what this rate left behind before the next one, so
			// that each rate is measured on its own.
			acked += st.ack.acked.Load()
			if d, ok := b.drain(ctx, fmt.Sprintf("bench-%s-%s-", b.run, tag), acked+int64(R)); !ok {
				sc.Warnings = append(sc.Warnings, fmt.Sprintf("%s @ %v/s: the platform had not stored everything %s later", name, rate, d.Round(time.Second)))
			}
			sleepCtx(ctx, time.Second)
		}
		cur.Store(nil)
		return out, states, gwID, nil
	}

	// Scale-out first, on a platform without backlog: the same at one rate with sender
	// and receivers on gateway A only.
	one, _, _, oneErr := series("e2e A→A (one gateway)", "e1", a, []float64{b.plan.ScaleE2ERate})
	if oneErr != nil {
		sc.Warnings = append(sc.Warnings, "one-gateway run: "+oneErr.Error())
	}
	two, states, gwB, err := series("e2e A→B", "e2e", bb, b.plan.E2ERates)
	if err != nil {
		return err
	}
	sc.Series = append(sc.Series, two)
	for _, st := range two.Steps {
		b.e2eByRate[st.Rate] = st.Latency
		var base *float64
		baseName := "raw hop p99"
		if h, ok := b.hop[st.Rate]; ok && h.Count > 0 {
			base = harness.F(h.P99Ms)
			baseName = strings.TrimPrefix(b.hopName[st.Rate], "raw ") + " p99"
		}
		fig := harness.NewFigure("e2e", fmt.Sprintf("p99 A→B @ %.0f/s", st.Rate), "ms", st.Latency.P99Ms, baseName, base,
			harness.Target{Kind: harness.RatioAtMost, Limit: 3}, harness.Target{Kind: harness.ValueBelow, Limit: 50})
		fig.Note = fmt.Sprintf("p50 %.1f ms, p99.9 %.1f ms, lost %d", st.Latency.P50Ms, st.Latency.P999Ms, st.Lost)
		if st.Lost > 0 {
			f := false
			fig.Met = &f
		}
		if st.Latency.Count == 0 {
			fig.NoData("no message arrived within the wait")
		}
		b.add(fig)
	}

	// Stage times: join the frames' timestamps with the Kafka record times of the same
	// message in chat.stored and in gateway B's chat.deliveries copies.
	if err := b.kafkaTimes(ctx, e2eStart, states, gwB); err != nil {
		sc.Warnings = append(sc.Warnings, "stage times from Kafka: "+err.Error())
	}
	stages := map[string]any{}
	for _, rate := range b.plan.E2ERates {
		st := states[rate]
		if st == nil {
			continue
		}
		recs := make([]*harness.Recorder, len(stageNames))
		for i := range recs {
			recs[i] = harness.NewRecorder()
		}
		st.mu.Lock()
		acks := st.ack
		for _, t := range st.traces {
			if t.sentAt.IsZero() {
				continue
			}
			recs[0].Record(t.intended, t.sentAt)
			recs[2].Record(t.sentAt, t.storedAt)
			if !t.storedTs.IsZero() {
				recs[3].Record(t.storedAt, t.storedTs)
			}
			if !t.storedTs.IsZero() && !t.deliveredTs.IsZero() {
				recs[4].Record(t.storedTs, t.deliveredTs)
			}
			if !t.deliveredTs.IsZero() {
				recs[5].Record(t.deliveredTs, t.received)
			}
		}
		st.mu.Unlock()
		recs[1] = acks.rec // intended → ack; includes stage 0
		m := map[string]any{}
		for i, name := range stageNames {
			s := recs[i].Summary()
			m[name] = map[string]float64{"p50_ms": s.P50Ms, "p99_ms": s.P99Ms, "count": float64(s.Count)}
			if rate == b.plan.ScaleE2ERate || len(b.plan.E2ERates) == 1 {
				f := harness.NewFigure("e2e stages", fmt.Sprintf("%s p99 @ %.0f/s", name, rate), "ms", s.P99Ms, "", nil)
				f.Note = fmt.Sprintf("p50 %.2f ms, n=%d", s.P50Ms, s.Count)
				if i == 1 {
					f.Note += " (measured from the intended send time, so it includes the first stage)"
				}
				b.add(f)
			}
		}
		stages[fmt.Sprint(rate)] = m
	}
	sc.Data["stages"] = stages
	sc.Data["stage_notes"] = "client→gateway accept: intended send → submitted_at (gateway read, membership check, event minted); " +
		"Kafka→persistence tx: submitted_at → stored_at (stored_at is set inside the batch tx, before its writes and commit); " +
		"commit→relay publish: stored_at → chat.stored record timestamp (commit, NOTIFY, outbox read); " +
		"relay→fanout publish: chat.stored → chat.deliveries record timestamps (relay ack, fanout consume); " +
		"fanout→socket B: chat.deliveries record timestamp → frame read by the client (fanout ack, gateway consume, hub, socket). " +
		"Kafka record timestamps have millisecond resolution."

	sc.Series = append(sc.Series, one)
	if len(one.Steps) == 1 {
		twoP99 := b.e2eByRate[b.plan.ScaleE2ERate].P99Ms
		f := harness.NewFigure("scale-out", fmt.Sprintf("e2e p99 @ %.0f/s, A→B vs A→A", b.plan.ScaleE2ERate), "ms", twoP99,
			"one gateway", harness.F(one.Steps[0].Latency.P99Ms))
		b.add(f)
	}
	sc.Config = map[string]any{"senders_on_A": S, "rooms": R, "receivers_on_B": R, "seconds_per_rate": b.plan.E2EDur.Seconds(),
		"latency": "intended send time on A → message frame read on B"}
	return nil
}

// kafkaTimes reads chat.stored and chat.deliveries from just before the e2e runs and
// fills in the record timestamps of the traced messages.
func (b *Bench) kafkaTimes(ctx context.Context, since time.Time, states map[float64]*e2eState, gw string) error {
	byID := map[string]*trace{}
	for _, st := range states {
		st.mu.Lock()
		for id, t := range st.traces {
			byID[id] = t
		}
		st.mu.Unlock()
	}
	if len(byID) == 0 {
		return nil
	}
	stored, deliveries := b.cfg.TopicPrefix+topics.Stored, b.cfg.TopicPrefix+topics.Deliveries
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.cfg.Brokers...), kgo.ConsumeTopics(stored, deliveries),
		kgo.ConsumeResetOffset(kgo.NewOffset().AfterMilli(since.Add(-time.Second).UnixMilli())), kgo.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		return err
	}
	defer cl.Close()
	need := 2 * len(byID)
	found := 0
	deadline := time.Now().Add(60 * time.Second)
	idle := 0
	for found < need && time.Now().Before(deadline) && idle < 4 && ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			n++
			id, err := wsclient.StringField(r.Value, "message_id")
			if err != nil {
				return
			}
			t := byID[string(id)]
			if t == nil {
				return
			}
			switch r.Topic {
			case stored:
				if t.storedTs.IsZero() {
					t.storedTs = r.Timestamp
					found++
				}
			case deliveries:
				if string(r.Key) == gw && t.deliveredTs.IsZero() {
					t.deliveredTs = r.Timestamp
					found++
				}
			}
		})
		if n == 0 {
			idle++
		} else {
			idle = 0
		}
	}
	if found < need {
		return fmt.Errorf("found Kafka times for %d of %d records", found, need)
	}
	return nil
}
