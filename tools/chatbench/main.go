// Command chatbench measures kchat against raw Kafka and PostgreSQL baselines measured in
// the same run, open loop: every send has an intended time fixed in advance and latency is
// measured from it (HdrHistogram), so a stall shows as latency, not as a lower rate.
// Each run writes bench/results/<stamp>.json (config, git commit, machine facts, every
// figure with its baseline, ratio and target), prints the table and draws PNG plots.
//
//	chatbench                 full run against the local platform (make bench)
//	chatbench -smoke          a few seconds of everything (make bench-smoke runs it via go test)
//	chatbench -only e2e,hop   a subset of scenarios
//
// Traffic goes only to the addresses given (127.0.0.1 by default); every run is bounded
// in count and time and stops by itself.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/kchat/kchat/pkg/kafkasec"
	"github.com/kchat/kchat/pkg/service"
	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/tools/chatbench/internal/report"
)

func main() {
	if addr := os.Getenv(rawServerEnv); addr != "" {
		if err := serveRaw(addr); err != nil {
			fmt.Fprintln(os.Stderr, "chatbench raw server:", err)
			os.Exit(1)
		}
		return
	}
	var (
		smoke    = flag.Bool("smoke", false, "a few-second run of every scenario (tiny rates and counts)")
		only     = flag.String("only", "", "comma-separated scenarios to run (default all): "+strings.Join(allScenarios, ","))
		out      = flag.String("out", "", "results directory (default <repo>/bench/results)")
		brokers  = flag.String("brokers", service.Env("KAFKA_BROKERS", service.DefaultBrokers), "Kafka brokers (KAFKA_BROKERS)")
		dbURL    = flag.String("database-url", service.Env("DATABASE_URL", service.DefaultDatabaseURL), "the platform's PostgreSQL database (DATABASE_URL)")
		prefix   = flag.String("topic-prefix", service.Env("TOPIC_PREFIX", ""), "the platform's topic prefix (TOPIC_PREFIX)")
		gateways = flag.String("gateways", "http://127.0.0.1:8081,http://127.0.0.1:8082", "gateway base URLs: A first, then B")
		procs    = flag.String("procs", "persistence=8090,fanout=8091,notification=8092,kafka-1=9092,kafka-2=9093,kafka-3=9094,postgres=5433",
			"processes whose CPU is sampled during each run, as name=listening-port")
		bin        = flag.String("bin", "", "directory with the persistence binary (default <repo>/bin)")
		batchSize  = flag.Int("persistence-batch-size", 500, "also run the persistence scenario with this BATCH_SIZE (0: only the service's default)")
		cleanRows  = flag.Int("cleanup-rows", 0, "outbox-cleanup: old outbox rows and inbox entries each to clean (default: the plan's)")
		searchMsgs = flag.Int("search-messages", 0, "search: stored messages to search (default: the plan's)")
		verbose    = flag.Bool("v", false, "debug logging")
		replot     = flag.String("replot", "", "only redraw the plots and table of this result JSON (into its directory) and exit")
		quiet      = flag.Duration("wait-quiet", 3*time.Minute, "before the first scenario, wait up to this long for a quiet machine (0: don't)")
		quietEach  = flag.Duration("wait-quiet-each", 90*time.Second, "before each later scenario, wait up to this long for a quiet machine (0: don't)")
		quietLoad  = flag.Float64("quiet-load", 0, "a quiet machine has a 1-minute load average below this (default: the number of cores)")
		leadIn     = flag.Duration("lead-in", 0, "hop and e2e: how long each rate runs before its latencies count; what is sent meanwhile still counts as delivered or lost (default: the plan's)")
		warmMax    = flag.Duration("warm-brokers", -1, "before the first scenario, offer a raw hop to local brokers until their JIT compilers are quiet, for at most this long (0: don't; default: the plan's)")
	)
	hopSched, e2eSched := newScheduleFlags(flag.CommandLine, "hop"), newScheduleFlags(flag.CommandLine, "e2e")
	kafkaSec := service.KafkaSecurityFlags()
	flag.Parse()
	// A malformed or inconsistent security setting stops the run here, naming the variable.
	secCfg, err := kafkaSec.Config()
	var sec kafkasec.Security
	if err == nil {
		sec, err = secCfg.Security()
	}
	if err == nil {
		_, err = franzSecurity(secCfg)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatbench:", err)
		os.Exit(2)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	root, err := stacktest.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatbench:", err)
		os.Exit(2)
	}
	cfg := Config{
		Root: root, Brokers: service.SplitList(*brokers), DatabaseURL: *dbURL, TopicPrefix: *prefix,
		Gateways: service.SplitList(*gateways), Procs: parseProcs(*procs), BinDir: *bin, Out: *out,
		Only: service.SplitList(*only), Log: log, ExtraBatchSize: *batchSize, WaitQuiet: *quiet, WaitQuietEach: *quietEach,
		QuietLoad: *quietLoad, KafkaSecurity: sec, KafkaSecurityConfig: secCfg,
	}
	if *smoke {
		cfg.Plan = SmokePlan()
		cfg.WaitQuiet, cfg.WaitQuietEach = 0, 0
		cfg.ExtraBatchSize = 0
	} else {
		cfg.Plan = FullPlan()
	}
	if *warmMax >= 0 {
		cfg.Plan.WarmMax = *warmMax
	}
	if *cleanRows > 0 {
		cfg.Plan.CleanupRows = *cleanRows
	}
	if *searchMsgs > 0 {
		cfg.Plan.SearchMessages = *searchMsgs
	}
	if leadInGiven(flag.CommandLine) {
		if *leadIn < 0 {
			fmt.Fprintln(os.Stderr, "chatbench: -lead-in must not be negative")
			os.Exit(2)
		}
		cfg.Plan.LeadIn = *leadIn
	}
	if _, err := hopSched.apply(&cfg.Plan.HopRates, &cfg.Plan.HopDur); err != nil {
		fmt.Fprintln(os.Stderr, "chatbench:", err)
		os.Exit(2)
	}
	if given, err := e2eSched.apply(&cfg.Plan.E2ERates, &cfg.Plan.E2EDur); err != nil {
		fmt.Fprintln(os.Stderr, "chatbench:", err)
		os.Exit(2)
	} else if given {
		cfg.Plan.ScaleE2ERate = slices.Max(cfg.Plan.E2ERates) // the one-gateway step runs at a rate of the series
	}
	if *replot != "" {
		if err := replotResult(*replot); err != nil {
			fmt.Fprintln(os.Stderr, "chatbench:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := service.SignalContext()
	defer stop()
	res, err := Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatbench:", err)
		os.Exit(1)
	}
	if failed(res) {
		os.Exit(1)
	}
}

func parseProcs(s string) map[string]int {
	out := map[string]int{}
	for _, kv := range service.SplitList(s) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		var port int
		if _, err := fmt.Sscan(v, &port); err == nil {
			out[k] = port
		}
	}
	return out
}

// Config is what a run measures and where.
type Config struct {
	Root    string
	Brokers []string
	// KafkaSecurity secures chatbench's kafka-go clients (TLS, SASL; the zero value is
	// PLAINTEXT), KafkaSecurityConfig the same settings for its franz-go clients. From the
	// kafkasec flags and variables (KAFKA_TLS_CA_FILE, KAFKA_SASL_*), as every kchat
	// program; the persistence it starts inherits the variables, not the flags.
	KafkaSecurity       kafkasec.Security
	KafkaSecurityConfig kafkasec.Config
	DatabaseURL         string
	TopicPrefix         string
	// Gateways are base URLs (http://host:port): A, then B.
	Gateways []string
	// Procs are processes sampled for CPU, by name and listening port; the gateways are
	// added as gateway-a/gateway-b.
	Procs          map[string]int
	BinDir         string
	Out            string
	Only           []string
	Plan           Plan
	Log            *slog.Logger
	ExtraBatchSize int
	// WaitQuiet bounds the wait for a quiet machine before the first scenario,
	// WaitQuietEach before each later one; QuietLoad is the 1-minute load average below
	// which the machine counts as quiet (0: the number of cores).
	WaitQuiet, WaitQuietEach time.Duration
	QuietLoad                float64
	// Stamp names the result files (default: the start time).
	Stamp string
}

// Plan is how much load each scenario offers.
type Plan struct {
	Mode string
	// Ingest rate search: rates tried in order until the first failing step.
	IngestRates, DirectRates []float64
	StepDur                  time.Duration
	Senders, Rooms           int
	// Direct ingest into Kafka (the baseline of the gateways' ingest): seconds per step.
	DirectStepDur time.Duration
	// Raw hop: rates, seconds per rate (after the topic's warm-up).
	HopRates []float64
	HopDur   time.Duration
	// LeadIn runs before each hop and e2e step's measured part: its sends are delivered and
	// checked for loss, but their latencies are left out (harness.Recorder.MeasureFrom).
	LeadIn time.Duration
	// Fixed-rate e2e runs.
	E2ERates     []float64
	E2EDur       time.Duration
	ScaleE2ERate float64
	// Profile: the per-message cost at one rate through two gateways and on the raw hop.
	ProfileRate                  float64
	ProfileDur                   time.Duration
	ProfileSenders, ProfileRooms int
	// Persistence: events pre-filled.
	PersistN, PersistRooms int
	// Outbox cleanup: backlog rows (outbox and inbox each), relayed rows/s, cleanup phase.
	CleanupRows int
	CleanupRate float64
	CleanupDur  time.Duration
	// Search: stored messages, queries measured per query kind.
	SearchMessages, SearchQueries int
	// Fanout.
	FanMembers, FanSenders int
	FanRates               []float64
	FanDur                 time.Duration
	// FanCentrifugo: also run the room on Centrifugo (built from deploy/centrifugo on
	// first use), the reference, in the same run. The smoke leaves it out: the
	// first build takes minutes.
	FanCentrifugo bool
	// Broker warm-up before the first scenario: a raw hop at WarmRate in rounds of
	// WarmRound, for at most WarmMax (0: none), until the brokers' JIT compilers are quiet.
	WarmRate  float64
	WarmRound time.Duration
	WarmMax   time.Duration
	// Connections.
	Conns int
	// Drain is the longest wait for the platform to finish a backlog between runs.
	Drain time.Duration
	// P99Limit is the ingest latency goal in ms.
	P99Limit  float64
	TextBytes int
}

// FullPlan is `make bench`: about ten minutes on a 2-core machine.
func FullPlan() Plan {
	return Plan{
		Mode:        "full",
		IngestRates: []float64{250, 500, 1000, 1500, 2000, 3000, 4000, 6000, 8000, 12000},
		DirectRates: []float64{250, 500, 1000, 2000, 4000, 8000, 12000, 16000, 24000, 32000, 48000},
		StepDur:     3 * time.Second, Senders: 200, Rooms: 50, DirectStepDur: 10 * time.Second,
		// The e2e steps last as long as the hop's they are compared with: a p99 over a shorter
		// window is a different, noisier statistic (README, eleventh round).
		// A 10 s step's p99 was mostly its first two seconds, for two of the three raw
		// clients and for the platform (README, eleventh round): each step runs 3 s before
		// it counts.
		HopRates: []float64{500, 2000, 5000}, HopDur: 10 * time.Second, LeadIn: 3 * time.Second,
		E2ERates: []float64{500, 2000, 5000}, E2EDur: 10 * time.Second, ScaleE2ERate: 2000,
		ProfileRate: 1000, ProfileDur: 20 * time.Second, ProfileSenders: 20, ProfileRooms: 4,
		PersistN: 50_000, PersistRooms: 100, CleanupRows: 800_000, CleanupRate: 200, CleanupDur: 20 * time.Second,
		SearchMessages: 1_000_000, SearchQueries: 200,
		FanMembers: 1000, FanSenders: 8, FanRates: []float64{20, 100, 400}, FanDur: 5 * time.Second, FanCentrifugo: true,
		WarmRate: 2000, WarmRound: 10 * time.Second, WarmMax: 5 * time.Minute,
		Conns: 10_000, Drain: 30 * time.Second, P99Limit: 50, TextBytes: 100,
	}
}

// SmokePlan exercises every code path in a few seconds per scenario.
func SmokePlan() Plan {
	return Plan{
		Mode:        "smoke",
		IngestRates: []float64{50, 100}, DirectRates: []float64{100, 200},
		StepDur: time.Second, Senders: 4, Rooms: 2, DirectStepDur: time.Second,
		HopRates: []float64{50}, HopDur: 2 * time.Second, LeadIn: 500 * time.Millisecond,
		E2ERates: []float64{50}, E2EDur: time.Second, ScaleE2ERate: 50,
		ProfileRate: 100, ProfileDur: 2 * time.Second, ProfileSenders: 4, ProfileRooms: 2,
		PersistN: 500, PersistRooms: 5, CleanupRows: 5000, CleanupRate: 100, CleanupDur: 2 * time.Second,
		SearchMessages: 20_000, SearchQueries: 20,
		FanMembers: 20, FanSenders: 2, FanRates: []float64{10}, FanDur: time.Second,
		WarmRate: 50, WarmRound: time.Second, WarmMax: time.Second,
		Conns: 100, Drain: 20 * time.Second, P99Limit: 1000, TextBytes: 100,
	}
}

var allScenarios = []string{"hop", "ingest-direct", "persistence", "outbox-cleanup", "search", "ingest", "e2e", "profile", "fanout", "connections"}

func (c Config) wants(name string) bool {
	if len(c.Only) == 0 {
		return true
	}
	for _, o := range c.Only {
		if o == name {
			return true
		}
	}
	return false
}

// adminURL is the maintenance database of the server holding dbURL (for CREATE DATABASE).
func adminURL(dbURL string) string { return withDatabase(dbURL, "postgres") }

// withDatabase returns dbURL naming database name instead.
func withDatabase(dbURL, name string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		return dbURL
	}
	u.Path = "/" + name
	return u.String()
}

// wsURL turns a gateway base URL into its WebSocket endpoint.
func wsURL(base string) string {
	return strings.Replace(strings.TrimSuffix(base, "/"), "http", "ws", 1) + "/ws"
}

// raiseFileLimit lifts RLIMIT_NOFILE to its hard limit (10,000 connections need it).
func raiseFileLimit() uint64 {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0
	}
	l.Cur = l.Max
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l)
	return l.Cur
}

func resultsDir(c Config) string {
	if c.Out != "" {
		return c.Out
	}
	return filepath.Join(c.Root, "bench", "results")
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// replotResult redraws a stored result's plots and prints its table.
func replotResult(path string) error {
	r, err := report.Load(path)
	if err != nil {
		return err
	}
	stamp := strings.TrimSuffix(filepath.Base(path), ".json")
	if stamp == "latest" {
		stamp = r.StartedAt.UTC().Format("20060102-150405")
	}
	files, err := r.Plots(filepath.Dir(path), stamp)
	if err != nil {
		return err
	}
	fmt.Printf("chatbench %s — %s\n\n", r.Mode, r.MachineLine())
	report.PrintTable(os.Stdout, r.Figures)
	for _, f := range files {
		fmt.Println("plot:", f)
	}
	return nil
}
