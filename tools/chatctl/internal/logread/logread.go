// Package logread reads a bounded stretch of a Kafka partition without a consumer group:
// the operator commands that replay the log (chatctl replay, chatctl rebuild) must not
// commit offsets or join any group, and they stop at the end the log had when they began
// rather than following it.
package logread

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
)

// Client is the part of *kafka.Client the reader uses.
type Client interface {
	Metadata(context.Context, *kafka.MetadataRequest) (*kafka.MetadataResponse, error)
	ListOffsets(context.Context, *kafka.ListOffsetsRequest) (*kafka.ListOffsetsResponse, error)
	Fetch(context.Context, *kafka.FetchRequest) (*kafka.FetchResponse, error)
}

var _ Client = (*kafka.Client)(nil)

// Record is one record read.
type Record struct {
	Partition int
	Offset    int64
	Time      time.Time
	Key       []byte
	Value     []byte
	Headers   []kafka.Header
}

// Partitions returns the number of partitions of topic.
func Partitions(ctx context.Context, c Client, topic string) (int, error) {
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, err
	}
	if len(md.Topics) != 1 {
		return 0, fmt.Errorf("metadata for %s lists %d topics", topic, len(md.Topics))
	}
	if err := md.Topics[0].Error; err != nil {
		return 0, fmt.Errorf("topic %s: %w", topic, err)
	}
	if len(md.Topics[0].Partitions) == 0 {
		return 0, fmt.Errorf("topic %s has no partitions", topic)
	}
	return len(md.Topics[0].Partitions), nil
}

// Bounds returns a partition's first offset and its end (the offset the next record
// will get).
func Bounds(ctx context.Context, c Client, topic string, partition int) (first, end int64, err error) {
	for _, req := range []kafka.OffsetRequest{kafka.FirstOffsetOf(partition), kafka.LastOffsetOf(partition)} {
		res, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: {req}}})
		if err != nil {
			return 0, 0, err
		}
		po, err := find(res, topic, partition)
		if err != nil {
			return 0, 0, err
		}
		if req.Timestamp == kafka.FirstOffset {
			first = po.FirstOffset
		} else {
			end = po.LastOffset
		}
	}
	return first, end, nil
}

// OffsetForTime is Kafka's offsetsForTimes for one partition: the first offset whose
// record timestamp is at or after t. found is false when every record is older (then
// there is nothing to replay).
func OffsetForTime(ctx context.Context, c Client, topic string, partition int, t time.Time) (offset int64, found bool, err error) {
	res, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: {kafka.TimeOffsetOf(partition, t)}}})
	if err != nil {
		return 0, false, err
	}
	po, err := find(res, topic, partition)
	if err != nil {
		return 0, false, err
	}
	// kafka-go files a timestamp answer under Offsets; "no such record" comes back as
	// offset -1 with timestamp -1, which it files as LastOffset instead.
	for off := range po.Offsets {
		if off >= 0 {
			return off, true, nil
		}
	}
	return 0, false, nil
}

func find(res *kafka.ListOffsetsResponse, topic string, partition int) (kafka.PartitionOffsets, error) {
	for _, po := range res.Topics[topic] {
		if po.Partition == partition {
			if po.Error != nil {
				return po, fmt.Errorf("%s/%d: %w", topic, partition, po.Error)
			}
			return po, nil
		}
	}
	return kafka.PartitionOffsets{}, fmt.Errorf("no offsets for %s/%d", topic, partition)
}

// Read calls fn with every record of topic/partition from offset from up to (excluding)
// to, in offset order. Offsets without a record (compacted away, transaction markers)
// are skipped.
func Read(ctx context.Context, c Client, topic string, partition int, from, to int64, fn func(Record) error) error {
	next := from
	for next < to {
		res, err := c.Fetch(ctx, &kafka.FetchRequest{Topic: topic, Partition: partition, Offset: next,
			MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 500 * time.Millisecond})
		if err == nil {
			err = res.Error
		}
		if err != nil {
			return fmt.Errorf("fetch %s/%d at %d: %w", topic, partition, next, err)
		}
		start := next
		for {
			r, err := res.Records.ReadRecord()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("read %s/%d at %d: %w", topic, partition, next, err)
			}
			if r.Offset < next {
				continue // a fetch returns whole batches
			}
			if r.Offset >= to {
				return nil
			}
			key, kerr := readBytes(r.Key)
			value, verr := readBytes(r.Value)
			if err := errors.Join(kerr, verr); err != nil {
				return err
			}
			hs := make([]kafka.Header, len(r.Headers))
			for i, h := range r.Headers {
				hs[i] = kafka.Header{Key: h.Key, Value: h.Value}
			}
			if err := fn(Record{Partition: partition, Offset: r.Offset, Time: r.Time, Key: key, Value: value, Headers: hs}); err != nil {
				return err
			}
			next = r.Offset + 1
		}
		if next == start {
			if next >= res.HighWatermark {
				return nil // the end moved back (topic re-created): nothing more to read
			}
			// No record at or after next below the high-water mark: the rest up to it
			// holds none (control records, compaction).
			next = res.HighWatermark
		}
	}
	return nil
}

func readBytes(b protocol.Bytes) ([]byte, error) {
	if b == nil {
		return nil, nil
	}
	return protocol.ReadAll(b)
}
