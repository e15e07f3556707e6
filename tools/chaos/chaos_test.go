package chaos_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/tools/chaos"
)

var (
	full   = flag.Bool("chaos.full", false, "run the full suite (make chaos): every fault in its own run, then a mixed run")
	faults = flag.String("chaos.faults", "", "comma-separated fault kinds for the full suite (default: all)")
	out    = flag.String("chaos.out", "", "directory for the results JSON and the histories (make chaos: chaos/results)")
	level  = flag.String("chaos.log-level", "warn", "the services' -log-level")
	rate   = flag.Float64("chaos.rate", 20, "sends per second of the full suite's load, all users together")
	async  = flag.Bool("chaos.async-commit", false, "set synchronous_commit=off for the platform's database (shows what a PostgreSQL crash then loses)")
)

// TestChaos is the fault suite. By default it is the short version that `make test`
// runs (well under two minutes): a few users, the faults that need no shared broker or
// database restart, once each. With -chaos.full (`make chaos`) every fault gets a run of
// its own with two injections, then one run mixes them all.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole platform")
	}
	if *out != "" {
		if err := os.MkdirAll(*out, 0o755); err != nil {
			t.Fatal(err)
		}
		chaos.SetHistoryDir(*out)
	}
	chaos.AsyncCommit = *async
	chaos.LogLevel = *level
	report := chaos.Report{Started: time.Now().UTC(), Race: raceEnabled}
	report.Host, _ = os.Hostname()
	defer func() {
		report.Duration = time.Since(report.Started).Round(time.Second).String()
		t.Logf("fault table:\n%s", report.Table())
		if *out == "" {
			return
		}
		name := "short-" + report.Started.Format("20060102T150405")
		if *full {
			name = "full-" + report.Started.Format("20060102T150405")
		}
		path, err := report.WriteJSON(*out, name)
		if err != nil {
			t.Errorf("results: %v", err)
			return
		}
		_ = os.WriteFile(filepath.Join(*out, strings.SplitN(name, "-", 2)[0]+"-latest.md"), []byte(report.Table()), 0o644)
		t.Logf("results written to %s", path)
	}()

	env := stacktest.Get(t)
	if !*full {
		res := chaos.Run(t, chaos.RunConfig{
			Name:   "short: persistence, gateway, fanout",
			Faults: []string{chaos.FaultPersistence, chaos.FaultGateway, chaos.FaultFanout},
			Repeat: 1,
			Load:   chaos.LoadConfig{Users: 4, Offline: 1, Rooms: 2, Rate: 8, DMShare: 0.34, MentionEvery: 4},
			Timing: chaos.Timing{Hold: 3 * time.Second, Pause: 12 * time.Second},
			Warmup: 4 * time.Second, Settle: 5 * time.Second, Drain: 45 * time.Second,
		})
		report.Runs = append(report.Runs, res)
		judge(t, res)
		return
	}

	kinds := chaos.AllFaults
	if *faults != "" {
		kinds = strings.Split(*faults, ",")
	}
	load := chaos.LoadConfig{Users: 8, Offline: 2, Rooms: 3, Rate: *rate, DMShare: 0.34, MentionEvery: 5}
	timing := chaos.Timing{Hold: 8 * time.Second, Pause: 15 * time.Second}
	var runnable []string
	for _, kind := range kinds {
		if chaos.NeedsLocalStack(kind) && env.Stack == nil {
			t.Logf("skipping %s: KAFKA_BROKERS/DATABASE_URL point at servers this suite must not kill", kind)
			continue
		}
		runnable = append(runnable, kind)
	}
	for _, kind := range runnable {
		t.Run(kind, func(t *testing.T) {
			res := chaos.Run(t, chaos.RunConfig{Name: kind, Faults: []string{kind}, Repeat: 2, Load: load, Timing: timing,
				Warmup: 10 * time.Second, Settle: 15 * time.Second, Drain: 90 * time.Second})
			report.Runs = append(report.Runs, res)
			judge(t, res)
		})
	}
	if len(runnable) > 1 {
		t.Run("mixed", func(t *testing.T) {
			// Every fault once, in a shuffled order with little time between them, then a
			// broker and a gateway at the same moment.
			together := []string{chaos.FaultGateway}
			if env.Stack != nil {
				together = append(together, chaos.FaultBroker)
			}
			res := chaos.Run(t, chaos.RunConfig{Name: "mixed", Faults: chaos.Shuffled(runnable, time.Now().UnixNano()), Repeat: 1,
				Together: together, Load: load, Timing: timing, Warmup: 10 * time.Second, Settle: 6 * time.Second, Drain: 120 * time.Second})
			report.Runs = append(report.Runs, res)
			judge(t, res)
		})
	}
}

// judge fails the test on any must-be-zero count and on a fault never recovered from.
func judge(t *testing.T, res chaos.RunResult) {
	t.Helper()
	c := res.Counts
	t.Logf("%s: %+v", res.Name, c)
	for _, r := range res.Recoveries {
		t.Logf("  %s on %s at %s: first ack after %s, first delivery after %s; worst send->ack %s, send->delivery %s",
			r.Fault, r.Target, r.At.Round(time.Millisecond), r.Ack.Round(time.Millisecond), r.Delivery.Round(time.Millisecond),
			r.WorstAck.Round(time.Millisecond), r.WorstDelivery.Round(time.Millisecond))
		if r.Ack < 0 || r.Delivery < 0 {
			t.Errorf("%s on %s: the platform did not recover within the run", r.Fault, r.Target)
		}
	}
	if c.Sends == 0 || c.Deliveries == 0 {
		t.Errorf("no load went through: %+v", c)
	}
	if !c.Zero() {
		for _, p := range res.Problems {
			t.Log("  ", p)
		}
		t.Errorf("%s: the checker found violations: %+v", res.Name, c)
	}
}
