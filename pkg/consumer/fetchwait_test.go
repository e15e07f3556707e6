package consumer_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/consumer"
)

// A Reader configured with ReaderMaxWait(w) must leave an empty fetch at the broker for
// the whole of w: kafka-go takes its margin for the answer out of MaxWait, so with
// MaxWait w itself the broker answers after 3/4 of w and the answer has w/4 to come back.
func TestReaderMaxWait_broker_waits_what_was_asked(t *testing.T) {
	f := newFixture(t)
	const brokerWait = 400 * time.Millisecond
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: f.env.Brokers, Dialer: f.env.ReaderDialer(), Topic: f.topic, Partition: 0,
		MinBytes: 1, MaxBytes: 1 << 20, MaxWait: consumer.ReaderMaxWait(brokerWait)})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 4*brokerWait)
	defer cancel()
	if _, err := r.ReadMessage(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read on an empty partition: %v, want the context's deadline", err)
	}
	st := r.Stats()
	if st.Fetches == 0 {
		t.Fatal("no fetch was made")
	}
	// The broker never answers an empty fetch before its wait is over; a lower bound does
	// not depend on how busy the machine is.
	if min := st.WaitTime.Min; min < brokerWait*9/10 {
		t.Errorf("shortest empty fetch took %v, want at least the broker wait %v (fetches %d, timeouts %d, dials %d)",
			min, brokerWait, st.Fetches, st.Timeouts, st.Dials)
	}
	if max := st.WaitTime.Max; max >= consumer.ReaderMaxWait(brokerWait) {
		t.Errorf("longest empty fetch took %v: the broker did not answer within MaxWait", max)
	}
}
