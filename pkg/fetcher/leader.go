package fetcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	fetchapi "github.com/segmentio/kafka-go/protocol/fetch"
)

// fetchLoop fetches parts, all led by one broker, until ctx ends or the broker refuses.
// fetched says whether any fetch was answered: a loop that ends after one did is a fault
// that just happened, and the backoff starts over.
func (r *run) fetchLoop(ctx context.Context, parts []Partition) (fetched bool, err error) {
	f := r.f
	offsets := make([]int64, len(parts))
	for ctx.Err() == nil {
		r.mu.Lock()
		for i, p := range parts {
			offsets[i] = r.next[p]
		}
		r.mu.Unlock()
		req := f.request(parts, offsets)
		// The broker holds the request up to MaxWait; the deadline leaves the answer time
		// to come back, and to be decoded whole, on a busy machine (see MaxBytes). A dead
		// broker is noticed sooner: its connection is refused or reset.
		fctx, cancel := context.WithTimeout(ctx, f.cfg.MaxWait+15*time.Second)
		m, err := f.transport.RoundTrip(fctx, f.client.Addr, req)
		cancel()
		if err != nil {
			return fetched, fmt.Errorf("fetch: %w", err)
		}
		fetched = true
		res, ok := m.(*fetchapi.Response)
		if !ok {
			return fetched, fmt.Errorf("fetch: unexpected response %T", m)
		}
		if res.ErrorCode != 0 {
			return fetched, fmt.Errorf("fetch: %w", kafka.Error(res.ErrorCode))
		}
		batches, outOfRange, err := f.decode(res, parts, offsets)
		if len(outOfRange) > 0 {
			r.mu.Lock()
			for _, p := range outOfRange {
				r.next[p] = f.cfg.ResetOffset
			}
			r.mu.Unlock()
		}
		if err != nil {
			return fetched, err
		}
		for _, b := range batches {
			if len(b.Messages) == 0 {
				continue
			}
			// Delivered under Run's context, not the loop's: a loop stopped to be merged
			// with another finishes its batch, so that nothing is handed over twice.
			if err := r.deliver(r.ctx, b); err != nil {
				if r.ctx.Err() != nil {
					return fetched, r.ctx.Err()
				}
				return fetched, deliverError{err}
			}
			r.mu.Lock()
			r.next[b.Partition] = b.Messages[len(b.Messages)-1].Offset + 1
			r.mu.Unlock()
		}
	}
	return fetched, nil
}

func (f *Fetcher) request(parts []Partition, offsets []int64) *fetchapi.Request {
	req := &fetchapi.Request{
		ReplicaID:   -1,
		MaxWaitTime: int32(f.cfg.MaxWait.Milliseconds()),
		MinBytes:    int32(f.cfg.MinBytes),
		MaxBytes:    int32(f.cfg.MaxBytes),
		// No fetch sessions: each request names its partitions in full.
		SessionID:    -1,
		SessionEpoch: -1,
	}
	for i, p := range parts {
		if n := len(req.Topics); n == 0 || req.Topics[n-1].Topic != p.Topic {
			req.Topics = append(req.Topics, fetchapi.RequestTopic{Topic: p.Topic})
		}
		t := &req.Topics[len(req.Topics)-1]
		t.Partitions = append(t.Partitions, fetchapi.RequestPartition{
			Partition:          int32(p.ID),
			CurrentLeaderEpoch: -1,
			FetchOffset:        offsets[i],
			LogStartOffset:     -1,
			PartitionMaxBytes:  int32(f.cfg.PartitionMaxBytes),
		})
	}
	return req
}

// decode turns a response into batches, one per partition that brought records. A
// partition error ends the broker's loop, whose partitions are then grouped by leader
// again and fetched from the same offsets: errMoved labels leadership errors (retried
// after the backoff, like network errors), errReposition offsets out of range, which are
// returned so that those partitions are read from ResetOffset at once.
func (f *Fetcher) decode(res *fetchapi.Response, parts []Partition, offsets []int64) (batches []Batch, outOfRange []Partition, err error) {
	asked := make(map[Partition]int64, len(parts))
	for i, p := range parts {
		asked[p] = offsets[i]
	}
	var failed error
	for _, t := range res.Topics {
		for _, rp := range t.Partitions {
			p := Partition{t.Topic, int(rp.Partition)}
			from, ok := asked[p]
			if !ok {
				continue
			}
			if rp.ErrorCode != 0 {
				if kafka.Error(rp.ErrorCode) == kafka.OffsetOutOfRange {
					outOfRange = append(outOfRange, p)
				}
				failed = errors.Join(failed, f.partitionError(p, kafka.Error(rp.ErrorCode)))
				continue
			}
			b := Batch{Partition: p, HighWatermark: rp.HighWatermark}
			if rp.RecordSet.Records != nil {
				ms, err := readRecords(p, rp.RecordSet.Records, from)
				if err != nil {
					return nil, outOfRange, fmt.Errorf("fetch: records of %s: %w", p, err)
				}
				b.Messages = ms
			}
			batches = append(batches, b)
		}
	}
	if failed != nil {
		return nil, outOfRange, failed
	}
	return batches, nil, nil
}

func (f *Fetcher) partitionError(p Partition, err kafka.Error) error {
	switch err {
	case kafka.OffsetOutOfRange:
		f.log.Warn("offset out of range; reading from the reset offset", "partition", p.String(), "reset", f.cfg.ResetOffset)
		return fmt.Errorf("%s: %w: %w", p, err, errReposition)
	case kafka.NotLeaderForPartition, kafka.LeaderNotAvailable, kafka.UnknownTopicOrPartition,
		kafka.FencedLeaderEpoch, kafka.UnknownLeaderEpoch, kafka.ReplicaNotAvailable, kafka.KafkaStorageError:
		return fmt.Errorf("%s: %w: %w", p, err, errMoved)
	default:
		return fmt.Errorf("%s: %w", p, err)
	}
}

// readRecords copies the records at and after from out of rr: a fetch answers with
// whole record batches, which can start before the offset asked for.
func readRecords(p Partition, rr protocol.RecordReader, from int64) ([]kafka.Message, error) {
	var ms []kafka.Message
	for {
		r, err := rr.ReadRecord()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return ms, nil
			}
			return ms, err
		}
		if r.Offset < from {
			continue
		}
		m := kafka.Message{Topic: p.Topic, Partition: p.ID, Offset: r.Offset, Time: r.Time}
		if m.Key, err = readBytes(r.Key); err != nil {
			return ms, err
		}
		if m.Value, err = readBytes(r.Value); err != nil {
			return ms, err
		}
		if len(r.Headers) > 0 {
			m.Headers = make([]kafka.Header, len(r.Headers))
			for i, h := range r.Headers {
				m.Headers[i] = kafka.Header{Key: h.Key, Value: append([]byte(nil), h.Value...)}
			}
		}
		ms = append(ms, m)
	}
}

func readBytes(b protocol.Bytes) ([]byte, error) {
	if b == nil {
		return nil, nil
	}
	defer b.Close()
	return protocol.ReadAll(b)
}
