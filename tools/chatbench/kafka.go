package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/producer"
	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/pkg/topics"
	"github.com/kchat/kchat/tools/chatbench/internal/harness"
	"github.com/kchat/kchat/tools/chatbench/internal/report"
)

func (b *Bench) kafkaClient() *kafka.Client {
	return &kafka.Client{Addr: kafka.TCP(b.cfg.Brokers...), Timeout: 30 * time.Second, Transport: b.cfg.KafkaSecurity.RoundTripper()}
}

// createLike creates topic name with the spec (partitions, replication, configs) that
// deploy/topics.yaml declares for like, and waits until it has leaders.
func (b *Bench) createLike(ctx context.Context, name, like string) (func(), error) {
	f, err := topics.Load(filepath.Join(b.cfg.Root, "deploy", "topics.yaml"))
	if err != nil {
		return nil, err
	}
	var spec *topics.Spec
	for _, t := range f.Topics {
		if t.Name == like {
			t.Name = name
			spec = &t
		}
	}
	if spec == nil {
		return nil, fmt.Errorf("topic %s not declared", like)
	}
	return b.applyTopics(ctx, topics.File{Topics: []topics.Spec{*spec}})
}

func (b *Bench) applyTopics(ctx context.Context, f topics.File) (func(), error) {
	client := b.kafkaClient()
	if _, err := topics.Apply(ctx, client, f); err != nil {
		return nil, fmt.Errorf("create topics: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := stacktest.WaitTopicsReady(wctx, client, f.Names()); err != nil {
		return nil, err
	}
	return func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = client.DeleteTopics(dctx, &kafka.DeleteTopicsRequest{Topics: f.Names()})
	}, nil
}

// submittedMessages builds n distinct, valid message.submitted records keyed by room, as
// a gateway would publish them.
func (b *Bench) submittedMessages(topic string, n, rooms int, roomName func(int) string) ([]kafka.Message, error) {
	text := strings.Repeat("x", b.plan.TextBytes)
	out := make([]kafka.Message, n)
	for i := range n {
		room := roomName(i % rooms)
		e, err := event.New("kchat/chatbench", event.MessageSubmitted{
			RoomID: room, Sender: fmt.Sprintf("bench-u%06d", i%rooms+1), SenderName: "bench",
			ClientMsgID: fmt.Sprintf("%s-%d", b.run, i), Text: text, Kind: event.KindMessage, SubmittedAt: time.Now().UTC(),
		})
		if err != nil {
			return nil, err
		}
		m, err := producer.Message(topic, room, e)
		if err != nil {
			return nil, err
		}
		out[i] = m
	}
	return out, nil
}

// rateSearch runs fixed-rate steps in order until one fails the latency goal (or misses
// the rate); after each step it calls between (e.g. to let the platform drain).
func (b *Bench) rateSearch(ctx context.Context, name string, rates []float64, dur time.Duration, run func(harness.Schedule) harness.Step, between func()) report.Series {
	series := report.Series{Name: name}
	for _, rate := range rates {
		if ctx.Err() != nil {
			break
		}
		count := int(rate * dur.Seconds())
		st := run(harness.NewSchedule(time.Now().Add(20*time.Millisecond), rate, count))
		logStep(b.log, name, st)
		series.Steps = append(series.Steps, st)
		if between != nil {
			between()
		}
		if !st.Passes(b.plan.P99Limit) {
			break
		}
	}
	return series
}
