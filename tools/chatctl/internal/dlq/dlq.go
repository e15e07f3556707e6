// Package dlq reads the dead-letter topic (chat.dlq) and turns a dead letter
// back into the message that failed.
//
// A consumer that gives up on a message (pkg/consumer.DeadLetter) writes it
// to chat.dlq with its original key, value and headers plus dlq_* headers
// saying where it came from and why it failed. Replaying it produces the
// original key, value and headers, minus the dlq_* ones, to the original
// topic. That is safe to repeat: the consumers deduplicate by event id
// (ce_id), so an event that was partly handled, or replayed twice, takes
// effect once.
package dlq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/consumer"
	"github.com/kchat/kchat/pkg/event"
)

// HeaderPrefix marks the headers the dead-lettering added.
const HeaderPrefix = "dlq_"

// Letter is one dead letter.
type Letter struct {
	// Where it is in the dead-letter topic.
	Topic     string    `json:"topic"`
	Partition int       `json:"partition"`
	Offset    int64     `json:"offset"`
	Time      time.Time `json:"time"`

	Key     []byte         `json:"-"`
	Value   []byte         `json:"-"`
	Headers []kafka.Header `json:"-"`

	// From the dlq_* headers.
	SourceTopic     string `json:"source_topic"`
	SourcePartition int    `json:"source_partition"`
	SourceOffset    int64  `json:"source_offset"`
	Reason          string `json:"reason"`
	Consumer        string `json:"consumer"`
	Attempts        int    `json:"attempts"`

	// From the CloudEvents headers of the original message.
	EventType string `json:"ce_type,omitempty"`
	EventID   string `json:"ce_id,omitempty"`
}

// Replayable reports whether the letter names the topic it came from.
func (l Letter) Replayable() bool { return l.SourceTopic != "" }

// Message is the original message: same key, value and headers without the
// dlq_* ones, addressed to the original topic. Producing it with the
// Murmur2 partitioner puts it on the partition the original producer chose
// (as long as the topic kept its partition count).
func (l Letter) Message() kafka.Message {
	var hs []kafka.Header
	for _, h := range l.Headers {
		if !strings.HasPrefix(h.Key, HeaderPrefix) {
			hs = append(hs, kafka.Header{Key: h.Key, Value: append([]byte(nil), h.Value...)})
		}
	}
	return kafka.Message{
		Topic:   l.SourceTopic,
		Key:     append([]byte(nil), l.Key...),
		Value:   append([]byte(nil), l.Value...),
		Headers: hs,
	}
}

// Filter selects dead letters; zero values select everything.
type Filter struct {
	Partition   int   // -1: any
	Offset      int64 // -1: any
	SourceTopic string
	Consumer    string
	EventType   string
}

// Any is the filter that selects every dead letter.
var Any = Filter{Partition: -1, Offset: -1}

func (f Filter) match(l Letter) bool {
	return (f.Partition < 0 || l.Partition == f.Partition) &&
		(f.Offset < 0 || l.Offset == f.Offset) &&
		(f.SourceTopic == "" || l.SourceTopic == f.SourceTopic) &&
		(f.Consumer == "" || l.Consumer == f.Consumer) &&
		(f.EventType == "" || l.EventType == f.EventType)
}

// ErrNoTopic means the dead-letter topic does not exist.
var ErrNoTopic = errors.New("dead-letter topic does not exist")

