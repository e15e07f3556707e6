package fetcher_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/fetcher"
	"github.com/kchat/kchat/pkg/producer"
	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/pkg/topics"
)

// A broker SIGKILLed while records stream in: the partitions the other brokers lead keep
// being delivered while the dead broker's wait for their new leaders, and once the broker
// is back every acknowledged record has been delivered, each offset once, in order.
func TestRun_broker_sigkill_stalls_only_its_partitions_and_loses_nothing(t *testing.T) {
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
	client := &kafka.Client{Addr: kafka.TCP(env.Brokers...), Transport: env.Security.RoundTripper(), Timeout: 10 * time.Second}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		t.Fatal(err)
	}
	// The victim leads partitions and is not the controller leader (killing that one adds
	// a Raft election before the failover even starts).
	leaderOf := map[int]int{}
	victim := -1
	for _, p := range md.Topics[0].Partitions {
		leaderOf[p.ID] = p.Leader.ID
		if victim < 0 && p.Leader.ID != st.QuorumLeader {
			victim = p.Leader.ID
		}
	}
	if victim < 0 {
		t.Fatalf("every partition of %s is led by the controller leader %d", topic, st.QuorumLeader)
	}

	f := newFetcher(t, env)
	start, err := f.Resolve(ctx, all(topic, kafka.LastOffset))
	if err != nil {
		t.Fatal(err)
	}

	var (
		mu        sync.Mutex
		got       = map[int][]kafka.Message{}
		seen      = map[string]bool{}
		killedAt  time.Time
		killIndex = -1      // records numbered above it were sent after the kill
		healthyAt time.Time // first delivery of such a record from a partition another broker leads
		victimAt  time.Time // first delivery of such a record from a partition the victim led
	)
	healthy := make(chan struct{})
	runCtx, stopRun := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() {
		_, err := f.Run(runCtx, start, func(_ context.Context, b fetcher.Batch) error {
			now := time.Now()
			mu.Lock()
			defer mu.Unlock()
			got[b.Partition.ID] = append(got[b.Partition.ID], b.Messages...)
			after := false
			for _, m := range b.Messages {
				seen[string(m.Value)] = true
				var i int
				if _, err := fmt.Sscanf(string(m.Value), "v%d", &i); err == nil && killIndex >= 0 && i > killIndex {
					after = true
				}
			}
			if !after {
				return nil
			}
			if leaderOf[b.Partition.ID] == victim {
				if victimAt.IsZero() {
					victimAt = now
				}
			} else if healthyAt.IsZero() {
				healthyAt = now
				close(healthy)
			}
			return nil
		})
		ran <- err
	}()

	p, err := producer.New(producer.Config{Brokers: env.Brokers, Security: env.Security})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var acked []string
	var sent sync.WaitGroup
	stop := make(chan struct{})
	var sender sync.WaitGroup
	sender.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			v := fmt.Sprintf("v%d", i)
			mu.Lock()
			if !killedAt.IsZero() && killIndex < 0 {
				killIndex = i - 1
			}
			mu.Unlock()
			sent.Add(1)
			err := p.Enqueue(ctx, func(err error) {
				defer sent.Done()
				if err == nil {
					mu.Lock()
					acked = append(acked, v)
					mu.Unlock()
				}
			}, kafka.Message{Topic: topic, Key: fmt.Appendf(nil, "k%d", i%97), Value: []byte(v),
				Headers: []kafka.Header{{Key: "h", Value: fmt.Appendf(nil, "%d", i%97)}}})
			if err != nil {
				sent.Done()
				t.Errorf("enqueue: %v", err)
				return
			}
		}
	})

	restarted := false
	t.Cleanup(func() {
		if restarted {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := env.Stack.StartBroker(ctx, victim); err != nil {
			t.Errorf("restart broker %d: %v", victim, err)
		}
	})
	// Wait for records to flow before the kill.
	waitFor(t, time.Minute, func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) >= 50 })
	mu.Lock()
	killedAt = time.Now()
	mu.Unlock()
	if err := env.Stack.KillBroker(victim); err != nil {
		t.Fatal(err)
	}
	select {
	case <-healthy:
	case <-time.After(time.Minute):
		t.Fatal("no partition of a surviving broker delivered within a minute of the kill")
	}
	// The victim's partitions resume under their new leaders.
	waitFor(t, 2*time.Minute, func() bool { mu.Lock(); defer mu.Unlock(); return !victimAt.IsZero() })
	if err := env.Stack.StartBroker(ctx, victim); err != nil {
		t.Fatalf("restart broker %d: %v", victim, err)
	}
	restarted = true
	close(stop)
	sender.Wait()
	sent.Wait()

	mu.Lock()
	want := append([]string(nil), acked...)
	mu.Unlock()
	waitFor(t, 2*time.Minute, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, v := range want {
			if !seen[v] {
				return false
			}
		}
		return true
	})
	stopRun()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	c := &collector{got: got}
	n := check(t, c)
	t.Logf("broker %d killed: first delivery of a record sent after the kill from a surviving broker's partition %s later, from the victim's %s later; %d acked, %d records delivered",
		victim, healthyAt.Sub(killedAt).Round(time.Millisecond), victimAt.Sub(killedAt).Round(time.Millisecond), len(want), n)
	if !healthyAt.Before(victimAt) {
		t.Errorf("the surviving brokers' partitions waited for the victim's: first deliveries after the kill %s and %s", healthyAt.Sub(killedAt), victimAt.Sub(killedAt))
	}
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
