package localstack_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/pkg/topics"
)

// The stack that make dev / make test start: three registered brokers, a Raft leader, and
// every declared topic with RF 3 and min.insync.replicas 2.
func TestStack_is_up_with_declared_topics(t *testing.T) {
	env := stacktest.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client := env.Client()

	if env.Stack != nil {
		st, err := env.Stack.KafkaState(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Brokers) != 3 {
			t.Fatalf("brokers registered: %v, want 3", st.Brokers)
		}
		if st.QuorumLeader < 1 || st.QuorumLeader > 3 {
			t.Fatalf("no controller leader: %d", st.QuorumLeader)
		}
	}

	f, err := topics.Load(filepath.Join(env.Root, "deploy", "topics.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// devstack up applied the file already; applying again must be a no-op.
	if _, err := topics.Apply(ctx, client, f); err != nil {
		t.Fatal(err)
	}
	plan, err := topics.MakePlan(ctx, client, f)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan) != 0 {
		t.Fatalf("apply is not idempotent, still planned:\n%s", plan)
	}

	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: f.Names()})
	if err != nil {
		t.Fatal(err)
	}
	if len(md.Brokers) != 3 {
		t.Fatalf("metadata lists %d brokers", len(md.Brokers))
	}
	byName := map[string]kafka.Topic{}
	for _, tp := range md.Topics {
		byName[tp.Name] = tp
	}
	req := &kafka.DescribeConfigsRequest{}
	for _, spec := range f.Topics {
		tp, ok := byName[spec.Name]
		if !ok || tp.Error != nil {
			t.Fatalf("topic %s missing: %v", spec.Name, tp.Error)
		}
		if len(tp.Partitions) != spec.Partitions {
			t.Errorf("%s: %d partitions, want %d", spec.Name, len(tp.Partitions), spec.Partitions)
		}
		for _, p := range tp.Partitions {
			if len(p.Replicas) != 3 {
				t.Errorf("%s/%d: %d replicas, want 3", spec.Name, p.ID, len(p.Replicas))
			}
		}
		req.Resources = append(req.Resources, kafka.DescribeConfigRequestResource{ResourceType: kafka.ResourceTypeTopic, ResourceName: spec.Name})
	}
	res, err := client.DescribeConfigs(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Resources {
		for _, e := range r.ConfigEntries {
			if e.ConfigName == "min.insync.replicas" && e.ConfigValue != "2" {
				t.Errorf("%s: min.insync.replicas=%s, want 2", r.ResourceName, e.ConfigValue)
			}
		}
	}

	// Auto-creation is off: metadata for an unknown topic must not create it.
	ghost := stacktest.UniqueName("ghost")
	w := &kafka.Writer{Addr: kafka.TCP(env.Brokers...), Transport: env.Transport(), AllowAutoTopicCreation: true, MaxAttempts: 2, WriteTimeout: 2 * time.Second}
	if err := w.WriteMessages(ctx, kafka.Message{Topic: ghost, Value: []byte("x")}); err == nil {
		t.Errorf("a write to undeclared topic %s succeeded", ghost)
	}
	_ = w.Close()
	md, err = client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{ghost}})
	if err == nil && len(md.Topics) == 1 && md.Topics[0].Error == nil {
		t.Fatalf("topic %s was auto-created", ghost)
	}
}
