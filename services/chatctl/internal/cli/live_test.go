package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kchat/kchat/pkg/consumer"
	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/producer"
	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/pkg/topics"
	"github.com/kchat/kchat/services/chatctl/internal/cli"
)

func runLive(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Run(context.Background(), args, cli.Env{
		Stdout: &out, Stderr: &errb,
		Getenv: func(k string) string { return env[k] },
	})
	return code, out.String(), errb.String()
}

// The operator commands against the real three-broker cluster.
func TestLive_topics_health_and_lag(t *testing.T) {
	senv := stacktest.Get(t)
	vars := map[string]string{"KAFKA_BROKERS": strings.Join(senv.Brokers, ",")}

	file := filepath.Join(senv.Root, "deploy", "topics.yaml")
	if code, out, errs := runLive(t, vars, "topics", "plan", "-file", file); code != 0 || !strings.Contains(out, "no changes") {
		t.Fatalf("topics plan on the applied stack: exit %d\n%s%s", code, out, errs)
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("topics:\n  - name: chat.submitted\n    partitions: 1\n    replication_factor: 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runLive(t, vars, "topics", "plan", "-file", bad); code == 0 || !strings.Contains(errs, "cannot be lowered") {
		t.Fatalf("lowering partitions must be refused with a clear error: exit %d, %s", code, errs)
	}

	code, out, errs := runLive(t, vars, "cluster", "health", "-json")
	if code != 0 {
		t.Fatalf("cluster health: exit %d\n%s%s", code, out, errs)
	}
	var report map[string]any
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("health -json is not JSON: %v\n%s", err, out)
	}
	if !strings.Contains(out, `"healthy"`) && !strings.Contains(out, `"ok"`) {
		t.Errorf("health report does not say healthy:\n%s", out)
	}

	// A group that consumed 3 of 5 messages has lag 2.
	topic := senv.Topics(t)(topics.Submitted)
	p, err := producer.New(producer.Config{Brokers: senv.Brokers})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i := range 5 {
		e, err := event.New("kchat/test", event.MessageSubmitted{RoomID: "lag-room", Sender: "u", SenderName: "u",
			ClientMsgID: string(rune('a' + i)), Text: "x", Kind: event.KindMessage, SubmittedAt: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Publish(context.Background(), topic, "lag-room", e); err != nil {
			t.Fatal(err)
		}
	}
	group := stacktest.UniqueName("lag-")
	ctx, cancel := context.WithCancel(context.Background())
	seen := 0
	r, err := consumer.New(consumer.Config{Brokers: senv.Brokers, GroupID: group, Topics: []string{topic}, BatchSize: 1},
		func(context.Context, *consumer.Message) error {
			seen++
			if seen == 3 {
				cancel()
			}
			if seen > 3 {
				return context.Canceled // leave the rest uncommitted
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(ctx); err != nil {
		t.Fatal(err)
	}
	code, out, errs = runLive(t, vars, "lag", "-group", group, "-json")
	if code != 0 {
		t.Fatalf("lag: exit %d\n%s%s", code, out, errs)
	}
	var total int64
	var groups []struct {
		Partitions []struct {
			Lag int64 `json:"lag"`
		} `json:"partitions"`
	}
	if err := json.Unmarshal([]byte(out), &groups); err != nil {
		t.Fatalf("lag -json: %v\n%s", err, out)
	}
	for _, g := range groups {
		for _, p := range g.Partitions {
			total += p.Lag
		}
	}
	if total != 2 {
		t.Fatalf("total lag %d, want 2\n%s", total, out)
	}
}
