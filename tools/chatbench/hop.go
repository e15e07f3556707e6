package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kchat/kchat/pkg/topics"
	"github.com/kchat/kchat/tools/chatbench/internal/harness"
	"github.com/kchat/kchat/tools/chatbench/internal/report"
)

// hopRig is one client's produce → consume path on a topic of its own, declared like
// chat.submitted, created, known to every broker and warmed up before anything is measured.
type hopRig struct {
	b      *Bench
	client *kafkaClient
	topic  string
	keys   int // distinct keys the measured records cycle through: the rooms of the platform run compared
	cur    atomic.Pointer[hopStep]
	warm   atomic.Int64 // warm-up records of the current round received
	round  atomic.Int64
	stop   func()
	drop   func()
	cancel context.CancelFunc
}

// hopStep is one fixed-rate run of a rig.
type hopStep struct {
	id       int64
	rec      *harness.Recorder
	received atomic.Int64
}

var hopStepIDs atomic.Int64

const hopPad = 420 // bytes of padding: about the size of a message.submitted envelope

var hopPadding = strings.Repeat("p", hopPad)

// newHopRig creates a topic for client, starts its consumer and warms the path up: it
// returns once a burst of records sent to every partition came back whole. Measured
// records cycle through keys keys, as many as the rooms of the platform run the hop is
// compared with: fewer keys fill fewer partitions with larger batches, which the brokers
// carry for less CPU per record, so a hop over more keys than the platform's rooms is a
// weaker baseline.
func (b *Bench) newHopRig(ctx context.Context, clientName string, keys int) (*hopRig, error) {
	topic := fmt.Sprintf("bench.%s.hop.%d", b.run, hopStepIDs.Add(1))
	drop, err := b.createLike(ctx, topic, topics.Submitted)
	if err != nil {
		return nil, err
	}
	c, err := b.newClient(clientName, topic)
	if err != nil {
		drop()
		return nil, err
	}
	r := &hopRig{b: b, client: c, topic: topic, keys: max(keys, 1), drop: drop}
	rctx, cancel := context.WithCancel(ctx)
	r.cancel = cancel
	r.stop, err = c.consume(rctx, r.onRecord)
	if err != nil {
		cancel()
		c.close()
		drop()
		return nil, err
	}
	if err := r.warmUp(ctx); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

func (r *hopRig) close() {
	r.cancel()
	r.stop()
	r.client.close()
	r.drop()
}

// warmKeys is enough keys to reach every partition of a topic declared like chat.submitted.
const warmKeys = 50

func hopKey(i, keys int) []byte { return []byte(fmt.Sprintf("room-%02d", i%keys)) }

// onRecord parses "<intended unix ns>|<step>|padding" (or "w|<round>|padding" in the
// warm-up) and records the latency.
func (r *hopRig) onRecord(v []byte, at time.Time) {
	a, rest, ok := strings.Cut(string(v), "|")
	if !ok {
		return
	}
	idStr, _, ok := strings.Cut(rest, "|")
	if !ok {
		return
	}
	id, err := strconv.ParseInt(idStr, 10, 64)
	if err != nil {
		return
	}
	if a == "w" {
		if id == r.round.Load() {
			r.warm.Add(1)
		}
		return
	}
	ns, err := strconv.ParseInt(a, 10, 64)
	st := r.cur.Load()
	if err != nil || st == nil || st.id != id {
		return
	}
	st.rec.Record(time.Unix(0, ns), at)
	st.received.Add(1)
}

// warmUp sends rounds of 100 records over 50 keys (every partition) until a round is
// acknowledged without an error and read back whole: the topic's creation, the clients'
// metadata and connections are then behind us.
func (r *hopRig) warmUp(ctx context.Context) error {
	const n = 100
	deadline := time.Now().Add(60 * time.Second)
	var mu sync.Mutex
	var last error
	for round := int64(1); time.Now().Before(deadline) && ctx.Err() == nil; round++ {
		r.round.Store(round)
		r.warm.Store(0)
		var failed atomic.Int64
		acks := make(chan struct{}, n)
		for i := range n {
			r.client.produce(ctx, hopKey(i, warmKeys), []byte("w|"+strconv.FormatInt(round, 10)+"|"+hopPadding), nil, func(err error) {
				if err != nil {
					failed.Add(1)
					mu.Lock()
					last = err
					mu.Unlock()
				}
				acks <- struct{}{}
			})
		}
		for range n {
			select {
			case <-acks:
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Until(deadline)):
				return errors.New("warm-up: sends not acknowledged within 60s")
			}
		}
		if failed.Load() == 0 && waitFor(ctx, 15*time.Second, func() bool { return r.warm.Load() >= n }) {
			return nil
		}
		sleepCtx(ctx, 200*time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	return fmt.Errorf("warm-up of %s on %s: no clean round trip within 60s (last error: %v)", r.client.name, r.topic, last)
}

// run offers rate records/s for dur, open loop, and returns the step: latency from each
// record's intended send time until its consumer fetched it. measure, if set, is called
// just before the first send and its result just after the last record arrived (or the
// wait for it ended).
func (r *hopRig) run(ctx context.Context, rate float64, leadIn, dur time.Duration, measure func() func()) harness.Step {
	st := &hopStep{id: hopStepIDs.Add(1), rec: harness.NewRecorder()}
	r.cur.Store(st)
	defer r.cur.Store(nil)
	count := int(rate * (leadIn + dur).Seconds())
	// The measurement first: starting it takes time that must not delay sends already due.
	var end func()
	if measure != nil {
		end = measure()
	}
	sched := harness.NewSchedule(time.Now().Add(20*time.Millisecond), rate, count)
	st.rec.MeasureFrom(sched.Start.Add(leadIn))
	suffix := "|" + strconv.FormatInt(st.id, 10) + "|" + hopPadding
	send := asyncOps(ctx, sched, 10*time.Second, func(i int, intended time.Time, done func(error)) {
		r.client.produce(ctx, hopKey(i, r.keys), []byte(strconv.FormatInt(intended.UnixNano(), 10)+suffix), nil, done)
	})
	waitFor(ctx, 10*time.Second, func() bool { return st.received.Load() >= int64(count) })
	if end != nil {
		end()
	}
	step := harness.Step{Rate: rate, Throughput: harness.Round(st.rec.Throughput()), Latency: st.rec.Summary(),
		Lost: int64(count) - st.received.Load()}
	step.Latency.Errors = send.Latency.Errors
	return step
}

// better reports whether step a is a better baseline than b: delivered everything without
// errors first, then the lower p99.
func better(a, b harness.Step) bool {
	aw, bw := a.Lost == 0 && a.Latency.Errors == 0 && a.Latency.Count > 0, b.Lost == 0 && b.Latency.Errors == 0 && b.Latency.Count > 0
	if aw != bw {
		return aw
	}
	return a.Latency.P99Ms < b.Latency.P99Ms
}

// ---- raw produce → consume hop ----

// scenarioHop measures the raw Kafka hop the platform's own hops are made of, with each
// client at its best (see clients.go): room-keyed, envelope-sized records to a topic
// declared like chat.submitted, read back by the same library's consumer (kafka-go Readers
// for the two kafka-go producers, franz-go's consumer for franz-go), latency from the
// intended send time to the record being fetched. Each client gets a fresh, warmed-up
// topic; the baseline at each rate is the best client there.
func (b *Bench) scenarioHop(ctx context.Context, sc *report.Scenario) error {
	bestStep := map[float64]harness.Step{}
	for _, name := range clientNames {
		rig, err := b.newHopRig(ctx, name, b.plan.Rooms) // as many keys as e2e has rooms
		if err != nil {
			return err
		}
		series := report.Series{Name: "raw hop (" + name + ")"}
		for _, rate := range b.plan.HopRates {
			if ctx.Err() != nil {
				break
			}
			step := rig.run(ctx, rate, b.plan.LeadIn, b.plan.HopDur, nil)
			logStep(b.log, series.Name, step)
			series.Steps = append(series.Steps, step)
			if cur, ok := bestStep[rate]; !ok || better(step, cur) {
				bestStep[rate] = step
				b.hop[rate] = step.Latency
				b.hopName[rate] = series.Name
			}
			sleepCtx(ctx, 500*time.Millisecond)
		}
		rig.close()
		sc.Series = append(sc.Series, series)
		for _, st := range series.Steps {
			f := harness.NewFigure("hop", fmt.Sprintf("%s p99 @ %.0f/s", series.Name, st.Rate), "ms", st.Latency.P99Ms, "", nil)
			f.Note = stepNote(st)
			b.add(f)
		}
	}
	for _, rate := range b.plan.HopRates {
		if st, ok := bestStep[rate]; ok {
			f := harness.NewFigure("hop", fmt.Sprintf("raw hop, best client, p99 @ %.0f/s", rate), "ms", st.Latency.P99Ms, "", nil)
			f.Note = b.hopName[rate] + ": " + stepNote(st)
			b.add(f)
		}
	}
	sc.Config = map[string]any{"topic_like": topics.Submitted, "clients": clientDescriptions(),
		"consumers":        "kafka-go: one Reader per partition (no group), MinBytes 1, broker wait 50ms (MaxWait consumer.ReaderMaxWait(50ms)); franz-go: a consumer client, FetchMaxWait 50ms",
		"warm_up":          "fresh topic per client; every broker reports leaders for every partition; then rounds of 100 records until one round trips without an error",
		"seconds_per_rate": b.plan.HopDur.Seconds(), "lead_in_seconds": b.plan.LeadIn.Seconds(), "record_bytes": hopPad + 30, "keys": b.plan.Rooms,
		"baseline": "e2e compares with the best client at each rate (everything delivered, then lowest p99)"}
	return nil
}

func clientDescriptions() map[string]string {
	return map[string]string{
		clientWriter:   "kafka-go Writer, Async with a Completion callback, BatchTimeout 2ms, BatchSize 500, RequireAll, Murmur2Balancer, lz4",
		clientProducer: "pkg/producer via Enqueue (kafka-go Produce requests, acks=all, murmur2, lz4, one request in flight per partition, batching while in flight)",
		clientFranz:    "franz-go, acks=all, idempotent, linger 2ms, lz4, sticky-key (murmur2) partitioner",
	}
}

func stepNote(st harness.Step) string {
	return fmt.Sprintf("p50 %.1f ms, p99.9 %.1f ms, achieved %.0f/s, errors %d, lost %d",
		st.Latency.P50Ms, st.Latency.P999Ms, st.Throughput, st.Latency.Errors, st.Lost)
}

// ---- ingest straight into Kafka ----

// scenarioIngestDirect is the ingest baseline: valid message.submitted records, as a
// gateway publishes them, written straight to a topic declared like chat.submitted by each
// client at its best, open loop, latency to the acknowledgement (acks=all). The baseline
// for the gateways is the best client's highest passing rate.
func (b *Bench) scenarioIngestDirect(ctx context.Context, sc *report.Scenario) error {
	for _, name := range clientNames {
		if ctx.Err() != nil {
			break
		}
		topic := fmt.Sprintf("bench.%s.submitted.%d", b.run, hopStepIDs.Add(1))
		drop, err := b.createLike(ctx, topic, topics.Submitted)
		if err != nil {
			return err
		}
		msgs, err := b.submittedMessages(topic, 4000, b.plan.Rooms, func(k int) string { return fmt.Sprintf("bench-%s-in-%02d", b.run, k) })
		if err != nil {
			drop()
			return err
		}
		c, err := b.newClient(name, topic)
		if err != nil {
			drop()
			return err
		}
		run := func(sched harness.Schedule) harness.Step {
			return asyncOps(ctx, sched, 10*time.Second, func(i int, _ time.Time, done func(error)) {
				m := msgs[i%len(msgs)]
				c.produce(ctx, m.Key, m.Value, m.Headers, done)
			})
		}
		// Warm-up outside the measurement: until a burst to every partition is acknowledged
		// without an error (the topic is new; metadata and connections come first).
		deadline := time.Now().Add(60 * time.Second)
		for ctx.Err() == nil {
			st := run(harness.NewSchedule(time.Now(), 1000, 250))
			if st.Latency.Errors == 0 && st.Lost == 0 {
				break
			}
			if time.Now().After(deadline) {
				c.close()
				drop()
				return fmt.Errorf("%s: warm-up writes still failing after 60s", name)
			}
			sleepCtx(ctx, 200*time.Millisecond)
		}
		sysName := name + " direct"
		series := b.rateSearch(ctx, sysName, b.plan.DirectRates, b.plan.DirectStepDur, run, nil)
		c.close()
		drop()
		sc.Series = append(sc.Series, series)
		max := harness.MaxPassingRate(series.Steps, b.plan.P99Limit)
		if max > b.directMax || b.directName == "" {
			b.directMax, b.directName = max, sysName
		}
		f := harness.NewFigure("ingest-direct", sysName+" max rate with p99 < "+fmt.Sprint(b.plan.P99Limit)+" ms", "msg/s", max, "", nil)
		f.Note = searchNote(series, b.plan.P99Limit)
		b.add(f)
	}
	f := harness.NewFigure("ingest-direct", "best client max rate with p99 < "+fmt.Sprint(b.plan.P99Limit)+" ms", "msg/s", b.directMax, "", nil)
	f.Note = b.directName
	b.add(f)
	sc.Config = map[string]any{"topic_like": topics.Submitted, "seconds_per_step": b.plan.DirectStepDur.Seconds(), "clients": clientDescriptions(),
		"latency": "intended send time → acknowledgement (acks=all)", "warm_up": "fresh topic per client, leaders known to every broker, then bursts of 250 until one is acknowledged without an error"}
	return nil
}
