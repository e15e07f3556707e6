package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/producer"
	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/pkg/topics"
	"github.com/kchat/kchat/services/chatbench/internal/harness"
	"github.com/kchat/kchat/services/chatbench/internal/report"
)

func (b *Bench) kafkaClient() *kafka.Client {
	return &kafka.Client{Addr: kafka.TCP(b.cfg.Brokers...), Timeout: 30 * time.Second}
}

// createLike creates topic name with the spec (partitions, replication, configs) that
// deploy/topics.yaml declares for like, and waits until it has leaders.
func (b *Bench) createLike(ctx context.Context, name, like string) (func(), error) {
	f, err := topics.Load(filepath.Join(b.cfg.Root, "deploy", "topics.yaml"))
	if err != nil {
		return nil, err
	}
	var spec *topics.Spec
	for _, t := range f.Topics {
		if t.Name == like {
			t.Name = name
			spec = &t
		}
	}
	if spec == nil {
		return nil, fmt.Errorf("topic %s not declared", like)
	}
	return b.applyTopics(ctx, topics.File{Topics: []topics.Spec{*spec}})
}

func (b *Bench) applyTopics(ctx context.Context, f topics.File) (func(), error) {
	client := b.kafkaClient()
	if _, err := topics.Apply(ctx, client, f); err != nil {
		return nil, fmt.Errorf("create topics: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := stacktest.WaitTopicsReady(wctx, client, f.Names()); err != nil {
		return nil, err
	}
	return func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = client.DeleteTopics(dctx, &kafka.DeleteTopicsRequest{Topics: f.Names()})
	}, nil
}

// submittedMessages builds n distinct, valid message.submitted records keyed by room, as
// a gateway would publish them.
func (b *Bench) submittedMessages(topic string, n, rooms int, roomName func(int) string) ([]kafka.Message, error) {
	text := strings.Repeat("x", b.plan.TextBytes)
	out := make([]kafka.Message, n)
	for i := range n {
		room := roomName(i % rooms)
		e, err := event.New("kchat/chatbench", event.MessageSubmitted{
			RoomID: room, Sender: fmt.Sprintf("bench-u%06d", i%rooms+1), SenderName: "bench",
			ClientMsgID: fmt.Sprintf("%s-%d", b.run, i), Text: text, Kind: event.KindMessage, SubmittedAt: time.Now().UTC(),
		})
		if err != nil {
			return nil, err
		}
		m, err := producer.Message(topic, room, e)
		if err != nil {
			return nil, err
		}
		out[i] = m
	}
	return out, nil
}

// ---- raw produce → consume hop ----

