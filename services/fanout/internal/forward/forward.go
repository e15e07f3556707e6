// Package forward copies consumed events to chat.deliveries, once per gateway that wants
// them: typing to the gateways subscribed to its room, notifications to every gateway with
// a subscription. The timeline (message.stored) is not among them: gateways read
// chat.stored themselves (docs/architecture.md).
package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/consumer"
	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/tracing"
)

// HeaderGateway names the gateway a delivery is addressed to. The record key says the same;
// the header lets a gateway (or an operator in Kafka UI) check it without trusting the
// partitioning.
const HeaderGateway = "kchat_gateway"

// Writer is what the forwarder needs from a producer: one call writes a whole batch, with
// acks from all in-sync replicas, before the consumer commits.
type Writer interface {
	Write(ctx context.Context, msgs ...kafka.Message) error
}

// Router answers which gateways want an event. Returned slices are shared, read-only.
type Router interface {
	Gateways(roomID string) []string
	AllGateways() []string
}

// Config configures a Forwarder.
type Config struct {
	Topic   string // the real name of chat.deliveries; required
	Logger  *slog.Logger
	Metrics *Metrics
	Now     func() time.Time // for the latency metric; default time.Now
}

// Forwarder is the batch handler of fanout's consumer.
type Forwarder struct {
	cfg    Config
	w      Writer
	router Router
}

// New returns a forwarder writing through w and routing with router.
func New(cfg Config, w Writer, router Router) (*Forwarder, error) {
	if cfg.Topic == "" || w == nil || router == nil {
		return nil, errors.New("forward: Topic, writer and router are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Forwarder{cfg: cfg, w: w, router: router}, nil
}

// Recipients returns the gateways an event goes to. Typing goes to the gateways subscribed
// to its room, the event's subject. A notification is addressed to a user, whose gateways
// fanout cannot know without presence: it goes to every gateway with any subscription, and
// gateways drop it unless the user is connected there. Other types are not forwarded (nil),
// message.stored included: gateways read the timeline from chat.stored themselves.
func (f *Forwarder) Recipients(e event.Envelope) []string {
	switch e.Type {
	case event.TypeTyping:
		return f.router.Gateways(e.Subject)
	case event.TypeNotificationCreated:
		return f.router.AllGateways()
	default:
		return nil
	}
}

// HandleBatch writes every copy of every event of ms in one producer call and returns once
// all are acknowledged, so the runner commits the batch only after its deliveries are
// durable. The value is the consumed record's bytes, unchanged and shared by all copies:
// nothing is re-encoded per recipient.
//
// Order: a room's typing (a user's notifications) arrive in one partition in order, and
// all copies for one gateway share a key and so a partition; the writer keeps a call's
// messages in order per partition, so each gateway sees each room's (user's) events in the
// order they were consumed.
//
// Messages must carry a decoded Event (the runner decodes before calling).
func (f *Forwarder) HandleBatch(ctx context.Context, ms []*consumer.Message) (err error) {
	// NewBatch hands whole batches straight to this handler (only the one-by-one fallback
	// goes through Recover), so a bug here must not take the process down.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("forward: panic: %v\n%s", r, debug.Stack())
		}
	}()
	out := make([]kafka.Message, 0, len(ms)*2)
	// The table may change while the write is in flight; count what was actually written.
	copies := make([]int, len(ms))
	for i, m := range ms {
		gateways := f.Recipients(m.Event)
		copies[i] = len(gateways)
		for _, gw := range gateways {
			out = append(out, f.delivery(m, gw))
		}
	}
	if len(out) > 0 {
		if err := f.w.Write(ctx, out...); err != nil {
			return fmt.Errorf("cannot write %d deliveries: %w", len(out), err)
		}
	}
	now := f.cfg.Now()
	for i, m := range ms {
		f.cfg.Metrics.eventsIn.WithLabelValues(m.Event.Type).Inc()
		if n := copies[i]; n > 0 {
			f.cfg.Metrics.deliveries.WithLabelValues(m.Event.Type).Add(float64(n))
			f.cfg.Metrics.latency.WithLabelValues(m.Event.Type).Observe(now.Sub(m.Event.Time).Seconds())
		} else {
			f.cfg.Metrics.unrouted.WithLabelValues(m.Event.Type).Inc()
		}
		if f.cfg.Logger.Enabled(ctx, slog.LevelDebug) {
			f.cfg.Logger.Debug("forwarded", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset,
				"event_id", m.Event.ID, "event_type", m.Event.Type, "subject", m.Event.Subject, "copies", copies[i])
		}
	}
	return nil
}

// delivery builds one gateway's copy: original value and headers plus the gateway header.
// When tracing is on, its traceparent header names fanout's consumer span instead (the
// value, forwarded as it is, keeps its producer's): the gateway's delivery continues the
// trace from this hop.
func (f *Forwarder) delivery(m *consumer.Message, gatewayID string) kafka.Message {
	headers := make([]kafka.Header, len(m.Headers), len(m.Headers)+1)
	copy(headers, m.Headers)
	headers = append(headers, kafka.Header{Key: HeaderGateway, Value: []byte(gatewayID)})
	if m.Trace.IsValid() {
		headers = tracing.Inject(m.Context(context.Background()), headers)
	}
	return kafka.Message{Topic: f.cfg.Topic, Key: []byte(gatewayID), Value: m.Value, Headers: headers}
}
