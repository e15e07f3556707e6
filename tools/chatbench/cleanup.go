package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kchat/kchat/pkg/outbox"
	"github.com/kchat/kchat/pkg/producer"
	"github.com/kchat/kchat/pkg/topics"
	"github.com/kchat/kchat/tools/chatbench/internal/harness"
	"github.com/kchat/kchat/tools/chatbench/internal/report"
)

// The outbox-cleanup scenario shows whether the retention Cleaner slows the relay down
// (issue 14, item 5: the old cleanup was one large DELETE a minute on the relay's own
// connection, which stalled relaying while it ran). A fresh database holds a backlog of
// published outbox rows and inbox entries past their retention; a Relay publishes a
// steady open-loop stream of new rows from it to a topic of the run, and the insert →
// Kafka latency of those rows is compared without and with the Cleaner (production
// settings) deleting the backlog at the same time.

// cleanupRatioLimit is the figure's target: relay p99 during cleanup at most 1.5× the p99
// without it. "Unaffected" cannot mean equal on a shared 2-core machine: two phases of
// the same load differ by tens of percent (the scenario reports its two baseline halves
// separately, to show how much). A stall of the kind the issue describes, a relay held up
// for the whole of a large DELETE, shows as a multiple of the baseline p99, far above it.
const cleanupRatioLimit = 1.5

// cleanupPad is the payload padding of a relayed row: about the size of a message.stored
// envelope, like the backlog's rows.
const cleanupPad = 400

// cleanupInserters bounds the inserts in flight: the load generator's connections.
const cleanupInserters = 8

// relaySample is one relayed row: its index in the phase, when its insert was due and
// when its record was fetched.
type relaySample struct {
	row          int
	intended, at time.Time
}

// relayPhase collects the rows of one phase as the consumer reads them back.
type relayPhase struct {
	id      int64
	commits []atomic.Int64 // unix ns at which insert i returned, by row
	mu      sync.Mutex
	samples []relaySample
}

func (p *relayPhase) add(s relaySample) {
	p.mu.Lock()
	p.samples = append(p.samples, s)
	p.mu.Unlock()
}

// snapshot copies the samples so far: a late record may still arrive meanwhile.
func (p *relayPhase) snapshot() []relaySample {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]relaySample(nil), p.samples...)
}

func (p *relayPhase) received() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.samples)
}

// phaseLatency is a phase's latency, whole and in its two parts.
type phaseLatency struct {
	// Total: intended insert time → record fetched from Kafka (the figure).
	Total harness.Summary `json:"insert_to_kafka"`
	// Insert: intended insert time → the insert's commit returned (the writer's share).
	Insert harness.Summary `json:"insert_commit"`
	// Relay: commit returned → record fetched (the relay's share, and the consumer's fetch).
	Relay harness.Summary `json:"commit_to_kafka"`
}

// latency summarises the samples of phases whose insert was due in [from, to) (zero
// times: unbounded). Call it once the phases' inserts have returned: a record can be
// fetched before its inserter noted the commit time.
func latency(from, to time.Time, phases ...*relayPhase) phaseLatency {
	total, insert, relay := harness.NewRecorder(), harness.NewRecorder(), harness.NewRecorder()
	for _, p := range phases {
		for _, s := range p.snapshot() {
			if (from.IsZero() || !s.intended.Before(from)) && (to.IsZero() || s.intended.Before(to)) {
				total.Record(s.intended, s.at)
				committed := time.Unix(0, p.commits[s.row].Load())
				insert.Record(s.intended, committed)
				relay.Record(committed, s.at)
			}
		}
	}
	return phaseLatency{Total: total.Summary(), Insert: insert.Summary(), Relay: relay.Summary()}
}

// cleanupRig is the relay under test and its load: inserts on a pool of their own, a
// Relay with its producer (as persistence runs them), and a reader of the topic.
type cleanupRig struct {
	topic   string
	load    *pgxpool.Pool
	cur     atomic.Pointer[relayPhase]
	padding string
}

