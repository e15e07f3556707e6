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

	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/pkg/topics"
	"github.com/kchat/kchat/tools/chatbench/internal/harness"
	"github.com/kchat/kchat/tools/chatbench/internal/report"
	"github.com/kchat/kchat/tools/chatbench/internal/wsclient"
)

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

// Stage names, in the order a message passes them. A stage the pipeline does not have
// (no chat.deliveries records when the gateways read chat.stored themselves) measures
// nothing and is not reported.
var stageNames = []string{"client→gateway accept", "gateway→ack (Kafka acks=all)", "Kafka→persistence tx",
	"commit→chat.stored record", "chat.stored→chat.deliveries record", "chat.deliveries record→socket B",
	"chat.stored record→socket B (no chat.deliveries)"}

// scenarioE2E: WebSocket send on gateway A → WebSocket receive on gateway B through
// persistence, the outbox relay and fanout, at fixed rates, against the raw hop at the
// same rates; per-stage times from the events' own timestamps and Kafka record times.
func (b *Bench) scenarioE2E(ctx context.Context, sc *report.Scenario) error {
	a, bb := wsURL(b.cfg.Gateways[0]), wsURL(b.cfg.Gateways[1])
	w, err := b.newWSPath(ctx, a, b.plan.Senders, b.plan.Rooms)
	if err != nil {
		return err
	}
	defer w.close()
	S, R := b.plan.Senders, b.plan.Rooms
	e2eStart := time.Now()
	series := func(name, tag, recvURL string, rates []float64) (report.Series, map[float64]*e2eState, string, error) {
		return b.e2eSeries(ctx, sc, w, name, tag, recvURL, rates, b.plan.LeadIn, b.plan.E2EDur, nil)
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
			switch {
			case !t.deliveredTs.IsZero():
				if !t.storedTs.IsZero() {
					recs[4].Record(t.storedTs, t.deliveredTs)
				}
				recs[5].Record(t.deliveredTs, t.received)
			case !t.storedTs.IsZero():
				recs[6].Record(t.storedTs, t.received)
			}
		}
		st.mu.Unlock()
		recs[1] = acks.rec // intended → ack; includes stage 0
		m := map[string]any{}
		for i, name := range stageNames {
			s := recs[i].Summary()
			if s.Count == 0 {
				continue
			}
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
		"commit→chat.stored record: stored_at → chat.stored record timestamp (commit, then the publish of the stored event); " +
		"chat.stored→chat.deliveries record: the two record timestamps (ack, fanout consume and publish); " +
		"chat.deliveries record→socket B: gateway B's chat.deliveries record timestamp → frame read by the client (ack, gateway consume, hub, socket); " +
		"chat.stored record→socket B: only for messages with no chat.deliveries record for gateway B (a gateway reading chat.stored itself). " +
		"Stages with no measurement are left out. Kafka record timestamps have millisecond resolution."

	sc.Series = append(sc.Series, one)
	if len(one.Steps) == 1 {
		twoP99 := b.e2eByRate[b.plan.ScaleE2ERate].P99Ms
		f := harness.NewFigure("scale-out", fmt.Sprintf("e2e p99 @ %.0f/s, A→B vs A→A", b.plan.ScaleE2ERate), "ms", twoP99,
			"one gateway", harness.F(one.Steps[0].Latency.P99Ms))
		b.add(f)
	}
	sc.Config = map[string]any{"senders_on_A": S, "rooms": R, "receivers_on_B": R, "seconds_per_rate": b.plan.E2EDur.Seconds(),
		"lead_in_seconds": b.plan.LeadIn.Seconds(), "latency": "intended send time on A → message frame read on B"}
	return nil
}

// kafkaTimes reads chat.stored and chat.deliveries from just before the e2e runs and
// fills in the record timestamps of the traced messages. Every message has a chat.stored
// record; a chat.deliveries record for gateway gw exists only while fanout forwards
// messages to the gateways, so once every stored record is found, the deliveries get a
// few more seconds and are otherwise taken as absent.
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
	opts, err := b.franzSecured(kgo.SeedBrokers(b.cfg.Brokers...), kgo.ConsumeTopics(stored, deliveries),
		kgo.ConsumeResetOffset(kgo.NewOffset().AfterMilli(since.Add(-time.Second).UnixMilli())), kgo.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	n := len(byID)
	foundStored, foundDelivered := 0, 0
	deadline := time.Now().Add(60 * time.Second)
	var storedDone time.Time
	idle := 0
	for time.Now().Before(deadline) && idle < 4 && ctx.Err() == nil {
		if foundStored == n && (foundDelivered == n || time.Since(storedDone) > 5*time.Second) {
			break
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		got := 0
		fs.EachRecord(func(r *kgo.Record) {
			got++
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
					if foundStored++; foundStored == n {
						storedDone = time.Now()
					}
				}
			case deliveries:
				if string(r.Key) == gw && t.deliveredTs.IsZero() {
					t.deliveredTs = r.Timestamp
					foundDelivered++
				}
			}
		})
		if got == 0 {
			idle++
		} else {
			idle = 0
		}
	}
	if foundStored < n {
		return fmt.Errorf("found chat.stored times for %d of %d messages (chat.deliveries: %d)", foundStored, n, foundDelivered)
	}
	if foundDelivered > 0 && foundDelivered < n {
		return fmt.Errorf("found chat.deliveries times for %d of %d messages", foundDelivered, n)
	}
	return nil
}

