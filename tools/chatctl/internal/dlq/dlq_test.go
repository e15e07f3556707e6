package dlq_test

import (
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/tools/chatctl/internal/dlq"
)

func TestMessageIsTheOriginalWithoutDLQHeaders(t *testing.T) {
	l := dlq.Letter{
		Topic: "chat.dlq", Partition: 1, Offset: 7,
		Key: []byte("room-1"), Value: []byte(`{"id":"x"}`),
		Headers: []kafka.Header{
			{Key: "ce_id", Value: []byte("x")},
			{Key: "ce_type", Value: []byte("message.stored")},
			{Key: "traceparent", Value: []byte("00-1-2-01")},
			{Key: "dlq_reason", Value: []byte("boom")},
			{Key: "dlq_topic", Value: []byte("chat.stored")},
			{Key: "dlq_offset", Value: []byte("3")},
		},
		SourceTopic: "chat.stored",
	}
	m := l.Message()
	if m.Topic != "chat.stored" || string(m.Key) != "room-1" || string(m.Value) != `{"id":"x"}` {
		t.Errorf("message = %+v", m)
	}
	var keys []string
	for _, h := range m.Headers {
		keys = append(keys, h.Key)
	}
	want := []string{"ce_id", "ce_type", "traceparent"}
	if len(keys) != len(want) {
		t.Fatalf("headers %v, want %v", keys, want)
	}
	for i := range want {
		if keys[i] != want[i] {
			t.Errorf("headers %v, want %v (order kept)", keys, want)
		}
	}
	// The message owns its bytes: changing it must not change the letter.
	m.Key[0] = 'X'
	if string(l.Key) != "room-1" {
		t.Error("Message shares the key's bytes with the letter")
	}
	if !l.Replayable() || (dlq.Letter{}).Replayable() {
		t.Error("Replayable must follow dlq_topic")
	}
}
