package leaders_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/leaders"
	"github.com/kchat/kchat/pkg/stacktest"
)

// A partition whose replica list no longer starts with its leader is what a broker restart
// leaves behind (its partitions led by others). Reordering the replicas (same brokers, so
// no data moves) makes that state without killing a broker; Balance must then hand every
// partition to its new first replica.
func TestBalance_moves_leadership_to_the_preferred_replicas(t *testing.T) {
	env := stacktest.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client := env.Client()
	topic := stacktest.UniqueName("leaders")
	res, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: 3, ReplicationFactor: 3}}})
	if err == nil {
		err = res.Errors[topic]
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = client.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	})
	if err := stacktest.WaitTopicsReady(ctx, client, []string{topic}); err != nil {
		t.Fatal(err)
	}

	parts := partitions(ctx, t, client, topic)
	var reassign []kafka.AlterPartitionReassignmentsRequestAssignment
	for _, p := range parts {
		ids := brokerIDs(p.Replicas)
		rotated := append(slices.Clone(ids[1:]), ids[0]) // the leader (first) goes last
		reassign = append(reassign, kafka.AlterPartitionReassignmentsRequestAssignment{PartitionID: p.ID, BrokerIDs: rotated})
	}
	ares, err := client.AlterPartitionReassignments(ctx, &kafka.AlterPartitionReassignmentsRequest{Topic: topic, Assignments: reassign, Timeout: 10 * time.Second})
	if err == nil {
		err = ares.Error
	}
	if err != nil {
		t.Fatal(err)
	}
	// Positive signal: the metadata shows the new order while the leaders stay.
	var skews []leaders.Skew
	for {
		skews, err = leaders.Skewed(ctx, client, []string{topic})
		if err == nil && len(skews) == len(parts) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("reordered replicas never showed as skewed leaders: %v, %v", skews, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	moved, left, err := leaders.Balance(ctx, client, []string{topic}, 100*time.Millisecond)
	if err != nil {
		t.Fatalf("balance: %v (left skewed: %v)", err, left)
	}
	if moved != len(parts) {
		t.Errorf("moved %d partitions, want %d", moved, len(parts))
	}
	for _, p := range partitions(ctx, t, client, topic) {
		if p.Leader.ID != p.Replicas[0].ID {
			t.Errorf("partition %d: leader %d, preferred %d", p.ID, p.Leader.ID, p.Replicas[0].ID)
		}
	}
	// Nothing left to do is not an error.
	if moved, _, err := leaders.Balance(ctx, client, []string{topic}, 100*time.Millisecond); err != nil || moved != 0 {
		t.Errorf("second balance: moved %d, %v; want 0, nil", moved, err)
	}
}

func partitions(ctx context.Context, t *testing.T, client *kafka.Client, topic string) []kafka.Partition {
	t.Helper()
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		t.Fatal(err)
	}
	return md.Topics[0].Partitions
}

func brokerIDs(bs []kafka.Broker) []int {
	ids := make([]int, len(bs))
	for i, b := range bs {
		ids[i] = b.ID
	}
	return ids
}
