package outbox_test

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/outbox"
)

func stored(t *testing.T) event.Envelope {
	t.Helper()
	e, err := event.New("test", event.MessageStored{RoomID: "r", Seq: 7, Kind: event.KindMessage, MessageID: "m",
		Sender: "u-ann", SenderName: "ann", Text: "hi", RoomKind: event.RoomKindRoom,
		SentAt: time.Unix(1, 0).UTC(), StoredAt: time.Unix(2, 0).UTC()})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// relayed is the record the relay sends for a row it reads back: the stored header
// object, sorted by key.
func relayed(t *testing.T, r outbox.Row) kafka.Message {
	t.Helper()
	var m map[string]string
	if err := json.Unmarshal(r.Headers, &m); err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	hs := make([]kafka.Header, len(keys))
	for i, k := range keys {
		hs[i] = kafka.Header{Key: k, Value: []byte(m[k])}
	}
	return kafka.Message{Topic: r.Topic, Key: []byte(r.Key), Value: r.Payload, Headers: hs}
}

func TestRow_Message_is_what_the_relay_sends(t *testing.T) {
	e := stored(t)
	tests := []struct {
		name  string
		extra []kafka.Header
		want  map[string]string // headers beyond e's
	}{
		{"event headers only", nil, nil},
		{"extra header", []kafka.Header{{Key: event.HeaderUsers, Value: []byte("u-ann,u-bob")}},
			map[string]string{event.HeaderUsers: "u-ann,u-bob"}},
		{"extra replaces the event's", []kafka.Header{{Key: event.HeaderSource, Value: []byte("other")}},
			map[string]string{event.HeaderSource: "other"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			row, err := outbox.NewRow("chat.stored", "r", e, tt.extra...)
			if err != nil {
				t.Fatal(err)
			}
			got, err := row.Message()
			if err != nil {
				t.Fatal(err)
			}
			if want := relayed(t, row); !equal(got, want) {
				t.Fatalf("Message() = %+v\nrelay sends %+v", got, want)
			}
			// A row built by hand from the same columns (as read back) gives the same record.
			byHand, err := outbox.Row{Topic: row.Topic, Key: row.Key, Payload: row.Payload, Headers: row.Headers}.Message()
			if err != nil || !equal(byHand, got) {
				t.Fatalf("from stored columns: %+v, %v; want %+v", byHand, err, got)
			}
			want := map[string]string{}
			for _, h := range event.Headers(e) {
				want[h.Key] = string(h.Value)
			}
			for k, v := range tt.want {
				want[k] = v
			}
			if len(got.Headers) != len(want) {
				t.Fatalf("headers %+v, want %v", got.Headers, want)
			}
			for _, h := range got.Headers {
				if want[h.Key] != string(h.Value) {
					t.Errorf("header %s = %q, want %q", h.Key, h.Value, want[h.Key])
				}
			}
		})
	}
}

func TestNewRow_requires_topic_and_key(t *testing.T) {
	for _, tk := range [][2]string{{"", "k"}, {"t", ""}} {
		if _, err := outbox.NewRow(tk[0], tk[1], stored(t)); !errors.Is(err, outbox.ErrEmpty) {
			t.Errorf("NewRow(%q, %q): %v, want ErrEmpty", tk[0], tk[1], err)
		}
	}
}

func TestRow_Message_bad_headers(t *testing.T) {
	if _, err := (outbox.Row{Topic: "t", Key: "k", Headers: []byte("[1]")}).Message(); err == nil {
		t.Fatal("want an error for headers that are not an object of strings")
	}
	m, err := outbox.Row{Topic: "t", Key: "k"}.Message()
	if err != nil || len(m.Headers) != 0 {
		t.Fatalf("no headers: %+v, %v", m, err)
	}
}

func equal(a, b kafka.Message) bool {
	return a.Topic == b.Topic && string(a.Key) == string(b.Key) && string(a.Value) == string(b.Value) &&
		slices.EqualFunc(a.Headers, b.Headers, func(x, y kafka.Header) bool { return x.Key == y.Key && string(x.Value) == string(y.Value) })
}
