package topics

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// WaitKnown waits until every broker of the cluster itself reports a leader for every
// partition of the named topics, as many partitions as the cluster's metadata lists.
// Metadata from one broker is not enough: right after a topic is created or grown, a
// client whose metadata comes from a broker that has not caught up yet is told "unknown
// topic or partition". Each broker is asked over a connection of its own (a kafka-go
// Client may answer from its transport's cache).
func WaitKnown(ctx context.Context, admin Admin, names []string) error {
	want := make(map[string]int, len(names))
	for _, n := range names {
		want[n] = 0
	}
	return waitKnown(ctx, admin, want)
}

// waitKnown is WaitKnown for topics with at least want[name] partitions (0: as many as
// the cluster's metadata lists).
func waitKnown(ctx context.Context, admin Admin, want map[string]int) error {
	if len(want) == 0 {
		return nil
	}
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	var md *kafka.MetadataResponse
	for {
		var err error
		md, err = admin.Metadata(ctx, &kafka.MetadataRequest{Topics: names})
		if err == nil {
			known := 0
			for _, t := range md.Topics {
				if t.Error == nil && len(t.Partitions) > 0 {
					known++
					want[t.Name] = max(want[t.Name], len(t.Partitions))
				}
			}
			if known == len(names) {
				break
			}
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return fmt.Errorf("topics not known: %w", err)
		}
	}
	for _, b := range md.Brokers {
		addr := net.JoinHostPort(b.Host, strconv.Itoa(b.Port))
		for {
			err := brokerKnows(ctx, dialerFor(admin), addr, want)
			if err == nil {
				break
			}
			if serr := sleepCtx(ctx, 100*time.Millisecond); serr != nil {
				return fmt.Errorf("broker %s: topics not known: %w (last: %v)", addr, serr, err)
			}
		}
	}
	return nil
}

// dialerFor returns a dialer secured like admin's transport (TLS, SASL), so that the
// per-broker connections of waitKnown reach a secured cluster the way the admin client
// does; kafka-go's default dialer otherwise, as for a PLAINTEXT cluster.
func dialerFor(admin Admin) *kafka.Dialer {
	if c, ok := admin.(*kafka.Client); ok {
		if t, ok := c.Transport.(*kafka.Transport); ok && (t.TLS != nil || t.SASL != nil) {
			return &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true, TLS: t.TLS, SASLMechanism: t.SASL}
		}
	}
	return kafka.DefaultDialer
}

func brokerKnows(ctx context.Context, dialer *kafka.Dialer, addr string, want map[string]int) error {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := dialer.DialContext(dctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	for name, n := range want {
		parts, err := conn.ReadPartitions(name)
		if err != nil {
			return err
		}
		if len(parts) < n {
			return fmt.Errorf("%s: %d of %d partitions known", name, len(parts), n)
		}
		for _, p := range parts {
			if p.Leader.ID < 0 || p.Leader.Host == "" {
				return fmt.Errorf("%s/%d: no leader", name, p.ID)
			}
		}
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
