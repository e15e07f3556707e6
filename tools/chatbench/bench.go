package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/leaders"
	"github.com/kchat/kchat/tools/chatbench/internal/harness"
	"github.com/kchat/kchat/tools/chatbench/internal/procstat"
	"github.com/kchat/kchat/tools/chatbench/internal/report"
)

// Bench is one run in progress.
type Bench struct {
	cfg   Config
	plan  Plan
	log   *slog.Logger
	res   *report.Result
	run   string // short id, part of every room, topic and group name of this run
	db    *pgxpool.Pool
	pids  map[string]int
	out   io.Writer
	muRes sync.Mutex

	// Baselines that later scenarios compare with.
	hop          map[float64]harness.Summary // best raw hop latency by rate
	hopName      map[float64]string          // which client gave it
	directMax    float64                     // best client's direct ingest max rate
	directName   string                      // which client that was
	stamp        string                      // names this run's result files
	e2eByRate    map[float64]harness.Summary
	ingestTwoMax float64
}

// Output is where the table goes (stdout unless a test sets it).
var Output io.Writer = os.Stdout

// Run runs the scenarios of cfg and writes the results.
func Run(ctx context.Context, cfg Config) (*report.Result, error) {
	if cfg.BinDir == "" {
		cfg.BinDir = cfg.Root + "/bin"
	}
	if len(cfg.Gateways) < 2 {
		return nil, errors.New("two gateway URLs are needed (-gateways A,B)")
	}
	for _, g := range cfg.Gateways {
		if err := localOnly(g); err != nil {
			return nil, err
		}
	}
	for _, b := range cfg.Brokers {
		if err := localOnly("tcp://" + b); err != nil {
			return nil, err
		}
	}
	if err := localOnly(cfg.DatabaseURL); err != nil {
		return nil, err
	}
	start := time.Now()
	stamp := cfg.Stamp
	if stamp == "" {
		stamp = start.UTC().Format("20060102-150405")
	}
	b := &Bench{
		cfg: cfg, plan: cfg.Plan, log: cfg.Log, run: "b" + randHex(3), out: Output,
		hop: map[float64]harness.Summary{}, hopName: map[float64]string{}, e2eByRate: map[float64]harness.Summary{},
		stamp: stamp,
	}
	b.res = &report.Result{
		Tool: "chatbench", Mode: cfg.Plan.Mode, StartedAt: start, Git: report.GitInfo(cfg.Root), Machine: report.MachineInfo(),
		Config: map[string]any{
			"run_id": b.run, "brokers": cfg.Brokers, "gateways": cfg.Gateways, "topic_prefix": cfg.TopicPrefix,
			"plan": cfg.Plan, "open_file_limit": raiseFileLimit(),
		},
	}
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		return nil, fmt.Errorf("database %s: %w", redact(cfg.DatabaseURL), err)
	}
	b.db = pool
	b.res.Config["quiet_load"] = b.quietLoad()
	b.res.Config["leaders_moved_to_preferred"] = b.spreadLeaders(ctx)
	// Warm first, then wait for quiet: the warm-up's own load decays in that wait.
	b.res.Config["broker_warmup"] = b.warmBrokers(ctx, cfg.Plan.WarmMax)
	b.res.Config["waited_for_quiet_s"] = b.waitQuiet(ctx, cfg.WaitQuiet)
	b.res.Config["loadavg_start"] = loadAvg()
	b.pids = b.resolvePIDs()
	b.res.Config["pids"] = b.pids
	b.res.Config["cpus_allowed"] = allowedCPUs(b.pids)
	b.log.Info("chatbench starting", "mode", cfg.Plan.Mode, "run", b.run, "pids", b.pids)

	steps := []struct {
		name string
		fn   func(context.Context, *report.Scenario) error
	}{
		{"hop", b.scenarioHop},
		{"ingest-direct", b.scenarioIngestDirect},
		{"persistence", b.scenarioPersistence},
		{"outbox-cleanup", b.scenarioOutboxCleanup},
		{"search", b.scenarioSearch},
		{"ingest", b.scenarioIngest},
		{"e2e", b.scenarioE2E},
		{"profile", b.scenarioProfile},
		{"fanout", b.scenarioFanout},
		{"connections", b.scenarioConnections},
	}
	platform := map[string]bool{"ingest": true, "e2e": true, "profile": true, "fanout": true, "connections": true}
	first := true
	for _, st := range steps {
		if !cfg.wants(st.name) || ctx.Err() != nil {
			continue
		}
		sc := b.res.Scenario(st.name)
		t0 := time.Now()
		if platform[st.name] {
			if err := b.platformReady(ctx); err != nil {
				sc.Error = err.Error()
				b.log.Error("scenario skipped", "name", st.name, "error", err)
				continue
			}
		}
		if !b.waitBrokers(ctx, 2*time.Minute) {
			sc.Warnings = append(sc.Warnings, "not every broker was up when the scenario started")
		}
		if !first {
			sc.Data["waited_for_quiet_s"] = b.waitQuiet(ctx, cfg.WaitQuietEach)
		}
		first = false
		b.log.Info("scenario", "name", st.name, "loadavg", loadAvg())
		sc.Data["loadavg_before"] = loadAvg()
		mon := b.monitor()
		err := st.fn(ctx, sc)
		sc.Data["during"] = mon.stop()
		sc.Data["loadavg_after"] = loadAvg()
		sc.Seconds = harness.Round(time.Since(t0).Seconds())
		if err != nil {
			sc.Error = err.Error()
			b.log.Error("scenario failed", "name", st.name, "error", err)
		}
	}
	b.res.FinishedAt = time.Now()
	b.res.DurationS = harness.Round(b.res.FinishedAt.Sub(start).Seconds())

	dir := resultsDir(cfg)
	path, err := b.res.Write(dir, stamp)
	if err != nil {
		return b.res, err
	}
	plots, perr := b.res.Plots(dir, stamp)
	if perr != nil {
		b.log.Warn("plots", "error", perr)
	}
	fmt.Fprintf(b.out, "\nchatbench %s — %s\n\n", b.res.Mode, b.res.MachineLine())
	report.PrintTable(b.out, b.res.Figures)
	for _, sc := range b.res.Scenarios {
		if sc.Error != "" {
			fmt.Fprintf(b.out, "\nscenario %s FAILED: %s\n", sc.Name, sc.Error)
		}
		for _, w := range sc.Warnings {
			fmt.Fprintf(b.out, "scenario %s: warning: %s\n", sc.Name, w)
		}
	}
	fmt.Fprintf(b.out, "\nresults: %s\n", path)
	for _, p := range plots {
		fmt.Fprintf(b.out, "plot:    %s\n", p)
	}
	if err := os.WriteFile(dir+"/latest.md", []byte(report.Markdown(b.res.Figures)), 0o644); err != nil {
		return b.res, err
	}
	return b.res, nil
}