// onRecord parses "<intended unix ns>|<phase>|<row>|padding" and files the sample under
// its phase; records of an earlier phase (late duplicates) are dropped.
func (r *cleanupRig) onRecord(v []byte, at time.Time) {
	f := strings.SplitN(string(v), "|", 4)
	if len(f) != 4 {
		return
	}
	ns, err1 := strconv.ParseInt(f[0], 10, 64)
	id, err2 := strconv.ParseInt(f[1], 10, 64)
	i, err3 := strconv.Atoi(f[2])
	ph := r.cur.Load()
	if err1 != nil || err2 != nil || err3 != nil || ph == nil || ph.id != id || i < 0 || i >= len(ph.commits) {
		return
	}
	ph.add(relaySample{row: i, intended: time.Unix(0, ns), at: at})
}

// phase inserts rate rows/s for dur, open loop, one row per transaction, each carrying
// the time its insert was due; it returns once every inserted row was read back from the
// topic (or 10 s after the last insert), with the rows' samples and the counts.
func (r *cleanupRig) phase(ctx context.Context, rate float64, dur time.Duration) (*relayPhase, harness.Step) {
	count := max(1, int(rate*dur.Seconds()))
	ph := &relayPhase{id: hopStepIDs.Add(1), commits: make([]atomic.Int64, count)}
	r.cur.Store(ph)
	sched := harness.NewSchedule(time.Now().Add(20*time.Millisecond), rate, count)
	suffix := "|" + r.padding
	ins := goOps(ctx, sched, 10*time.Second, cleanupInserters, func(i int) error {
		payload := strconv.FormatInt(sched.Intended(i).UnixNano(), 10) + "|" + strconv.FormatInt(ph.id, 10) + "|" + strconv.Itoa(i) + suffix
		err := outbox.Insert(ctx, r.load, outbox.Row{Topic: r.topic, Key: string(hopKey(i, warmKeys)), Payload: []byte(payload)})
		ph.commits[i].Store(time.Now().UnixNano())
		return err
	})
	inserted := int(ins.Latency.Count)
	waitFor(ctx, 10*time.Second, func() bool { return ph.received() >= inserted })
	l := latency(time.Time{}, time.Time{}, ph)
	st := harness.Step{Rate: rate, Latency: l.Total}
	st.Latency.Errors = ins.Latency.Errors
	st.Lost = int64(count) - int64(ph.received()) - ins.Latency.Errors
	rec := harness.NewRecorder()
	for _, s := range ph.snapshot() {
		rec.Record(s.intended, s.at)
	}
	st.Throughput = harness.Round(rec.Throughput())
	return ph, st
}

// cleanerProbe is the Cleaner's database as seen by the benchmark: every DELETE it runs,
// when and how many rows, timed around the pool's Exec.
type cleanerProbe struct {
	db      outbox.Execer
	mu      sync.Mutex
	batches *harness.Recorder
	deleted int64
	n       int
	first   time.Time // start of the first batch that deleted anything
	last    time.Time // end of the last batch that deleted anything
}

var _ outbox.Execer = (*cleanerProbe)(nil)

func (p *cleanerProbe) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	start := time.Now()
	tag, err := p.db.Exec(ctx, sql, args...)
	end := time.Now()
	if err != nil {
		return tag, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.batches.Record(start, end)
	p.n++
	if n := tag.RowsAffected(); n > 0 {
		p.deleted += n
		if p.first.IsZero() {
			p.first = start
		}
		p.last = end
	}
	return tag, nil
}

