// Package push sends Web Push notifications (RFC 8030, payloads encrypted as RFC 8291
// aes128gcm, VAPID RFC 8292) to every device a user subscribed, through
// github.com/SherClockHolmes/webpush-go.
//
// Like the e-mail digests it runs beside the Kafka consumer, never on its path: it reads
// the notifications the consumer committed to PostgreSQL. Delivery is at least once, per
// (notification, device): a delivery row is planned first (its primary key keeps it from
// being planned twice), then sent, then marked sent; a crash or timeout between the push
// service's acceptance and that mark sends it again with the same notification id in the
// payload and the same Topic header, the idempotency key a receiver (and a push service,
// which replaces an undelivered message of the same topic) deduplicates on. A device the
// push service reports gone (404, 410) is removed; 429 and 5xx are retried with backoff.
package push

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/kchat/kchat/pkg/backoff"
	"github.com/kchat/kchat/pkg/webpush"
)

// Config configures a Worker. Zero values mean the defaults given on each field; Validate
// reports what is missing or malformed.
type Config struct {
	// Keys is the VAPID key pair and subject. Required: without keys push is off and no
	// Worker is made.
	Keys webpush.Keys
	// TTL is how long a push service keeps a push for an offline device (the TTL header),
	// and how old a notification may be and still be pushed (default 24h).
	TTL time.Duration
	// SendTimeout bounds one request to a push service (default 10s); shutdown waits for
	// the requests in flight at most this long.
	SendTimeout time.Duration
	// Lease is how long a delivery being sent is left to its sender before another worker
	// (or this one, restarted) may send it again (default 2×SendTimeout).
	Lease time.Duration
	// Retry spaces the attempts after a 429, a 5xx or no answer (default 5s doubling to
	// 10m, jitter; a longer Retry-After wins). Kept in PostgreSQL, so it survives restarts.
	Retry backoff.Policy
	// MaxAttempts gives a delivery up after this many failed attempts (default 10).
	MaxAttempts int
	// Concurrency is how many pushes are in flight at once (default 4), so that one slow
	// push service does not hold up every other device.
	Concurrency int
	// Rescan bounds how long the worker sleeps (default 1m); MinGap is the least time
	// between two scans woken by Nudge (default 1s).
	Rescan time.Duration
	MinGap time.Duration

	Logger  *slog.Logger
	Metrics *Metrics // optional
	// HTTPClient sends the requests (default: a client with SendTimeout).
	HTTPClient *http.Client
}

// Validate checks the VAPID keys and the durations.
func (c *Config) Validate() error {
	var errs []error
	if c.Keys.Zero() {
		errs = append(errs, errors.New("VAPID keys are required"))
	} else if err := c.Keys.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.TTL < 0 || c.SendTimeout < 0 || c.Lease < 0 {
		errs = append(errs, fmt.Errorf("negative duration (TTL %s, send timeout %s, lease %s)", c.TTL, c.SendTimeout, c.Lease))
	}
	return errors.Join(errs...)
}

func (c *Config) setDefaults() {
	if c.TTL <= 0 {
		c.TTL = 24 * time.Hour
	}
	if c.SendTimeout <= 0 {
		c.SendTimeout = 10 * time.Second
	}
	if c.Lease <= 0 {
		c.Lease = 2 * c.SendTimeout
	}
	if c.Retry.Initial <= 0 {
		c.Retry.Initial = 5 * time.Second
	}
	if c.Retry.Max <= 0 {
		c.Retry.Max = 10 * time.Minute
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 10
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 4
	}
	if c.Rescan <= 0 {
		c.Rescan = time.Minute
	}
	if c.MinGap <= 0 {
		c.MinGap = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: c.SendTimeout}
	}
}