// wsPath is the sending side of a WebSocket path through the platform: sender
// connections on gateway A, and the receivers (one per room) that series put on a gateway.
type wsPath struct {
	senders, receivers []user
	sp                 *pool
	cur                atomic.Pointer[e2eState]
	text               string
	stepID             int
}

// newWSPath connects S senders to sendURL; every series adds R rooms and R receivers.
func (b *Bench) newWSPath(ctx context.Context, sendURL string, S, R int) (*wsPath, error) {
	senders, err := b.users(ctx, "bench-u", S)
	if err != nil {
		return nil, err
	}
	receivers, err := b.users(ctx, "bench-r", R)
	if err != nil {
		return nil, err
	}
	sp, err := dial(ctx, []string{sendURL}, senders, 50)
	if err != nil {
		return nil, err
	}
	sp.startWriters(4096)
	w := &wsPath{senders: senders, receivers: receivers, sp: sp, text: strings.Repeat("x", b.plan.TextBytes), stepID: 100}
	sp.setHandler(func(_ int, data []byte, at time.Time) {
		if st := w.cur.Load(); st != nil {
			st.ack.onFrame(data, at)
		}
	})
	return w, nil
}

func (w *wsPath) close() { w.sp.close() }

// pathRooms creates the rooms of a series tagged tag: sender j in room j%R, receiver k in
// room k.
func (b *Bench) pathRooms(ctx context.Context, w *wsPath, tag string) (func(int) string, error) {
	R := len(w.receivers)
	room := func(k int) string { return fmt.Sprintf("bench-%s-%s-%02d", b.run, tag, k) }
	members := map[string][]string{}
	for j, u := range w.senders {
		members[room(j%R)] = append(members[room(j%R)], u.id)
	}
	for k, u := range w.receivers {
		members[room(k)] = append(members[room(k)], u.id)
	}
	return room, b.rooms(ctx, members)
}

// e2eSeries runs the rates for leadIn+dur each with w's senders and receivers on recvURL,
// in rooms tagged tag, after a warm-up that proves delivery in every room; latencies and
// stage times leave out the messages due in the lead-in (see harness.Recorder.MeasureFrom),
// losses count every message. Between rates it lets
// the platform store what the rate left behind. measure, if set, is called just before a
// rate's first send and its result once the last message arrived (or the wait ended). It
// returns the series, the steps' states by rate and the receiving gateway's id.
func (b *Bench) e2eSeries(ctx context.Context, sc *report.Scenario, w *wsPath, name, tag, recvURL string, rates []float64,
	leadIn, dur time.Duration, measure func() func()) (report.Series, map[float64]*e2eState, string, error) {
	sp, cur, S, R, text := w.sp, &w.cur, len(w.senders), len(w.receivers), w.text
	receivers := w.receivers
	room, err := b.pathRooms(ctx, w, tag)
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
		case protocol.TypeSynced, protocol.TypeSubscribed:
			// Either means the room is followed (see fanRun); the warm-up proves delivery.
			if !ready[k].Swap(true) {
				synced.Add(1)
			}
		case protocol.TypeMessage:
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
			var f protocol.Message
			if json.Unmarshal(data, &f) != nil {
				return
			}
			intended := st.ack.sched.Intended(i)
			st.rec.Record(intended, at)
			st.received.Add(1)
			if !st.rec.InMeasure(intended) {
				return // a lead-in message: no stage times either
			}
			st.mu.Lock()
			st.traces[f.MessageID] = &trace{intended: intended, sentAt: f.SentAt, storedAt: f.StoredAt, received: at}
			st.mu.Unlock()
		}
	})
	for k := range receivers {
		rp.send(k, subscribeFrame(room(k)))
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
				sp.send(k, sendFrame("w", room(k), fmt.Sprintf("%s.w.%d-%d", b.run, k, n), "warm-up"))
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
		w.stepID++
		count := int(rate * (leadIn + dur).Seconds())
		// The measurement first: starting it (profiles, broker counters) takes time that
		// must not delay sends already due.
		var end func()
		if measure != nil {
			end = measure()
		}
		sched := harness.NewSchedule(time.Now().Add(20*time.Millisecond), rate, count)
		st := &e2eState{ack: newAckState(w.stepID, sched), rec: harness.NewRecorder(), traces: make(map[string]*trace, count)}
		st.rec.MeasureFrom(sched.Start.Add(leadIn))
		st.ack.rec.MeasureFrom(sched.Start.Add(leadIn))
		cur.Store(st)
		runStats := sched.Run(ctx, func(i int, _ time.Time) {
			c := i % S
			sp.send(c, sendFrame(stepRef(st.ack.id, i), room(c%R), fmt.Sprintf("%s.%d.%d", b.run, st.ack.id, i), text))
		})
		waitFor(ctx, 20*time.Second, func() bool { return st.received.Load() >= int64(count) })
		if end != nil {
			end()
		}
		step := harness.Step{Rate: rate, Throughput: harness.Round(st.rec.Throughput()), Latency: st.rec.Summary(),
			Lost: int64(count) - st.received.Load()}
		step.Latency.Errors = st.ack.failed.Load()
		logStep(b.log, name, step)
		b.warnLateStart(name, rate, runStats)
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
