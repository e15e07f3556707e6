package app

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kchat/kchat/pkg/stacktest"
)

// TestFanoutProcess_sigtermCommitsAndRestarts runs the real binary: flags, /readyz,
// -healthcheck, JSON logs with event_id, and a SIGTERM that finishes and commits, so the
// next process neither loses nor repeats a delivery.
func TestFanoutProcess_sigtermCommitsAndRestarts(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	deliveries := s.watch("chat.deliveries")
	s.subscribe("gw-a", "r1", true)
	bin := s.env.Build(t, "./services/fanout")
	group := stacktest.UniqueName("fanout-")
	start := func(name string) (*stacktest.Process, string) {
		addr := fmt.Sprintf("127.0.0.1:%d", stacktest.FreePort(t))
		p := s.env.Start(t, name, bin, []string{"KAFKA_BROKERS=" + strings.Join(s.env.Brokers, ",")},
			"-http-addr", addr, "-topic-prefix", strings.TrimSuffix(s.topic("x"), "x"), "-group", group,
			"-start-offset", "first", "-log-level", "debug")
		stacktest.WaitHTTP(t, "http://"+addr+"/readyz", 60*time.Second)
		return p, addr
	}

	p, addr := start("fanout-1")
	if out, err := exec.Command(bin, "-healthcheck", "-http-addr", addr).CombinedOutput(); err != nil {
		t.Errorf("-healthcheck: %v %s", err, out)
	}
	s.write(s.storedMsg("r1", 1), s.storedMsg("r1", 2), s.storedMsg("r1", 3))
	deliveries.waitUntil("r1 1..3", 60*time.Second, func(r []delivery) bool { return has(r, "gw-a", "r1", 3) })

	p.Stop(20 * time.Second)
	if code := p.ExitCode(); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d\n%s", code, p.Output())
	}
	assertJSONLogs(t, p.Output())

	s.write(s.storedMsg("r1", 4))
	start("fanout-2")
	recs := deliveries.waitUntil("r1 4", 60*time.Second, func(r []delivery) bool { return has(r, "gw-a", "r1", 4) })
	if got := seqs(recs, "gw-a", "r1"); !slices.Equal(got, seqRange(1, 4)) {
		t.Errorf("gw-a got r1 seqs %v, want exactly [1 2 3 4]: the first process committed before exiting", got)
	}
}

// assertJSONLogs checks that every line is a JSON object and that forwarding logs name the event.
func assertJSONLogs(t *testing.T, out string) {
	t.Helper()
	withEventID := 0
	for line := range strings.Lines(out) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("log line is not JSON: %q", line)
			continue
		}
		if rec["msg"] == "forwarded" {
			if id, _ := rec["event_id"].(string); id != "" {
				withEventID++
			}
		}
	}
	if withEventID < 3 {
		t.Errorf("%d forwarded log lines carry an event_id, want 3", withEventID)
	}
	if !strings.Contains(out, `"consumer stopped"`) {
		t.Error(`no "consumer stopped" log line after SIGTERM`)
	}
}