// waitBrokers waits until every configured broker is registered in the cluster: tests
// that kill and restart brokers share this stack.
func (b *Bench) waitBrokers(ctx context.Context, max time.Duration) bool {
	return waitFor(ctx, max, func() bool {
		mctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		md, err := b.kafkaClient().Metadata(mctx, &kafka.MetadataRequest{Topics: []string{}})
		return err == nil && len(md.Brokers) >= len(b.cfg.Brokers)
	})
}

// spreadLeaders moves every partition's leadership to its preferred replica before the
// run and returns how many moved. A broker restarted shortly before (by make dev, a test or
// the chaos suite) leads nothing until Kafka's next imbalance check, up to 5 minutes
// later, and a run in between measured the other brokers doing its share.
func (b *Bench) spreadLeaders(ctx context.Context) int {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	moved, left, err := leaders.Balance(ctx, b.kafkaClient(), nil, 250*time.Millisecond)
	if err != nil {
		b.log.Warn("partition leaders are not all on their preferred brokers", "moved", moved, "left", len(left), "error", err)
	}
	return moved
}

// platformReady checks that the gateways answer /readyz and that persistence and fanout
// (when their ports are known) answer /healthz, so that a platform scenario fails at once
// with the reason instead of after its timeouts.
func (b *Bench) platformReady(ctx context.Context) error {
	urls := []string{}
	for _, g := range b.cfg.Gateways[:2] {
		urls = append(urls, strings.TrimSuffix(g, "/")+"/readyz")
	}
	for _, name := range []string{"persistence", "fanout"} {
		if port, ok := b.cfg.Procs[name]; ok {
			urls = append(urls, fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
		}
	}
	c := http.Client{Timeout: 3 * time.Second}
	for _, u := range urls {
		ok := waitFor(ctx, 30*time.Second, func() bool {
			res, err := c.Get(u)
			if err != nil {
				return false
			}
			res.Body.Close()
			return res.StatusCode == http.StatusOK
		})
		if !ok {
			return fmt.Errorf("%s does not answer 200: is the platform running (make bench starts it)?", u)
		}
	}
	return nil
}

// loadAvg is the 1-minute load average: on a shared machine, other work running during
// a scenario is part of its context.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// Failed reports whether any scenario failed to run (a missed target is not a failure).
func failed(r *report.Result) bool {
	for _, s := range r.Scenarios {
		if s.Error != "" {
			return true
		}
	}
	return false
}

func (b *Bench) add(fs ...harness.Figure) {
	b.muRes.Lock()
	defer b.muRes.Unlock()
	b.res.Add(fs...)
}

// resolvePIDs finds the processes to sample by their listening ports.
func (b *Bench) resolvePIDs() map[string]int {
	pids := map[string]int{}
	for i, g := range b.cfg.Gateways[:2] {
		if p := portOf(g); p > 0 {
			pids["gateway-"+string(rune('a'+i))] = procstat.ListenerPID(p)
		}
	}
	for name, port := range b.cfg.Procs {
		if pid := procstat.ListenerPID(port); pid > 0 {
			pids[name] = pid
		}
	}
	pids["chatbench"] = os.Getpid()
	return pids
}

// allowedCPUs records where each process may run: whether the stack was placed one CPU per
// process changes every figure of the run (localstack's KCHAT_PIN_CPUS).
func allowedCPUs(pids map[string]int) map[string]string {
	out := map[string]string{}
	for name, pid := range pids {
		if cpus, err := procstat.AllowedCPUs(pid); err == nil {
			out[name] = cpus
		}
	}
	return out
}

// lateStartLimit is how late a step's first send may start before the run says so: the
// lateness is the load generator's and is charged to the latency of the sends behind it.
const lateStartLimit = 5 * time.Millisecond

// warnLateStart logs a step whose first send started late.
func (b *Bench) warnLateStart(name string, rate float64, st harness.RunStats) {
	if st.FirstLate > lateStartLimit {
		b.log.Warn("the load generator started a step late", "series", name, "rate", rate, "late", st.FirstLate.Round(time.Millisecond))
	}
}

// sampler samples the platform's processes, looked up again each time: on a shared
// machine a broker may have been restarted since the last run.
func (b *Bench) sampler() *procstat.Sampler {
	b.pids = b.resolvePIDs()
	return procstat.NewSampler(b.pids, "postgres")
}

// quietLoad is the 1-minute load average below which the machine counts as quiet.
func (b *Bench) quietLoad() float64 {
	if b.cfg.QuietLoad > 0 {
		return b.cfg.QuietLoad
	}
	return float64(b.res.Machine.Cores)
}

// waitQuiet waits up to max for the 1-minute load average to drop below quietLoad (other
// people's builds and tests share this machine, and the previous scenario's load decays
// over a minute or two), and returns how long it waited in seconds.
func (b *Bench) waitQuiet(ctx context.Context, max time.Duration) float64 {
	limit := b.quietLoad()
	t0 := time.Now()
	for loadAvg() >= limit && time.Since(t0) < max && ctx.Err() == nil {
		b.log.Info("waiting for a quieter machine", "loadavg", loadAvg(), "below", limit, "waited", time.Since(t0).Round(time.Second))
		sleepCtx(ctx, min(5*time.Second, max-time.Since(t0)))
	}
	return harness.Round(time.Since(t0).Seconds())
}

// scenarioMonitor records, while a scenario runs, the CPU of every sampled process, of the
// whole machine (and so of everything else on it) and the 1-minute load average.
type scenarioMonitor struct {
	smp  *procstat.Sampler
	done chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	load []float64
}

func (b *Bench) monitor() *scenarioMonitor {
	m := &scenarioMonitor{smp: procstat.NewSampler(b.resolvePIDs(), "postgres"), done: make(chan struct{})}
	m.smp.Machine = true
	m.smp.Start()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			m.mu.Lock()
			m.load = append(m.load, loadAvg())
			m.mu.Unlock()
			select {
			case <-m.done:
				return
			case <-t.C:
			}
		}
	}()
	return m
}

