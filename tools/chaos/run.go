package chaos

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kchat/kchat/pkg/stacktest"
)

// RunConfig is one run: a fresh platform, load, and faults injected one after another
// (each Repeat times), with Settle between them.
type RunConfig struct {
	Name   string
	Faults []string
	Repeat int
	// Together lists faults injected at the same moment after the sequence (mixed runs).
	Together []string
	Load     LoadConfig
	Timing   Timing
	Warmup   time.Duration
	Settle   time.Duration
	Drain    time.Duration // longest wait for acks and deliveries after the load stops
}

// RunResult is what one run produced.
type RunResult struct {
	Name       string        `json:"name"`
	Faults     []string      `json:"faults"`
	Load       LoadConfig    `json:"load"`
	Duration   time.Duration `json:"duration"`
	LoadFor    time.Duration `json:"load_duration"`
	Counts     Counts        `json:"counts"`
	Recoveries []Recovery    `json:"recoveries"`
	Recovery   RecoveryStats `json:"recovery"`
	Problems   []string      `json:"problems,omitempty"`
	Errors     []string      `json:"errors,omitempty"`
	History    string        `json:"history,omitempty"` // path of the JSON-lines history, if kept
}

// RecoveryStats summarises Recoveries (-1: never recovered within the run).
type RecoveryStats struct {
	AckP50           time.Duration `json:"ack_p50"`
	AckMax           time.Duration `json:"ack_max"`
	DeliveryP50      time.Duration `json:"delivery_p50"`
	DeliveryMax      time.Duration `json:"delivery_max"`
	WorstAckP50      time.Duration `json:"worst_ack_latency_p50"`
	WorstAckMax      time.Duration `json:"worst_ack_latency_max"`
	WorstDeliveryP50 time.Duration `json:"worst_delivery_latency_p50"`
	WorstDeliveryMax time.Duration `json:"worst_delivery_latency_max"`
}

// Run executes one run against a platform of its own.
func Run(t testing.TB, cfg RunConfig) RunResult {
	t.Helper()
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	for _, kind := range append(slices.Clone(cfg.Faults), cfg.Together...) {
		if NeedsLocalStack(kind) {
			// Other test binaries kill brokers too (pkg/producer's durability test,
			// chatctl's live test); two of us at once would take two brokers of three down.
			stacktest.Get(t).ExclusiveFaults(t)
			break
		}
	}
	plat := StartPlatform(t)
	rec := NewRecorder()
	res := RunResult{Name: cfg.Name, Faults: cfg.Faults, Load: cfg.Load}
	pop, err := Setup(ctx, plat.GatewayHTTP, plat.GatewayWS, cfg.Load, rec)
	if err != nil {
		t.Fatalf("setup: %v", err)
	}
	stopUsers := RunUsers(pop)
	defer stopUsers()
	waitFor(t, 60*time.Second, "every user connected", func() bool {
		for _, u := range pop.Online {
			if u.Gateway() == "" {
				return false
			}
		}
		return true
	})

	sampleCtx, stopSampling := context.WithCancel(ctx)
	defer stopSampling()
	go sample(sampleCtx, plat.DB, rec)

	genCtx, stopGen := context.WithCancel(ctx)
	genDone := make(chan int)
	loadStart := time.Now()
	go func() { genDone <- Generate(genCtx, pop, cfg.Load) }()
	sleep(ctx, cfg.Warmup)
	inject := func(kind string) {
		t.Logf("%s: injecting %s at %s", cfg.Name, kind, rec.Now().Round(time.Millisecond))
		if err := plat.Inject(ctx, kind, cfg.Timing, rec, pop.Online); err != nil {
			res.Errors = append(res.Errors, fmt.Sprintf("%s: %v", kind, err))
			t.Errorf("%s: %v", kind, err)
		}
	}
	for range max(cfg.Repeat, 1) {
		for _, kind := range cfg.Faults {
			inject(kind)
			sleep(ctx, cfg.Settle)
		}
	}
	if len(cfg.Together) > 0 {
		var wg sync.WaitGroup
		for _, kind := range cfg.Together {
			wg.Add(1)
			go func() { defer wg.Done(); inject(kind) }()
		}
		wg.Wait()
		sleep(ctx, cfg.Settle)
	}
	stopGen()
	sent := <-genDone
	res.LoadFor = time.Since(loadStart)
	t.Logf("%s: load stopped after %d sends in %s; draining", cfg.Name, sent, res.LoadFor.Round(time.Second))

	// Drain: every send acknowledged, then every client at its rooms' last_seq.
	waitFor(t, cfg.Drain, "every send acknowledged", func() bool {
		for _, u := range pop.Online {
			if u.Pending() > 0 {
				return false
			}
		}
		return true
	})
	caughtUp := func() bool {
		last, err := lastSeqs(ctx, plat.DB)
		if err != nil {
			return false
		}
		for _, u := range pop.Online {
			cur := u.Cursors()
			for _, r := range u.Rooms {
				if cur[r] < last[r] {
					return false
				}
			}
		}
		return true
	}
	// Acknowledged is not stored yet: persistence may still be behind (or stuck, which
	// the checker then reports as lost). Then entries on their way (the outbox, fanout)
	// may land after the last one is stored.
	waitFor(t, cfg.Drain, "every acknowledged send stored", func() bool {
		n, err := storedCount(ctx, plat.DB)
		return err == nil && n >= ackedCount(rec.Ops())
	})
	time.Sleep(2 * time.Second)
	waitFor(t, cfg.Drain, "every client caught up", caughtUp)
	stopUsers()

	ops := rec.Ops()
	counts, problems, err := Check(ctx, plat.DB, ops, pop)
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	res.Counts, res.Problems = counts, problems
	res.Recoveries = Recoveries(ops)
	res.Recovery = summarize(res.Recoveries)
	res.Duration = time.Since(began)
	if dir := historyDir; dir != "" {
		path := fmt.Sprintf("%s/%s-%s-history.jsonl", dir, began.UTC().Format("20060102T150405"), cfg.Name)
		if err := rec.WriteJSONL(path); err != nil {
			t.Logf("history not written: %v", err)
		} else {
			res.History = path
		}
	}
	return res
}

