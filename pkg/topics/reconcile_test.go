package topics_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/pkg/topics"
)

func testFile(prefix string, partitions int, retention string) topics.File {
	f, err := topics.Parse(fmt.Appendf(nil, `
defaults:
  replication_factor: 3
  configs:
    min.insync.replicas: "2"
topics:
  - name: %[1]sroom
    partitions: %[2]d
    configs:
      retention.ms: "%[3]s"
  - name: %[1]sstate
    partitions: 1
    configs:
      cleanup.policy: compact
`, prefix, partitions, retention))
	if err != nil {
		panic(err)
	}
	return f
}

func TestApply_against_live_cluster(t *testing.T) {
	env := stacktest.Get(t)
	client := env.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	prefix := stacktest.UniqueName("topics") + "."
	t.Cleanup(func() {
		_, _ = client.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{prefix + "room", prefix + "state"}})
	})

	first, err := topics.Apply(ctx, client, testFile(prefix, 3, "3600000"))
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 2 || first[0].Action != topics.ActionCreate || first[1].Action != topics.ActionCreate {
		t.Fatalf("first apply should create both topics, got:\n%s", first)
	}

	second, err := topics.Apply(ctx, client, testFile(prefix, 3, "3600000"))
	if err != nil {
		t.Fatal(err)
	}
	if len(second) != 0 {
		t.Fatalf("second apply changed something:\n%s", second)
	}

	grown, err := topics.Apply(ctx, client, testFile(prefix, 6, "7200000"))
	if err != nil {
		t.Fatal(err)
	}
	actions := map[topics.Action]int{}
	for _, c := range grown {
		actions[c.Action]++
	}
	if actions[topics.ActionAddPartitions] != 1 || actions[topics.ActionSetConfig] != 1 || len(grown) != 2 {
		t.Fatalf("want one add-partitions and one set-config, got:\n%s", grown)
	}
	// Brokers learn of new partitions and of config changes from the metadata log, each
	// in its own time, and a plan may read from any of them: the plan turns empty once
	// every broker has both, which is the signal waited for.
	deadline := time.Now().Add(30 * time.Second)
	for {
		again, err := topics.MakePlan(ctx, client, testFile(prefix, 6, "7200000"))
		if err != nil {
			t.Fatal(err)
		}
		if len(again) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30 s after growth the plan is still not empty:\n%s", again)
		}
		time.Sleep(100 * time.Millisecond)
	}

	_, err = topics.MakePlan(ctx, client, testFile(prefix, 2, "7200000"))
	if !errors.Is(err, topics.ErrPartitionsLowered) {
		t.Fatalf("lowering partitions: got %v, want ErrPartitionsLowered", err)
	}

	tooWide := testFile(prefix, 6, "7200000")
	tooWide.Topics[0].ReplicationFactor = 4
	if _, err := topics.MakePlan(ctx, client, tooWide); !errors.Is(err, topics.ErrReplicationFactorTooHigh) {
		t.Fatalf("rf 4 on 3 brokers: got %v, want ErrReplicationFactorTooHigh", err)
	}
	narrower := testFile(prefix, 6, "7200000")
	narrower.Topics[0].ReplicationFactor = 2
	if _, err := topics.MakePlan(ctx, client, narrower); !errors.Is(err, topics.ErrReplicationFactorChange) {
		t.Fatalf("rf change: got %v, want ErrReplicationFactorChange", err)
	}
}