// scenarioHop measures the raw Kafka hop the platform's own hops are made of: the
// platform's producer (pkg/producer: acks=all, Murmur2, 2 ms batches, lz4) writing
// room-keyed ~envelope-sized records to a topic declared like chat.submitted, and a
// kafka-go group reader configured like pkg/consumer (MinBytes 1, MaxWait 250 ms),
// latency from the intended send time to the record being fetched.
func (b *Bench) scenarioHop(ctx context.Context, sc *report.Scenario) error {
	topic := "bench." + b.run + ".hop"
	drop, err := b.createLike(ctx, topic, topics.Submitted)
	if err != nil {
		return err
	}
	defer drop()
	p, err := producer.New(producer.Config{Brokers: b.cfg.Brokers})
	if err != nil {
		return err
	}
	defer p.Close()
	p1 := writerBefore(b.cfg.Brokers)
	defer p1.Close()
	// One reader per partition, fetching exactly like pkg/consumer's group reader does, but
	// without a group: a consumer group joining a topic created a moment ago can take tens
	// of seconds to get its assignment, which is not part of a hop.
	md, err := b.kafkaClient().Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil || len(md.Topics) != 1 {
		return fmt.Errorf("hop: metadata: %v", err)
	}
	var readers []*kafka.Reader
	for _, part := range md.Topics[0].Partitions {
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers: b.cfg.Brokers, Topic: topic, Partition: part.ID,
			MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 250 * time.Millisecond, StartOffset: kafka.FirstOffset,
			QueueCapacity: 1000, ReadBackoffMin: 10 * time.Millisecond, ReadBackoffMax: 250 * time.Millisecond,
		})
		readers = append(readers, r)
		defer r.Close()
	}

	type stepState struct {
		id       int
		rec      *harness.Recorder
		received atomic.Int64
	}
	var cur atomic.Pointer[stepState]
	var warm atomic.Int64
	rctx, stopReader := context.WithCancel(ctx)
	defer stopReader()
	for _, reader := range readers {
		go readHop(rctx, reader, func(m kafka.Message) {
			at := time.Now()
			v := string(m.Value)
			parts := strings.SplitN(v, "|", 3)
			if len(parts) < 3 {
				return
			}
			if parts[0] == "w" {
				warm.Add(1)
				return
			}
			ns, err1 := strconv.ParseInt(parts[0], 10, 64)
			id, err2 := strconv.Atoi(parts[1])
			st := cur.Load()
			if err1 != nil || err2 != nil || st == nil || st.id != id {
				return
			}
			st.rec.Record(time.Unix(0, ns), at)
			st.received.Add(1)
		})
	}
	pad := strings.Repeat("p", 420) // about the size of a message.submitted envelope
	msg := func(i int, prefix string) kafka.Message {
		return kafka.Message{Topic: topic, Key: []byte(fmt.Sprintf("room-%02d", i%50)), Value: []byte(prefix + "|" + pad)}
	}
	// Warm up until the group owns the partitions and records flow.
	deadline := time.Now().Add(45 * time.Second)
	for warm.Load() == 0 {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return errors.New("hop: the reader received nothing within 45s")
		}
		if err := p.Write(ctx, msg(0, "w|0")); err != nil {
			return err
		}
		sleepCtx(ctx, 200*time.Millisecond)
	}
	fc, err := kgo.NewClient(franzOpts(b.cfg.Brokers, topic)...)
	if err != nil {
		return err
	}
	defer fc.Close()
	producers := []struct {
		name string
		send func(ctx context.Context, m kafka.Message, done func(error))
	}{
		{"raw hop (pkg/producer)", func(ctx context.Context, m kafka.Message, done func(error)) {
			go func() { done(p.Write(ctx, m)) }()
		}},
		{"raw hop (kafka-go Writer: before)", func(ctx context.Context, m kafka.Message, done func(error)) {
			go func() { done(p1.WriteMessages(ctx, m)) }()
		}},
		{"raw hop (franz-go)", func(ctx context.Context, m kafka.Message, done func(error)) {
			fc.Produce(ctx, &kgo.Record{Key: m.Key, Value: m.Value}, func(_ *kgo.Record, err error) { done(err) })
		}},
	}
	id := 0
	best := map[float64]string{}
	for _, prod := range producers {
		series := report.Series{Name: prod.name}
		for _, rate := range b.plan.E2ERates {
			id++
			st := &stepState{id: id, rec: harness.NewRecorder()}
			cur.Store(st)
			count := int(rate * b.plan.E2EDur.Seconds())
			sched := harness.NewSchedule(time.Now().Add(20*time.Millisecond), rate, count)
			send := asyncOps(ctx, sched, 10*time.Second, func(i int, intended time.Time, done func(error)) {
				prod.send(ctx, msg(i, strconv.FormatInt(intended.UnixNano(), 10)+"|"+strconv.Itoa(st.id)), done)
			})
			waitFor(ctx, 10*time.Second, func() bool { return st.received.Load() >= int64(count) })
			step := harness.Step{Rate: rate, Throughput: harness.Round(st.rec.Throughput()), Latency: st.rec.Summary(),
				Lost: int64(count) - st.received.Load()}
			step.Latency.Errors = send.Latency.Errors
			logStep(b.log, prod.name, step)
			series.Steps = append(series.Steps, step)
			if h, ok := b.hop[rate]; !ok || step.Lost == 0 && step.Latency.P99Ms < h.P99Ms {
				b.hop[rate] = step.Latency
				best[rate] = prod.name
			}
			sleepCtx(ctx, 500*time.Millisecond)
		}
		sc.Series = append(sc.Series, series)
		for _, st := range series.Steps {
			b.add(harness.NewFigure("hop", fmt.Sprintf("%s p99 @ %.0f/s", prod.name, st.Rate), "ms", st.Latency.P99Ms, "", nil))
		}
	}
	b.hopName = best
	sc.Config = map[string]any{"topic_like": topics.Submitted,
		"producers": "pkg/producer (kafka-go Produce requests, acks=all, murmur2, lz4, one request in flight per partition, batching while in flight), kafka-go's Writer as pkg/producer used it before (acks=all, murmur2, 2ms batch timeout, lz4), and franz-go (acks=all, idempotent, linger 2ms, lz4)",
		"consumer":  "kafka-go reader per partition, MinBytes 1, MaxWait 250ms (fetch settings of pkg/consumer, no group)", "seconds_per_rate": b.plan.E2EDur.Seconds(),
		"baseline": "e2e compares with the better of the two hops at each rate"}
	return nil
}

// writerBefore is kafka-go's Writer as pkg/producer configured it before it sent its own
// requests.
func writerBefore(brokers []string) *kafka.Writer {
	return &kafka.Writer{Addr: kafka.TCP(brokers...), Balancer: &kafka.Murmur2Balancer{}, RequiredAcks: kafka.RequireAll,
		BatchTimeout: 2 * time.Millisecond, BatchSize: 500, MaxAttempts: 10, WriteBackoffMin: 50 * time.Millisecond,
		WriteBackoffMax: time.Second, WriteTimeout: 10 * time.Second, Compression: kafka.Lz4}
}

// franzOpts is franz-go set up for the same guarantees as pkg/producer: acks from all
// in-sync replicas (and idempotence, franz-go's default), Murmur2 key partitioning, lz4,
// a 2 ms linger.
func franzOpts(brokers []string, topic string) []kgo.Opt {
	return []kgo.Opt{
		kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(2 * time.Millisecond), kgo.ProducerBatchCompression(kgo.Lz4Compression()),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), kgo.MaxBufferedRecords(100_000),
	}
}

