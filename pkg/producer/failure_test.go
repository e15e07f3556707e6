package producer_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	produceAPI "github.com/segmentio/kafka-go/protocol/produce"

	"github.com/kchat/kchat/pkg/producer"
	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/pkg/topics"
)

// gate sits in front of the real transport. While it is shut, produce requests wait in
// RoundTrip (each announces itself on arrived) until open lets them through, to the
// brokers or failing with an error.
type gate struct {
	kafka.RoundTripper
	mu      sync.Mutex
	shut    bool
	fail    error
	open    chan struct{}
	arrived chan struct{}
}

func newGate(rt kafka.RoundTripper) *gate {
	return &gate{RoundTripper: rt, open: make(chan struct{}), arrived: make(chan struct{}, 100)}
}

func (g *gate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.shut, g.open = true, make(chan struct{})
}

// release lets held and later requests through; with fail set they all fail with it.
func (g *gate) release(fail error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.fail = fail
	if g.shut {
		g.shut = false
		close(g.open)
	}
}

func (g *gate) RoundTrip(ctx context.Context, addr net.Addr, req kafka.Request) (kafka.Response, error) {
	if _, ok := req.(*produceAPI.Request); ok {
		g.mu.Lock()
		shut, open := g.shut, g.open
		g.mu.Unlock()
		if shut {
			g.arrived <- struct{}{}
			select {
			case <-open:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		g.mu.Lock()
		fail := g.fail
		g.mu.Unlock()
		if fail != nil {
			return nil, fail
		}
	}
	return g.RoundTripper.RoundTrip(ctx, addr, req)
}

func (g *gate) CloseIdleConnections() {
	if t, ok := g.RoundTripper.(*kafka.Transport); ok {
		t.CloseIdleConnections()
	}
}

// result is one Enqueue's outcome.
type result chan error

func enqueue(t *testing.T, p *producer.Producer, m kafka.Message) result {
	t.Helper()
	r := make(result, 1)
	if err := p.Enqueue(context.Background(), func(err error) { r <- err }, m); err != nil {
		t.Fatalf("enqueue %s: %v", m.Value, err)
	}
	return r
}

func (r result) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r:
		return err
	case <-time.After(time.Minute):
		t.Fatal("no completion within a minute")
		return nil
	}
}

// When a partition's request fails for good, the records queued behind it on that
// partition fail too, with the same error: none of them may be written after the failed
// one, which the caller will retry. Records enqueued afterwards are written as usual.
func TestProducer_failed_request_fails_the_records_queued_behind_it(t *testing.T) {
	env := stacktest.Get(t)
	topic := env.Topics(t)(topics.Submitted)
	tests := []struct {
		name string
		fail error // what the held request ends with
		cfg  producer.Config
		want error
	}{
		{name: "permanent error", fail: kafka.MessageSizeTooLarge, want: kafka.MessageSizeTooLarge},
		{name: "retriable error until the delivery timeout", fail: kafka.NotLeaderForPartition,
			cfg: producer.Config{DeliveryTimeout: 2 * time.Second}, want: producer.ErrDeliveryTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGate(env.Security.Secure(&kafka.Transport{}))
			cfg := tt.cfg
			cfg.Brokers, cfg.Security = env.Brokers, env.Security
			p, err := producer.New(producer.WithRoundTripper(cfg, g))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			key := []byte(stacktest.UniqueName("room-"))
			msg := func(v string) kafka.Message { return kafka.Message{Topic: topic, Key: key, Value: []byte(v)} }
			if err := p.Write(context.Background(), msg("before")); err != nil {
				t.Fatal(err)
			}

			g.close()
			head := enqueue(t, p, msg("head"))
			<-g.arrived // head is in flight, held
			followers := []result{enqueue(t, p, msg("follower-1")), enqueue(t, p, msg("follower-2"))}
			g.release(tt.fail)
			headErr := head.wait(t)
			if !errors.Is(headErr, tt.want) {
				t.Fatalf("head: %v, want %v", headErr, tt.want)
			}
			for i, f := range followers {
				if err := f.wait(t); err != headErr {
					t.Errorf("follower %d: %v, want the head's error %v", i+1, err, headErr)
				}
			}

			g.release(nil)
			if err := p.Write(context.Background(), msg("after")); err != nil {
				t.Fatalf("the lane did not recover: %v", err)
			}
			var got []string
			readAll(context.Background(), t, env, topic, -1, func(m kafka.Message) {
				if string(m.Key) == string(key) {
					got = append(got, string(m.Value))
				}
			})
			if len(got) != 2 || got[0] != "before" || got[1] != "after" {
				t.Fatalf("written for the key: %q, want [before after]", got)
			}
		})
	}
}

// A full buffer refuses at once with ErrBufferFull instead of growing; room comes back as
// records are acknowledged.
func TestProducer_full_buffer_refuses_with_ErrBufferFull(t *testing.T) {
	env := stacktest.Get(t)
	topic := env.Topics(t)(topics.Submitted)
	value := make([]byte, 1000)
	tests := []struct {
		name string
		cfg  producer.Config
	}{
		{name: "records", cfg: producer.Config{MaxBufferedRecords: 3}},
		{name: "bytes", cfg: producer.Config{MaxBufferedBytes: 3 * 1100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGate(env.Security.Secure(&kafka.Transport{}))
			cfg := tt.cfg
			cfg.Brokers, cfg.Security = env.Brokers, env.Security
			p, err := producer.New(producer.WithRoundTripper(cfg, g))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			msg := kafka.Message{Topic: topic, Key: []byte("k"), Value: value}
			if err := p.Write(context.Background(), msg); err != nil { // topic metadata known
				t.Fatal(err)
			}
			g.close()
			var queued []result
			for range 3 {
				queued = append(queued, enqueue(t, p, msg))
			}
			<-g.arrived
			err = p.Enqueue(context.Background(), func(error) { t.Error("done called for a refused record") }, msg)
			if !errors.Is(err, producer.ErrBufferFull) {
				t.Fatalf("fourth record: %v, want ErrBufferFull", err)
			}
			g.release(nil)
			for _, r := range queued {
				if err := r.wait(t); err != nil {
					t.Fatal(err)
				}
			}
			if err := p.Write(context.Background(), msg); err != nil {
				t.Fatalf("after the buffer drained: %v", err)
			}
		})
	}
}

// CloseContext does not hang on a request that never returns: when its context ends,
// the records still queued fail with ErrClosed, and later writes are refused.
func TestProducer_close_gives_up_at_its_deadline(t *testing.T) {
	env := stacktest.Get(t)
	topic := env.Topics(t)(topics.Submitted)
	g := newGate(env.Security.Secure(&kafka.Transport{}))
	p, err := producer.New(producer.WithRoundTripper(producer.Config{Brokers: env.Brokers, Security: env.Security}, g))
	if err != nil {
		t.Fatal(err)
	}
	msg := kafka.Message{Topic: topic, Key: []byte("k"), Value: []byte("x")}
	if err := p.Write(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	g.close()
	held, queued := enqueue(t, p, msg), enqueue(t, p, msg)
	<-g.arrived
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	began := time.Now()
	if err := p.CloseContext(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("CloseContext: %v, want the context's deadline", err)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("CloseContext took %s after its deadline of 300ms", took)
	}
	for _, r := range []result{held, queued} {
		if err := r.wait(t); !errors.Is(err, producer.ErrClosed) {
			t.Errorf("record queued at close: %v, want ErrClosed", err)
		}
	}
	if err := p.Write(context.Background(), msg); !errors.Is(err, producer.ErrClosed) {
		t.Errorf("write after close: %v, want ErrClosed", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
