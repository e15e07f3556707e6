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

const partitions = 12 // chat.submitted in deploy/topics.yaml

// newFetcher returns a Fetcher on the test stack, closed when the test ends.
func newFetcher(t *testing.T, env *stacktest.Env) *fetcher.Fetcher {
	t.Helper()
	f, err := fetcher.New(fetcher.Config{Brokers: env.Brokers, Security: env.Security})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// write publishes n records under keys k0..k(n-1), each with a header naming its key.
func write(t *testing.T, env *stacktest.Env, topic string, n, from int) {
	t.Helper()
	prod, err := producer.New(producer.Config{Brokers: env.Brokers, Security: env.Security})
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	msgs := make([]kafka.Message, n)
	for i := range n {
		msgs[i] = kafka.Message{Topic: topic, Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d", from+i),
			Headers: []kafka.Header{{Key: "h", Value: fmt.Appendf(nil, "%d", i)}}}
	}
	if err := prod.Write(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
}

// collector gathers what Run delivers until it holds want records.
type collector struct {
	mu     sync.Mutex
	got    map[int][]kafka.Message
	n      int
	want   int
	filled chan struct{}
	at     time.Time // when it filled
}

func newCollector(want int) *collector {
	return &collector{got: map[int][]kafka.Message{}, want: want, filled: make(chan struct{})}
}

func (c *collector) deliver(_ context.Context, b fetcher.Batch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got[b.Partition.ID] = append(c.got[b.Partition.ID], b.Messages...)
	before := c.n
	c.n += len(b.Messages)
	if before < c.want && c.n >= c.want {
		c.at = time.Now()
		close(c.filled)
	}
	return nil
}

func run(t *testing.T, f *fetcher.Fetcher, start map[fetcher.Partition]int64, c *collector) map[fetcher.Partition]int64 {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		next map[fetcher.Partition]int64
		err  error
	}
	done := make(chan result, 1)
	go func() {
		next, err := f.Run(ctx, start, c.deliver)
		done <- result{next, err}
	}()
	select {
	case <-c.filled:
	case r := <-done:
		cancel()
		t.Fatalf("Run returned early: %v", r.err)
	case <-time.After(time.Minute):
		t.Fatalf("only %d of %d records delivered in a minute", c.n, c.want)
	}
	cancel()
	r := <-done
	if r.err != nil {
		t.Fatalf("Run: %v", r.err)
	}
	return r.next
}

// check asserts every partition's records came once, in offset order, with their keys,
// values and headers intact, and returns how many there were.
func check(t *testing.T, c *collector) int {
	t.Helper()
	total := 0
	for p, ms := range c.got {
		for i, m := range ms {
			if m.Partition != p {
				t.Fatalf("record of partition %d delivered as %d", m.Partition, p)
			}
			if i > 0 && m.Offset != ms[i-1].Offset+1 {
				t.Fatalf("partition %d: offset %d after %d", p, m.Offset, ms[i-1].Offset)
			}
			if len(m.Key) < 2 || len(m.Value) < 2 || len(m.Headers) != 1 || string(m.Headers[0].Key) != "h" || "k"+string(m.Headers[0].Value) != string(m.Key) {
				t.Fatalf("partition %d offset %d: record not intact: %q=%q %v", p, m.Offset, m.Key, m.Value, m.Headers)
			}
		}
		total += len(ms)
	}
	return total
}

func all(topic string, offset int64) map[fetcher.Partition]int64 {
	m := map[fetcher.Partition]int64{}
	for p := range partitions {
		m[fetcher.Partition{Topic: topic, ID: p}] = offset
	}
	return m
}

func TestRun_reads_every_partition_in_order_and_resumes_where_it_stopped(t *testing.T) {
	env := stacktest.Get(t)
	topic := env.Topics(t)(topics.Submitted)
	f := newFetcher(t, env)

	write(t, env, topic, 600, 0)
	first := newCollector(600)
	next := run(t, f, all(topic, kafka.FirstOffset), first)
	if n := check(t, first); n != 600 {
		t.Fatalf("first run: %d records, want 600", n)
	}
	if len(first.got) < partitions/2 {
		t.Fatalf("records came from %d partitions only", len(first.got))
	}
	var sum int64
	for p, o := range next {
		if want := int64(len(first.got[p.ID])); o != want {
			t.Errorf("next offset of %s = %d, want %d", p, o, want)
		}
		sum += o
	}
	if sum != 600 {
		t.Fatalf("next offsets add up to %d, want 600", sum)
	}

	// From the offsets Run returned: only what came since, nothing twice.
	write(t, env, topic, 240, 600)
	second := newCollector(240)
	run(t, f, next, second)
	if n := check(t, second); n != 240 {
		t.Fatalf("second run: %d records, want 240", n)
	}
	for p, ms := range second.got {
		if ms[0].Offset != next[fetcher.Partition{Topic: topic, ID: p}] {
			t.Fatalf("partition %d resumed at %d, want %d", p, ms[0].Offset, next[fetcher.Partition{Topic: topic, ID: p}])
		}
	}
}

func TestRun_offset_out_of_range_reads_from_the_first_offset(t *testing.T) {
	env := stacktest.Get(t)
	topic := env.Topics(t)(topics.Submitted)
	write(t, env, topic, 120, 0)
	f := newFetcher(t, env)
	c := newCollector(120)
	run(t, f, all(topic, 1<<40), c)
	if n := check(t, c); n != 120 {
		t.Fatalf("%d records, want 120", n)
	}
	for p, ms := range c.got {
		if ms[0].Offset != 0 {
			t.Fatalf("partition %d read from %d, want 0", p, ms[0].Offset)
		}
	}
}

func TestResolve_last_offset_then_Run_reads_only_what_came_after(t *testing.T) {
	env := stacktest.Get(t)
	topic := env.Topics(t)(topics.Submitted)
	write(t, env, topic, 120, 0)
	f := newFetcher(t, env)
	start, err := f.Resolve(context.Background(), all(topic, kafka.LastOffset))
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, o := range start {
		sum += o
	}
	if sum != 120 {
		t.Fatalf("last offsets add up to %d, want 120", sum)
	}
	write(t, env, topic, 24, 1000)
	c := newCollector(24)
	run(t, f, start, c)
	if n := check(t, c); n != 24 {
		t.Fatalf("%d records, want 24", n)
	}
	for p, ms := range c.got {
		if want := start[fetcher.Partition{Topic: topic, ID: p}]; ms[0].Offset != want {
			t.Fatalf("partition %d read from %d, want %d", p, ms[0].Offset, want)
		}
	}
}

// With MinBytes above what the partitions hold, a broker keeps each fetch for MaxWait
// before answering: a record already there is handed over no sooner than that (with
// MinBytes 1 it would come at once).
func TestRun_min_bytes_holds_a_fetch_for_max_wait(t *testing.T) {
	env := stacktest.Get(t)
	topic := env.Topics(t)(topics.Submitted)
	write(t, env, topic, 1, 0)
	const wait = 1500 * time.Millisecond
	f, err := fetcher.New(fetcher.Config{Brokers: env.Brokers, Security: env.Security, MaxWait: wait, MinBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := newCollector(1)
	start := time.Now()
	run(t, f, all(topic, kafka.FirstOffset), c)
	if n := check(t, c); n != 1 {
		t.Fatalf("%d records, want 1", n)
	}
	// Kafka's purgatory timer ticks in milliseconds; allow it one early tick and more.
	if got := c.at.Sub(start); got < wait-10*time.Millisecond {
		t.Fatalf("the record came %s after Run started, before the fetch's MaxWait %s", got, wait)
	}
}