func readHop(ctx context.Context, r *kafka.Reader, fn func(kafka.Message)) {
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			return
		}
		fn(m)
	}
}

func waitFor(ctx context.Context, max time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(max)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		sleepCtx(ctx, 20*time.Millisecond)
	}
	return true
}

// ---- ingest straight into Kafka ----

// scenarioIngestDirect is the ingest baseline: the gateway's own producer configuration
// (pkg/producer) writing valid message.submitted records directly to a topic declared
// exactly like chat.submitted, open loop, one WriteMessages call per message (as the
// gateway makes one Publish per send); and franz-go's producer for context.
func (b *Bench) scenarioIngestDirect(ctx context.Context, sc *report.Scenario) error {
	topic := "bench." + b.run + ".submitted"
	drop, err := b.createLike(ctx, topic, topics.Submitted)
	if err != nil {
		return err
	}
	defer drop()
	msgs, err := b.submittedMessages(topic, 4000, b.plan.Rooms, func(k int) string { return fmt.Sprintf("bench-%s-in-%02d", b.run, k) })
	if err != nil {
		return err
	}
	p, err := producer.New(producer.Config{Brokers: b.cfg.Brokers})
	if err != nil {
		return err
	}
	defer p.Close()
	fc, err := kgo.NewClient(franzOpts(b.cfg.Brokers, topic)...)
	if err != nil {
		return err
	}
	defer fc.Close()

	// kafka-go's own Writer, set up as pkg/producer used it before it sent its own
	// requests: the "before" of the producer change, measured in the same run.
	p1 := writerBefore(b.cfg.Brokers)
	defer p1.Close()
	kafkaGo := func(sched harness.Schedule) harness.Step {
		return goOps(ctx, sched, 10*time.Second, 50_000, func(i int) error { return p.Write(ctx, msgs[i%len(msgs)]) })
	}
	kafkaGo1 := func(sched harness.Schedule) harness.Step {
		return goOps(ctx, sched, 10*time.Second, 50_000, func(i int) error { return p1.WriteMessages(ctx, msgs[i%len(msgs)]) })
	}
	franz := func(sched harness.Schedule) harness.Step {
		return asyncOps(ctx, sched, 10*time.Second, func(i int, _ time.Time, done func(error)) {
			m := msgs[i%len(msgs)]
			r := &kgo.Record{Key: m.Key, Value: m.Value}
			for _, h := range m.Headers {
				r.Headers = append(r.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
			}
			fc.Produce(ctx, r, func(_ *kgo.Record, err error) { done(err) })
		})
	}
	// Warm both clients up (metadata, connections) outside the measurement.
	kafkaGo(harness.NewSchedule(time.Now(), 500, 250))
	kafkaGo1(harness.NewSchedule(time.Now(), 500, 250))
	franz(harness.NewSchedule(time.Now(), 500, 250))

	var mu sync.Mutex
	for _, sys := range []struct {
		name string
		run  func(harness.Schedule) harness.Step
	}{{"kafka-go direct (pkg/producer)", kafkaGo}, {"kafka-go Writer direct (before)", kafkaGo1}, {"franz-go direct", franz}} {
		series := b.rateSearch(ctx, sys.name, b.plan.DirectRates, sys.run, nil)
		mu.Lock()
		sc.Series = append(sc.Series, series)
		mu.Unlock()
		max := harness.MaxPassingRate(series.Steps, b.plan.P99Limit)
		if sys.name == "kafka-go direct (pkg/producer)" {
			b.directMax = max
		}
		f := harness.NewFigure("ingest-direct", sys.name+" max rate with p99 < "+fmt.Sprint(b.plan.P99Limit)+" ms", "msg/s", max, "", nil)
		f.Note = searchNote(series, b.plan.P99Limit)
		b.add(f)
	}
	sc.Config = map[string]any{"topic_like": topics.Submitted, "seconds_per_step": b.plan.StepDur.Seconds(),
		"franz_go": "acks=all, idempotent, linger 2ms, lz4, sticky-key (murmur2) partitioner"}
	return nil
}

// rateSearch runs fixed-rate steps in order until one fails the latency goal (or misses
// the rate); after each step it calls between (e.g. to let the platform drain).
func (b *Bench) rateSearch(ctx context.Context, name string, rates []float64, run func(harness.Schedule) harness.Step, between func()) report.Series {
	series := report.Series{Name: name}
	for _, rate := range rates {
		if ctx.Err() != nil {
			break
		}
		count := int(rate * b.plan.StepDur.Seconds())
		st := run(harness.NewSchedule(time.Now().Add(20*time.Millisecond), rate, count))
		logStep(b.log, name, st)
		series.Steps = append(series.Steps, st)
		if between != nil {
			between()
		}
		if !st.Passes(b.plan.P99Limit) {
			break
		}
	}
	return series
}