// scenarioOutboxCleanup: relay latency (insert → record fetched from Kafka) of a steady
// stream of outbox rows, without and with the Cleaner at its production settings deleting
// a backlog of old rows from the same database. Phases, same rate: a warm-up (not
// measured), baseline half 1, cleanup, baseline half 2 (a-b-a, so that drift in the
// machine's load over the run falls on both sides; the baseline is the two halves
// together, as long as the cleanup phase).
func (b *Bench) scenarioOutboxCleanup(ctx context.Context, sc *report.Scenario) error {
	n, rate, dur := b.plan.CleanupRows, b.plan.CleanupRate, b.plan.CleanupDur
	dbURL, dropDB, err := b.freshDB(ctx, "bench_"+b.run+"_cleanup")
	if err != nil {
		return err
	}
	defer dropDB()
	topic := "bench" + b.run + "c." + topics.Stored
	dropTopic, err := b.createLike(ctx, topic, topics.Stored)
	if err != nil {
		return err
	}
	defer dropTopic()

	// Other tests on a shared stack restart brokers; a restart mid-run stalls and loses
	// records for reasons that have nothing to do with the Cleaner.
	brokersBefore, pgBefore := b.brokerPIDs(), b.resolvePIDs()["postgres"]
	t0 := time.Now()
	if err := seedRetentionBacklog(ctx, dbURL, topic, n); err != nil {
		return err
	}
	sc.Data["seed_seconds"] = harness.Round(time.Since(t0).Seconds())
	b.log.Info("outbox-cleanup: backlog seeded", "outbox_rows", n, "inbox_rows", n, "seconds", sc.Data["seed_seconds"])

	// The load's inserts go through a pool of their own; the relay and the Cleaner share
	// one, as they do in persistence (the relay takes its connection out of it).
	loadCfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return err
	}
	loadCfg.MaxConns = cleanupInserters
	load, err := pgxpool.NewWithConfig(ctx, loadCfg)
	if err != nil {
		return err
	}
	defer load.Close()
	svc, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return err
	}
	defer svc.Close()
	prod, err := producer.New(producer.Config{Brokers: b.cfg.Brokers, Security: b.cfg.KafkaSecurity})
	if err != nil {
		return err
	}
	defer prod.Close()
	relay, err := outbox.New(svc, prod, outbox.Config{Logger: b.log})
	if err != nil {
		return err
	}
	rig := &cleanupRig{topic: topic, load: load, padding: strings.Repeat("p", cleanupPad)}

	rctx, stopRelay := context.WithCancel(ctx)
	defer stopRelay()
	stopReaders, err := b.kafkaGoConsume(rctx, topic, rig.onRecord, &readerStats{})
	if err != nil {
		return err
	}
	relayDone := make(chan struct{})
	go func() { defer close(relayDone); _ = relay.Run(rctx) }()
	// The readers and the relay end with rctx: cancel it first, then wait for them.
	defer func() { stopRelay(); stopReaders(); <-relayDone }()

	// Warm-up: rounds of a second's worth of rows until one comes back whole, so that the
	// relay's lock, the producer's metadata and connections, and the readers are behind
	// us before anything is measured.
	warm := false
	for range 30 {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if _, st := rig.phase(ctx, rate, time.Second); st.Lost == 0 && st.Latency.Errors == 0 {
			warm = true
			break
		}
	}
	if !warm {
		return errors.New("warm-up: no round of rows relayed whole in 30 tries")
	}

	a1, stA1 := rig.phase(ctx, rate, dur/2)
	logStep(b.log, "relay, no cleanup (1)", stA1)

	probe := &cleanerProbe{db: svc, batches: harness.NewRecorder()}
	cleaner, err := outbox.NewCleaner(probe, outbox.CleanerConfig{Logger: b.log})
	if err != nil {
		return err
	}
	cctx, stopCleaner := context.WithCancel(ctx)
	cleanerDone := make(chan struct{})
	cleanStart := time.Now()
	go func() { defer close(cleanerDone); _ = cleaner.Run(cctx) }()
	bph, stB := rig.phase(ctx, rate, dur)
	stopCleaner()
	<-cleanerDone
	cleanEnd := time.Now()
	logStep(b.log, "relay during cleanup", stB)

	a2, stA2 := rig.phase(ctx, rate, dur/2)
	logStep(b.log, "relay, no cleanup (2)", stA2)

	// The baseline: both halves in one histogram.
	base := latency(time.Time{}, time.Time{}, a1, a2)

	probe.mu.Lock()
	deleted, nBatches, first, last := probe.deleted, probe.n, probe.first, probe.last
	batchSum := probe.batches.Summary()
	probe.mu.Unlock()
	var left struct{ outbox, inbox int64 }
	_ = svc.QueryRow(ctx, `SELECT (SELECT count(*) FROM outbox WHERE published_at < now() - interval '1 hour'),
		(SELECT count(*) FROM processed_events)`).Scan(&left.outbox, &left.inbox)

	// "During cleanup" is the rows whose insert was due while the Cleaner was deleting:
	// if it finished its backlog before the phase ended, the rest of the phase had no
	// cleanup to be affected by, and counting it would flatter the figure.
	busyS := last.Sub(first).Seconds()
	during := latency(first, last, bph)
	phaseS := dur.Seconds()
	rateDel := 0.0
	if busyS > 0 {
		rateDel = float64(deleted) / busyS
	}

	phases := map[string]any{"baseline_1": stA1, "cleanup": stB, "baseline_2": stA2, "baseline": base,
		"cleanup_while_deleting": during}
	sc.Data["phases"] = phases
	sc.Data["cleaner"] = map[string]any{
		"deleted": deleted, "batches": nBatches, "busy_s": harness.Round(busyS), "phase_s": phaseS,
		"deleted_per_s": harness.Round(rateDel), "batch_ms": batchSum,
		"ran_s":       harness.Round(cleanEnd.Sub(cleanStart).Seconds()),
		"left_outbox": left.outbox, "left_inbox": left.inbox,
	}
	sc.Config = map[string]any{
		"backlog_outbox_rows": n, "backlog_inbox_rows": n, "rate_per_s": rate, "cleanup_phase_s": phaseS,
		"baseline_phases_s": []float64{phaseS / 2, phaseS / 2}, "payload_bytes": cleanupPad + 30,
		"inserts":  fmt.Sprintf("one row per transaction, at most %d in flight, on a pool of their own", cleanupInserters),
		"relay":    "outbox.Relay with its defaults and pkg/producer's, on a pool shared with the Cleaner (as persistence)",
		"cleaner":  "outbox.Cleaner with CleanerConfig defaults (batch 1000, pause 10ms, interval 1m, retention 1h / 14d), started with the phase",
		"latency":  "intended insert time → record fetched by a kafka-go Reader (no group, broker wait 50ms); split at the insert's commit",
		"topic":    "like " + topics.Stored,
		"baseline": "the two no-cleanup halves before and after the cleanup phase, in one histogram",
	}

	f := harness.NewFigure("outbox-cleanup", fmt.Sprintf("relay insert→Kafka p99 during cleanup @ %.0f rows/s", rate), "ms", during.Total.P99Ms,
		"p99 without cleanup (same run)", harness.F(base.Total.P99Ms), harness.Target{Kind: harness.RatioAtMost, Limit: cleanupRatioLimit})
	f.Note = fmt.Sprintf("p50 %.1f / %.1f ms, max %.0f / %.0f ms (during / without); baseline halves p99 %.1f and %.1f ms; "+
		"insert commit p99 %.1f / %.1f ms; %d rows inserted while the Cleaner deleted, lost %d, errors %d",
		during.Total.P50Ms, base.Total.P50Ms, during.Total.MaxMs, base.Total.MaxMs, stA1.Latency.P99Ms, stA2.Latency.P99Ms,
		during.Insert.P99Ms, base.Insert.P99Ms, during.Total.Count,
		max(0, stA1.Lost)+max(0, stB.Lost)+max(0, stA2.Lost), stA1.Latency.Errors+stB.Latency.Errors+stA2.Latency.Errors)
	// The relay's own share, from the insert's commit on: what the Cleaner could hold up
	// through the relay's query (its DELETEs are running transactions, and the relay
	// reads only rows older than every running one).
	fr := harness.NewFigure("outbox-cleanup", "relay commit→Kafka p99 during cleanup", "ms", during.Relay.P99Ms,
		"p99 without cleanup (same run)", harness.F(base.Relay.P99Ms))
	fr.Note = fmt.Sprintf("p50 %.1f / %.1f ms, max %.0f / %.0f ms (during / without)",
		during.Relay.P50Ms, base.Relay.P50Ms, during.Relay.MaxMs, base.Relay.MaxMs)
	lost := max(0, stA1.Lost) + max(0, stB.Lost) + max(0, stA2.Lost)
	errs := stA1.Latency.Errors + stB.Latency.Errors + stA2.Latency.Errors
	restarted := !slices.Equal(brokersBefore, b.brokerPIDs()) || pgBefore != b.resolvePIDs()["postgres"]
	var scenarioErr error
	switch {
	case restarted || lost > 0 || errs > 0:
		// A row never read back (or never inserted) is the slowest of its phase; without
		// it the phase's p99 is not known, and a restarted broker or database stalls
		// relaying on its own.
		why := fmt.Sprintf("%d rows not read back, %d inserts failed", lost, errs)
		if restarted {
			why = "a broker or PostgreSQL restarted during the scenario; " + why
		}
		f.NoData(why)
		fr.NoData(why)
		sc.Warnings = append(sc.Warnings, why+": rerun on a quiet stack")
	case deleted == 0:
		// Nothing cleaned: the comparison would be of two baselines, a false result.
		f.NoData("the Cleaner deleted nothing during the cleanup phase")
		scenarioErr = errors.New("the Cleaner deleted nothing during the cleanup phase")
	case during.Total.Count == 0:
		f.NoData("no row was relayed while the Cleaner deleted")
		scenarioErr = errors.New("no row was relayed while the Cleaner deleted")
	}
	if busyS < 0.9*phaseS && deleted > 0 {
		sc.Warnings = append(sc.Warnings, fmt.Sprintf("the Cleaner worked off its backlog in %.1f s of the %.0f s phase; "+
			"the figure counts only rows inserted meanwhile (raise -cleanup-rows)", busyS, phaseS))
	}
	fd := harness.NewFigure("outbox-cleanup", "Cleaner rows deleted/s during the relay load", "rows/s", harness.Round(rateDel), "", nil)
	fd.Note = fmt.Sprintf("%d rows (outbox and inbox backlog of %d each) in %d batches over %.1f s; %d outbox and %d inbox rows left",
		deleted, n, nBatches, busyS, left.outbox, left.inbox)
	fb := harness.NewFigure("outbox-cleanup", "Cleaner batch (one DELETE) p99", "ms", batchSum.P99Ms, "", nil)
	fb.Note = fmt.Sprintf("p50 %.1f ms, max %.1f ms over %d batches of up to 1000 rows", batchSum.P50Ms, batchSum.MaxMs, batchSum.Count)
	b.add(f, fr, fd, fb)
	b.log.Info("outbox-cleanup", "p99_ms", during.Total.P99Ms, "baseline_p99_ms", base.Total.P99Ms,
		"relay_p99_ms", during.Relay.P99Ms, "relay_baseline_p99_ms", base.Relay.P99Ms, "deleted", deleted,
		"deleted_per_s", harness.Round(rateDel), "batch_p99_ms", batchSum.P99Ms)
	return scenarioErr
}

