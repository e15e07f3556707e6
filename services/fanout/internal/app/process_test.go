package app

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/stacktest"
)

// TestFanoutProcess_sigtermCommitsAndRestarts runs the real binary: flags, /readyz,
// -healthcheck, JSON logs with event_id, and a SIGTERM that finishes and commits, so the
// next process neither loses nor repeats a delivery, on either consumed topic (typing on
// chat.ephemeral, notifications on chat.notifications).
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
	s.write(s.typingMsg("r1", 1), s.typingMsg("r1", 2), s.typingMsg("r1", 3), s.notificationMsg("u-1", 1))
	deliveries.waitUntil("r1 typing 1..3 and u-1's notification 1", 60*time.Second, func(r []delivery) bool {
		return typed(r, "gw-a", "r1", 3) && notified(r, "gw-a", "u-1", 1)
	})

	p.Stop(20 * time.Second)
	if code := p.ExitCode(); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d\n%s", code, p.Output())
	}
	assertJSONLogs(t, p.Output())
	// Everything the first process wrote lies below these offsets. (Within its run it may
	// forward an event twice, at least once being the guarantee: a rebalance right after
	// it joined has done so; what the SIGTERM must ensure is that the next process repeats
	// nothing.)
	firstEnds := s.ends("chat.deliveries")

	s.write(s.typingMsg("r1", 4), s.notificationMsg("u-1", 2))
	start("fanout-2")
	recs := deliveries.waitUntil("r1 typing 4 and u-1's notification 2", 60*time.Second, func(r []delivery) bool {
		return typed(r, "gw-a", "r1", 4) && notified(r, "gw-a", "u-1", 2)
	})
	var second []delivery
	for _, d := range recs {
		if d.Offset >= firstEnds[d.Partition] {
			second = append(second, d)
		}
	}
	if got := ns(second, "gw-a", event.TypeTyping, "r1"); !slices.Equal(got, []int64{4}) {
		t.Errorf("the second process forwarded r1 typing %v, want exactly [4]: the first process committed before exiting", got)
	}
	if got := ns(second, "gw-a", event.TypeNotificationCreated, "u-1"); !slices.Equal(got, []int64{2}) {
		t.Errorf("the second process forwarded u-1 notifications %v, want exactly [2]: the first process committed before exiting", got)
	}
	distinct := func(v []int64) []int64 {
		v = slices.Clone(v)
		slices.Sort(v)
		return slices.Compact(v)
	}
	if got := ns(recs, "gw-a", event.TypeTyping, "r1"); !slices.Equal(distinct(got), nRange(1, 4)) {
		t.Errorf("gw-a got r1 typing %v, want each of 1 to 4", got)
	}
	if got := ns(recs, "gw-a", event.TypeNotificationCreated, "u-1"); !slices.Equal(distinct(got), nRange(1, 2)) {
		t.Errorf("gw-a got u-1 notifications %v, want each of 1 and 2", got)
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
		t.Errorf("%d forwarded log lines carry an event_id, want at least 3", withEventID)
	}
	if !strings.Contains(out, `"consumer stopped"`) {
		t.Error(`no "consumer stopped" log line after SIGTERM`)
	}
}