// stop ends the window: per-process CPU (cores on average and CPU seconds, "machine" is
// every CPU of the machine, "other" what the sampled processes do not account for) and
// the load average's minimum, mean and maximum over 2-second samples.
func (m *scenarioMonitor) stop() map[string]any {
	close(m.done)
	m.wg.Wait()
	u := m.smp.Stop()
	m.mu.Lock()
	defer m.mu.Unlock()
	lo, hi, sum := 0.0, 0.0, 0.0
	for i, v := range m.load {
		if i == 0 || v < lo {
			lo = v
		}
		hi = max(hi, v)
		sum += v
	}
	mean := 0.0
	if len(m.load) > 0 {
		mean = sum / float64(len(m.load))
	}
	return map[string]any{"cpu_cores": roundMap(u.Cores), "cpu_seconds": roundMap(u.CPUSeconds), "wall_s": harness.Round(u.WallS),
		"loadavg": map[string]float64{"min": lo, "mean": harness.Round(mean), "max": hi}}
}

func portOf(rawURL string) int {
	u, err := url.Parse(rawURL)
	if err != nil {
		return 0
	}
	p, _ := strconv.Atoi(u.Port())
	return p
}

// localOnly refuses any target that is not on this machine's loopback.
func localOnly(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("bad address %q: %w", raw, err)
	}
	h := u.Hostname()
	if h == "localhost" || h == "::1" || strings.HasPrefix(h, "127.") || h == "" {
		return nil
	}
	return fmt.Errorf("refusing non-loopback target %q: chatbench sends traffic only to 127.0.0.0/8", h)
}