// historyDir, when set (by the test's -chaos.out), keeps each run's full history.
var historyDir string

// SetHistoryDir makes Run write each history under dir.
func SetHistoryDir(dir string) { historyDir = dir }

func summarize(rs []Recovery) RecoveryStats {
	pick := func(f func(Recovery) time.Duration) (time.Duration, time.Duration) {
		var ds []time.Duration
		for _, r := range rs {
			ds = append(ds, f(r))
		}
		if len(ds) == 0 {
			return 0, 0
		}
		slices.Sort(ds)
		if ds[0] < 0 {
			return -1, -1 // some fault was never recovered from
		}
		return ds[(len(ds)-1)/2], ds[len(ds)-1]
	}
	var s RecoveryStats
	s.AckP50, s.AckMax = pick(func(r Recovery) time.Duration { return r.Ack })
	s.DeliveryP50, s.DeliveryMax = pick(func(r Recovery) time.Duration { return r.Delivery })
	s.WorstAckP50, s.WorstAckMax = pick(func(r Recovery) time.Duration { return r.WorstAck })
	s.WorstDeliveryP50, s.WorstDeliveryMax = pick(func(r Recovery) time.Duration { return r.WorstDelivery })
	return s
}

// sample records the database's progress every second until ctx ends. A failed query
// (PostgreSQL restarting) records nothing.
func sample(ctx context.Context, dbURL string, rec *Recorder) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if conn == nil || conn.IsClosed() {
			c, err := pgx.Connect(ctx, dbURL)
			if err != nil {
				continue
			}
			conn = c
		}
		var stored, unrelayed int64
		err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM messages WHERE client_msg_id IS NOT NULL),
			(SELECT count(*) FROM outbox WHERE published_at IS NULL)`).Scan(&stored, &unrelayed)
		if err != nil {
			conn.Close(context.Background())
			conn = nil
			continue
		}
		rec.Add(Op{Kind: OpSample, Seq: stored, Note: fmt.Sprintf("unrelayed=%d", unrelayed)})
	}
}

// ackedCount is the number of distinct sends acknowledged so far.
func ackedCount(ops []Op) int {
	seen := map[string]bool{}
	for _, op := range ops {
		if op.Kind == OpAck {
			seen[op.CMID] = true
		}
	}
	return len(seen)
}

// storedCount is the number of stored messages that carry a client_msg_id (every send
// of the load does; joins do not).
func storedCount(ctx context.Context, dbURL string) (int, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var n int
	err = conn.QueryRow(ctx, `SELECT count(*) FROM messages WHERE client_msg_id IS NOT NULL`).Scan(&n)
	return n, err
}

func lastSeqs(ctx context.Context, dbURL string) (map[string]int64, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	rows, _ := conn.Query(ctx, `SELECT id, last_seq FROM rooms`)
	out := map[string]int64{}
	var id string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&id, &n}, func() error { out[id] = n; return nil })
	return out, err
}

// waitFor polls cond; on timeout it logs and returns, leaving the judgement to the
// checker (a drain that never completes shows up as unacked sends or missing deliveries).
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Logf("gave up waiting for %s after %s", what, d)
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}