// seedRetentionBacklog fills the outbox and the inbox of the database at dbURL with n rows
// each that the Cleaner may delete: outbox rows published two retentions ago (written
// like persistence's own, with relay_after set, so the insert trigger stays quiet) and
// inbox entries older than the inbox retention. COPY keeps this to seconds. A VACUUM
// ANALYZE then leaves the tables as a long-running database has them (statistics known,
// visibility map set), so that autovacuum does not start on the fresh rows mid-measurement.
func seedRetentionBacklog(ctx context.Context, dbURL, topic string, n int) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	published := time.Now().Add(-2 * outbox.DefaultOutboxRetention)
	processed := time.Now().Add(-outbox.DefaultInboxRetention - 24*time.Hour)
	payload := []byte(strings.Repeat("s", cleanupPad))
	headers := json.RawMessage(`{"ce_type":"message.stored"}`)
	i := 0
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"outbox"},
		[]string{"topic", "key", "payload", "headers", "created_at", "relay_after", "published_at"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if i == n {
				return nil, nil
			}
			i++
			return []any{topic, string(hopKey(i, warmKeys)), payload, headers, published, published.Add(time.Second), published}, nil
		})); err != nil {
		return fmt.Errorf("seed outbox: %w", err)
	}
	j := 0
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"processed_events"}, []string{"consumer", "event_id", "processed_at"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if j == n {
				return nil, nil
			}
			j++
			return []any{"chatbench", "bench-" + strconv.Itoa(j), processed}, nil
		})); err != nil {
		return fmt.Errorf("seed inbox: %w", err)
	}
	if _, err := conn.Exec(ctx, "VACUUM ANALYZE outbox, processed_events"); err != nil {
		return fmt.Errorf("vacuum seeded tables: %w", err)
	}
	return nil
}
