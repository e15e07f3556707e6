package producer_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/producer"
	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/pkg/topics"
)

// A SIGKILLed partition leader stalls a stream of sends only as long as Kafka itself
// needs to fail over (the controller fences the dead broker after
// broker.session.timeout.ms and elects new leaders); the producer must find the new
// leader at once instead of waiting for its metadata cache to expire. The killed broker
// is not the active controller: killing that one adds a Raft election
// (controller.quorum.fetch.timeout.ms) before the fencing clock even starts.
func TestFailover_first_ack_after_leader_sigkill(t *testing.T) {
	env := stacktest.Get(t)
	if env.Stack == nil {
		t.Skip("needs the local stack to kill a broker (KAFKA_BROKERS points elsewhere)")
	}
	env.ExclusiveFaults(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	topic := env.Topics(t)(topics.Submitted)

	st, err := env.Stack.KafkaState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A client of its own: the shared one may cache metadata from before a leader moved.
	client := &kafka.Client{Addr: kafka.TCP(env.Brokers...), Transport: env.Security.RoundTripper(), Timeout: 10 * time.Second}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		t.Fatal(err)
	}
	partition, victim := -1, -1
	for _, p := range md.Topics[0].Partitions {
		if p.Leader.ID != st.QuorumLeader {
			partition, victim = p.ID, p.Leader.ID
			break
		}
	}
	if partition < 0 {
		t.Fatalf("every partition of %s is led by the controller leader %d", topic, st.QuorumLeader)
	}
	failover := sessionTimeout(ctx, t, client, victim)
	key := keyFor(t, partition, len(md.Topics[0].Partitions))
	t.Logf("partition %d led by broker %d (controller leader %d), broker.session.timeout.ms=%s", partition, victim, st.QuorumLeader, failover)

	p, err := producer.New(producer.Config{Brokers: env.Brokers, Security: env.Security})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	msg := kafka.Message{Topic: topic, Key: []byte(key), Value: []byte("x")}
	if err := p.Write(ctx, msg); err != nil {
		t.Fatal(err)
	}

	// A steady stream (every 5 ms) before, during and after the kill; the first ack that
	// arrives after the kill is the one measured.
	var (
		mu       sync.Mutex
		killedAt time.Time
		firstAck time.Time
		errs     int
	)
	gotAck := make(chan struct{})
	stop := make(chan struct{})
	var sender sync.WaitGroup
	sender.Add(1)
	go func() {
		defer sender.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			err := p.Enqueue(ctx, func(err error) {
				now := time.Now()
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs++
					return
				}
				if !killedAt.IsZero() && firstAck.IsZero() {
					firstAck = now
					close(gotAck)
				}
			}, msg)
			if err != nil {
				t.Errorf("enqueue: %v", err)
				return
			}
		}
	}()
	defer func() { close(stop); sender.Wait() }()

	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := env.Stack.StartBroker(ctx, victim); err != nil {
			t.Errorf("restart broker %d: %v", victim, err)
		}
	})
	mu.Lock()
	killedAt = time.Now()
	mu.Unlock()
	if err := env.Stack.KillBroker(victim); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gotAck:
	case <-time.After(failover + time.Minute):
		t.Fatalf("no ack within %s of the kill", failover+time.Minute)
	}
	mu.Lock()
	took, failed := firstAck.Sub(killedAt), errs
	mu.Unlock()
	t.Logf("first ack %s after SIGKILL of broker %d (failover %s); %d sends failed meanwhile", took.Round(10*time.Millisecond), victim, failover, failed)
	if limit := failover + 2*time.Second; took > limit {
		t.Errorf("first ack after %s, want within %s (broker.session.timeout.ms + 2 s)", took, limit)
	}
}

// sessionTimeout reads broker.session.timeout.ms, the time the controller waits before it
// fences a broker that stopped heartbeating, from a live broker other than skip.
func sessionTimeout(ctx context.Context, t *testing.T, client *kafka.Client, skip int) time.Duration {
	t.Helper()
	id := 1
	if skip == 1 {
		id = 2
	}
	res, err := client.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{{
		ResourceType: kafka.ResourceTypeBroker, ResourceName: strconv.Itoa(id), ConfigNames: []string{"broker.session.timeout.ms"},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Resources {
		for _, e := range r.ConfigEntries {
			if e.ConfigName == "broker.session.timeout.ms" {
				ms, err := strconv.Atoi(e.ConfigValue)
				if err != nil {
					t.Fatal(err)
				}
				return time.Duration(ms) * time.Millisecond
			}
		}
	}
	t.Fatal("broker.session.timeout.ms not described")
	return 0
}

// keyFor finds a key that the producer's partitioner (Murmur2) places on partition.
func keyFor(t *testing.T, partition, partitions int) string {
	t.Helper()
	parts := make([]int, partitions)
	for i := range parts {
		parts[i] = i
	}
	for i := range 10_000 {
		k := fmt.Sprintf("room-%d", i)
		if (kafka.Murmur2Balancer{}).Balance(kafka.Message{Key: []byte(k)}, parts...) == partition {
			return k
		}
	}
	t.Fatalf("no key for partition %d", partition)
	return ""
}