// Partitions returns the partition ids of topic. A topic that is unknown is
// asked for again for a few seconds: brokers learn about new topics
// asynchronously, and kafka-go serves metadata from a cache refreshed every
// MetadataTTL.
func Partitions(ctx context.Context, client *kafka.Client, topic string) ([]int, error) {
	for attempt := 1; ; attempt++ {
		ids, err := partitions(ctx, client, topic)
		if !errors.Is(err, ErrNoTopic) || attempt == 6 {
			return ids, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func partitions(ctx context.Context, client *kafka.Client, topic string) ([]int, error) {
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("read metadata of %s: %w", topic, err)
	}
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		if errors.Is(t.Error, kafka.UnknownTopicOrPartition) {
			return nil, fmt.Errorf("%s: %w", topic, ErrNoTopic)
		}
		if t.Error != nil {
			return nil, fmt.Errorf("%s: %w", topic, t.Error)
		}
		ids := make([]int, len(t.Partitions))
		for i, p := range t.Partitions {
			ids[i] = p.ID
		}
		sort.Ints(ids)
		return ids, nil
	}
	return nil, fmt.Errorf("%s: %w", topic, ErrNoTopic)
}

// Read returns the dead letters in topic that match f, in partition and
// offset order, as of now: it reads every partition from its first offset up
// to the end it had when Read started. Errors Kafka calls retriable (a
// leader moving, a broker that has not yet learnt of the topic) are retried
// for a few seconds; a broker being restarted causes them.
func Read(ctx context.Context, client *kafka.Client, topic string, f Filter) ([]Letter, error) {
	for attempt := 1; ; attempt++ {
		out, err := read(ctx, client, topic, f)
		var kerr kafka.Error
		if err == nil || !errors.As(err, &kerr) || !kerr.Temporary() || attempt == 10 {
			return out, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func read(ctx context.Context, client *kafka.Client, topic string, f Filter) ([]Letter, error) {
	parts, err := Partitions(ctx, client, topic)
	if err != nil {
		return nil, err
	}
	if f.Partition >= 0 {
		if !slices.Contains(parts, f.Partition) {
			return nil, fmt.Errorf("%s has no partition %d (it has %d)", topic, f.Partition, len(parts))
		}
		parts = []int{f.Partition}
	}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, p := range parts {
		req.Topics[topic] = append(req.Topics[topic], kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p))
	}
	offs, err := client.ListOffsets(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s: %w", topic, err)
	}
	var out []Letter
	for _, po := range offs.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("%s partition %d: %w", topic, po.Partition, po.Error)
		}
		start, end := po.FirstOffset, po.LastOffset
		if f.Offset >= 0 {
			if f.Offset < start || f.Offset >= end {
				continue
			}
			start, end = f.Offset, f.Offset+1
		}
		letters, err := readPartition(ctx, client, topic, po.Partition, start, end)
		if err != nil {
			return nil, err
		}
		for _, l := range letters {
			if f.match(l) {
				out = append(out, l)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Partition != out[j].Partition {
			return out[i].Partition < out[j].Partition
		}
		return out[i].Offset < out[j].Offset
	})
	return out, nil
}

// readPartition fetches offsets [start, end) of one partition.
func readPartition(ctx context.Context, client *kafka.Client, topic string, partition int, start, end int64) ([]Letter, error) {
	var out []Letter
	offset := start
	for empty := 0; offset < end; {
		res, err := client.Fetch(ctx, &kafka.FetchRequest{
			Topic: topic, Partition: partition, Offset: offset,
			MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 500 * time.Millisecond,
		})
		if err != nil {
			return nil, fmt.Errorf("fetch %s partition %d at %d: %w", topic, partition, offset, err)
		}
		if res.Error != nil {
			return nil, fmt.Errorf("fetch %s partition %d at %d: %w", topic, partition, offset, res.Error)
		}
		got := 0
		for {
			rec, err := res.Records.ReadRecord()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("read %s partition %d: %w", topic, partition, err)
			}
			// A batch may start before the offset asked for.
			if rec.Offset < offset || rec.Offset >= end {
				continue
			}
			l, err := letter(topic, partition, rec)
			if err != nil {
				return nil, err
			}
			out = append(out, l)
			offset = rec.Offset + 1
			got++
		}
		if got == 0 {
			// Nothing below end came back: the rest is transaction markers
			// or was deleted by retention meanwhile. Give up after a few
			// tries instead of spinning.
			if empty++; empty >= 3 {
				break
			}
		}
	}
	return out, nil
}

func letter(topic string, partition int, rec *kafka.Record) (Letter, error) {
	key, err := readBytes(rec.Key)
	if err != nil {
		return Letter{}, err
	}
	value, err := readBytes(rec.Value)
	if err != nil {
		return Letter{}, err
	}
	l := Letter{Topic: topic, Partition: partition, Offset: rec.Offset, Time: rec.Time.UTC(), Key: key, Value: value,
		SourcePartition: -1, SourceOffset: -1}
	for _, h := range rec.Headers {
		l.Headers = append(l.Headers, kafka.Header{Key: h.Key, Value: append([]byte(nil), h.Value...)})
	}
	get := func(k string) string {
		// The last header wins, as in event.HeaderValue.
		for i := len(l.Headers) - 1; i >= 0; i-- {
			if l.Headers[i].Key == k {
				return string(l.Headers[i].Value)
			}
		}
		return ""
	}
	l.SourceTopic = get(consumer.HeaderDLQTopic)
	l.Reason = get(consumer.HeaderDLQReason)
	l.Consumer = get(consumer.HeaderDLQConsumer)
	if n, err := strconv.Atoi(get(consumer.HeaderDLQPartition)); err == nil {
		l.SourcePartition = n
	}
	if n, err := strconv.ParseInt(get(consumer.HeaderDLQOffset), 10, 64); err == nil {
		l.SourceOffset = n
	}
	l.Attempts, _ = strconv.Atoi(get(consumer.HeaderDLQAttempts))
	l.EventType = get(event.HeaderType)
	l.EventID = get(event.HeaderID)
	return l, nil
}

func readBytes(b io.Reader) ([]byte, error) {
	if b == nil {
		return nil, nil
	}
	return io.ReadAll(b)
}
