package consumer_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/consumer"
)

type memWriter struct {
	mu   sync.Mutex
	msgs []kafka.Message
}

func (w *memWriter) Write(_ context.Context, msgs ...kafka.Message) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, msgs...)
	return nil
}

// The metrics middleware sits outside DeadLetter, where a dead-lettered message looks
// acknowledged; it must still be counted as dead-lettered, and the series must exist at
// zero before the first one so that its increase is seen.
func TestMetrics_count_outcomes_including_dead_letters(t *testing.T) {
	reg := prometheus.NewRegistry()
	mt := consumer.NewMetrics(reg)
	mt.Expect("c", "chat.submitted")
	for _, o := range []string{consumer.OutcomeOK, consumer.OutcomeError, consumer.OutcomeDeadLettered} {
		if got := value(t, reg, o); got != 0 {
			t.Fatalf("%s before any message: %v, want a series at 0", o, got)
		}
	}

	w := &memWriter{}
	handlerErr := map[string]error{
		"fine":      nil,
		"transient": errors.New("database unavailable"),
		"poison":    consumer.Permanent(errors.New("schema-invalid")),
	}
	h := mt.Middleware("c")(consumer.DeadLetter(w, "chat.dlq", "c", nil)(func(_ context.Context, m *consumer.Message) error {
		return handlerErr[string(m.Key)]
	}))
	for _, key := range []string{"fine", "fine", "transient", "poison"} {
		_ = h(context.Background(), &consumer.Message{Topic: "chat.submitted", Key: []byte(key)})
	}
	for _, tc := range []struct {
		outcome string
		want    float64
	}{{consumer.OutcomeOK, 2}, {consumer.OutcomeError, 1}, {consumer.OutcomeDeadLettered, 1}} {
		if got := value(t, reg, tc.outcome); got != tc.want {
			t.Errorf("%s = %v, want %v", tc.outcome, got, tc.want)
		}
	}
	if len(w.msgs) != 1 || string(w.msgs[0].Key) != "poison" {
		t.Fatalf("dead letters %v", w.msgs)
	}
}

// value reads kchat_consumer_messages_total{consumer="c",topic="chat.submitted",outcome=outcome}
// from reg; a missing series fails the test.
func value(t *testing.T, reg *prometheus.Registry, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "kchat_consumer_messages_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["consumer"] == "c" && labels["topic"] == "chat.submitted" && labels["outcome"] == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no series for outcome %q", outcome)
	return 0
}