func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "?"
	}
	return p.Redacted()
}

func randHex(n int) string {
	buf := make([]byte, n)
	_, _ = rand.Read(buf)
	return hex.EncodeToString(buf)
}

// roundMap rounds the values of a CPU usage map for the JSON.
func roundMap(m map[string]float64) map[string]float64 {
	out := make(map[string]float64, len(m))
	for k, v := range m {
		out[k] = harness.Round(v)
	}
	return out
}

// asyncOps runs an open-loop schedule whose operations complete asynchronously: fire
// starts operation i and calls done(err) when it completes (from any goroutine).
// Latency is recorded from the intended time. After the schedule, it waits up to grace
// for operations in flight; those still open then are lost.
func asyncOps(ctx context.Context, sched harness.Schedule, grace time.Duration,
	start func(i int, intended time.Time, done func(error))) harness.Step {
	rec := harness.NewRecorder()
	var wg sync.WaitGroup
	var mu sync.Mutex
	completed := 0
	sched.Run(ctx, func(i int, intended time.Time) {
		wg.Add(1)
		start(i, intended, func(err error) {
			now := time.Now()
			if err != nil {
				rec.Error()
			} else {
				rec.Record(intended, now)
			}
			mu.Lock()
			completed++
			mu.Unlock()
			wg.Done()
		})
	})
	waited := make(chan struct{})
	go func() { wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(grace):
	case <-ctx.Done():
	}
	mu.Lock()
	lost := int64(sched.Count - completed)
	mu.Unlock()
	return harness.Step{Rate: sched.Rate, Throughput: harness.Round(rec.Throughput()), Latency: rec.Summary(), Lost: lost}
}

// goOps is asyncOps for blocking operations: each runs on its own goroutine, at most
// limit at once (beyond that the scheduler waits, and the wait counts as latency).
func goOps(ctx context.Context, sched harness.Schedule, grace time.Duration, limit int, op func(i int) error) harness.Step {
	sem := make(chan struct{}, limit)
	return asyncOps(ctx, sched, grace, func(i int, _ time.Time, done func(error)) {
		sem <- struct{}{}
		go func() {
			err := op(i)
			<-sem
			done(err)
		}()
	})
}

// searchNote explains a rate search's result: the step that failed and why.
func searchNote(se report.Series, limitMs float64) string {
	for _, st := range se.Steps {
		if !st.Passes(limitMs) {
			return fmt.Sprintf("first failing step %.0f/s: p99 %.0f ms, errors %d, lost %d", st.Rate, st.Latency.P99Ms, st.Latency.Errors, st.Lost)
		}
	}
	if len(se.Steps) == 0 {
		return "no step ran"
	}
	return "every rate tried passed"
}

func logStep(log *slog.Logger, what string, st harness.Step) {
	log.Info(what, "offered", st.Rate, "achieved", st.Throughput, "p50_ms", st.Latency.P50Ms, "p99_ms", st.Latency.P99Ms,
		"p999_ms", st.Latency.P999Ms, "max_ms", st.Latency.MaxMs, "errors", st.Latency.Errors, "lost", st.Lost)
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitFor polls cond every 20 ms until it holds (true) or max has passed (false).
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
