package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/tools/chatbench/internal/report"
)

// TestMain lets the test binary double as the raw WebSocket server that the fanout and
// connections scenarios start as a child process (os.Executable is this binary here).
func TestMain(m *testing.M) {
	if addr := os.Getenv(rawServerEnv); addr != "" {
		if err := serveRaw(addr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	os.Exit(m.Run())
}

// TestSmoke runs every scenario of chatbench end to end for a few seconds each against
// the real platform, started here as processes (persistence, fanout, two gateways) on
// topics and a database of this test's own. It checks that the tool works, not the
// targets: `make bench` measures those.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the local stack")
	}
	env := stacktest.Get(t)
	db := env.NewDatabase(t)
	prefix := env.Topics(t)("")
	brokers := strings.Join(env.Brokers, ",")
	bins := map[string]string{}
	for _, svc := range []string{"persistence", "fanout", "gateway"} {
		bins[svc] = env.Build(t, "./services/"+svc)
	}
	common := []string{"-brokers", brokers, "-topic-prefix", prefix}
	procs := map[string]int{}
	addr := func(name string) string {
		p := stacktest.FreePort(t)
		procs[name] = p
		return fmt.Sprintf("127.0.0.1:%d", p)
	}
	pAddr, fAddr := addr("persistence"), addr("fanout")
	env.Start(t, "persistence", bins["persistence"], nil, append(common, "-database-url", db, "-http-addr", pAddr)...)
	env.Start(t, "fanout", bins["fanout"], nil, append(common, "-http-addr", fAddr, "-start-offset", "first",
		"-group", stacktest.UniqueName("fanout-"))...)
	var gateways []string
	for _, id := range []string{"gw-a", "gw-b"} {
		a := addr(id)
		gateways = append(gateways, "http://"+a)
		env.Start(t, id, bins["gateway"], []string{"RATE_LIMITS=off"}, append(common, "-id", id, "-addr", a, "-database-url", db, "-log-level", "warn")...)
	}
	for _, a := range []string{pAddr, fAddr} {
		stacktest.WaitHTTP(t, "http://"+a+"/readyz", 90*time.Second)
	}
	for _, g := range gateways {
		stacktest.WaitHTTP(t, g+"/readyz", 90*time.Second)
	}
	delete(procs, "gw-a")
	delete(procs, "gw-b")
	// The brokers and PostgreSQL are sampled too (and the brokers' request counters read).
	for i, br := range env.Brokers {
		if _, port, err := net.SplitHostPort(br); err == nil {
			procs[fmt.Sprintf("kafka-%d", i+1)], _ = strconv.Atoi(port)
		}
	}
	if u, err := url.Parse(db); err == nil {
		procs["postgres"], _ = strconv.Atoi(u.Port())
	}

	out := t.TempDir()
	var table bytes.Buffer
	Output = &table
	defer func() { Output = os.Stdout }()
	var logs bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	res, err := Run(ctx, Config{
		Root: env.Root, Brokers: env.Brokers, KafkaSecurity: env.Security, KafkaSecurityConfig: env.KafkaConfig, DatabaseURL: db, TopicPrefix: prefix, Gateways: gateways, Procs: procs,
		BinDir: filepath.Dir(bins["persistence"]), Out: out, Plan: SmokePlan(), Stamp: "smoke",
		Log: slog.New(slog.NewTextHandler(io.MultiWriter(&logs), &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	t.Logf("log:\n%s\ntable:\n%s", logs.String(), table.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range res.Scenarios {
		if sc.Error != "" {
			t.Errorf("scenario %s: %s", sc.Name, sc.Error)
		}
	}
	seen := map[string]bool{}
	for _, f := range res.Figures {
		seen[f.Scenario] = true
	}
	for _, want := range []string{"hop", "ingest-direct", "persistence", "outbox-cleanup", "search", "ingest", "scale-out", "e2e", "e2e stages", "profile", "fanout", "connections"} {
		if !seen[want] {
			t.Errorf("no figure for %s", want)
		}
	}
	back, err := report.Load(filepath.Join(out, "smoke.json"))
	if err != nil {
		t.Fatal(err)
	}
	if back.Git.Commit == "" || back.Machine.Cores == 0 || len(back.Figures) != len(res.Figures) {
		t.Errorf("result file: %+v", back)
	}
	// The brokers' warm-up ran a round and read every broker's JIT compilers and CPU.
	warmup, _ := back.Config["broker_warmup"].(map[string]any)
	rounds, _ := warmup["rounds"].([]any)
	if len(rounds) == 0 {
		t.Errorf("broker warm-up: no round: %v", warmup)
	} else {
		r, _ := rounds[0].(map[string]any)
		jit, _ := r["jit_cpu_s"].(map[string]any)
		cpu, _ := r["broker_cpu_s"].(map[string]any)
		for i := range env.Brokers {
			name := fmt.Sprintf("kafka-%d", i+1)
			if _, ok := jit[name].(float64); !ok {
				t.Errorf("broker warm-up: no JIT CPU for %s: %v", name, r)
			}
			if c, _ := cpu[name].(float64); c <= 0 {
				t.Errorf("broker warm-up: no CPU for %s: %v", name, r)
			}
		}
		if a, _ := r["achieved_per_s"].(float64); a <= 0 {
			t.Errorf("broker warm-up: no load offered: %v", r)
		}
	}
	// The profile kept a CPU profile of every Go service and of chatbench, and costs per
	// message of the processes it sampled.
	for _, svc := range []string{"gateway-a", "gateway-b", "persistence", "fanout", "chatbench"} {
		if st, err := os.Stat(filepath.Join(out, "smoke", svc+".pprof")); err != nil || st.Size() == 0 {
			t.Errorf("profile of %s: %v", svc, err)
		}
	}
	for _, sc := range back.Scenarios {
		if sc.Name != "profile" {
			continue
		}
		platform, _ := sc.Data["platform"].(map[string]any)
		cost, _ := platform["cpu_us_per_msg"].(map[string]any)
		for _, p := range []string{"gateway-a", "gateway-b", "persistence", "fanout", "kafka-1", "postgres", "chatbench"} {
			if v, ok := cost[p].(float64); !ok || v <= 0 {
				t.Errorf("profile: no CPU per message for %s: %v", p, cost)
			}
		}
		// Records appended to chat.submitted, from the brokers' counters: one per message,
		// unless a broker restarted by another test reset the counter meanwhile.
		key := "topic/MessagesInPerSec/" + prefix + "chat.submitted"
		perMsg, _ := platform["kafka_per_msg"].(map[string]any)
		reset, _ := platform["kafka_reset"].([]any)
		if v, _ := perMsg[key].(float64); v < 0.9 && !slices.Contains(reset, any(key)) {
			t.Errorf("profile: records appended to chat.submitted per message = %v, want about 1 (kafka error: %v)", v, platform["kafka_error"])
		}
	}
	// Each hop and e2e step ran its lead-in first and left it out of the latencies.
	plan := SmokePlan()
	for _, sc := range back.Scenarios {
		if sc.Name != "hop" && sc.Name != "e2e" {
			continue
		}
		for _, se := range sc.Series {
			for _, st := range se.Steps {
				want := int64(st.Rate * plan.LeadIn.Seconds())
				if st.Lost == 0 && st.Latency.LeadIn != want {
					t.Errorf("%s @ %v/s: %d sends left out as lead-in, want %d", se.Name, st.Rate, st.Latency.LeadIn, want)
				}
			}
		}
	}
	for _, f := range []string{"smoke-latency.png", "smoke-rate.png", "latest.md"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	if !strings.Contains(table.String(), "ratio") {
		t.Error("no table printed")
	}
}
