// Package email sends e-mail digests of notifications: for every user with e-mail on, one
// e-mail per digest interval listing their unread notifications that no digest has covered
// yet, with a link to each room and an unsubscribe link.
//
// It runs beside the Kafka consumer, never on its path: it reads what the consumer
// committed to PostgreSQL, so a slow or dead SMTP server holds up nothing but e-mail.
// Delivery is at least once. A digest is planned first (its row and the notifications it
// covers, one transaction), then sent, then marked sent; a crash or timeout between the
// SMTP server's acceptance and that mark sends the same digest again with the same
// Message-ID, the idempotency key a receiver can deduplicate on. A notification is never
// covered by two different digests.
package email

import (
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"net/url"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"

	"github.com/kchat/kchat/pkg/backoff"
	"github.com/kchat/kchat/pkg/emailtoken"
)

// TLS policies of SMTPConfig.TLS.
const (
	TLSMandatory     = "mandatory"     // STARTTLS required (the default)
	TLSOpportunistic = "opportunistic" // STARTTLS when offered, plain otherwise
	TLSNone          = "none"          // never (a relay on localhost, tests)
	TLSImplicit      = "implicit"      // TLS from the first byte (SMTPS, port 465)
)

// SMTPConfig says how to reach the SMTP server.
type SMTPConfig struct {
	Host     string // required
	Port     int    // default 587, or 465 with TLSImplicit
	Username string // empty: no authentication
	Password string
	TLS      string // one of the TLS* constants; default TLSMandatory
}

// Config configures a Worker. Zero values mean the defaults given on each field; Validate
// reports what is missing or malformed.
type Config struct {
	SMTP SMTPConfig
	// From is the sender, an RFC 5322 address ("kchat <noreply@example.com>"); its domain
	// is also the right-hand side of every Message-ID. Required.
	From string
	// BaseURL is where users open the web page (https://chat.example.com); room and
	// unsubscribe links are built on it. Required, absolute http or https.
	BaseURL string
	// TokenKey signs unsubscribe links; the gateways verify them with the same key.
	// Required, at least emailtoken.MinKeyLen bytes.
	TokenKey []byte

	// SendTimeout bounds one digest's SMTP conversation (default 30s); shutdown waits for
	// one in flight at most this long.
	SendTimeout time.Duration
	// Lease is how long a digest being sent is left to its sender before another worker
	// (or this one, restarted) may send it again (default 2×SendTimeout).
	Lease time.Duration
	// Retry spaces the attempts of a digest that failed transiently (default 5s doubling
	// to 10m, equal jitter); the schedule is kept in PostgreSQL, so it survives restarts.
	Retry backoff.Policy
	// MaxAttempts gives a digest up after this many failed attempts (default 20).
	MaxAttempts int
	// MaxItems caps the notifications one digest lists (default 50); the rest go in the
	// next one.
	MaxItems int
	// Rescan bounds how long the worker sleeps (default 1m): notifications written by other
	// instances and settings changed by the gateways are found at the latest then.
	Rescan time.Duration
	// MinGap is the least time between two scans woken by Nudge (default 1s), so that a
	// burst of notifications costs one scan, not one each.
	MinGap time.Duration

	Logger  *slog.Logger
	Metrics *Metrics // optional
	// Mailer sends the messages (default: an SMTP client for SMTP).
	Mailer Mailer
}

// Validate checks what setDefaults cannot fill in: the sender, the links' base URL, the
// token key and the SMTP settings.
func (c *Config) Validate() error {
	var errs []error
	if strings.TrimSpace(c.SMTP.Host) == "" && c.Mailer == nil {
		errs = append(errs, errors.New("SMTP host is required"))
	}
	if c.SMTP.Port < 0 || c.SMTP.Port > 65535 {
		errs = append(errs, fmt.Errorf("SMTP port %d is out of range", c.SMTP.Port))
	}
	if _, err := tlsPolicy(c.SMTP.TLS); err != nil {
		errs = append(errs, err)
	}
	if c.SMTP.Password != "" && c.SMTP.Username == "" {
		errs = append(errs, errors.New("an SMTP password needs an SMTP user"))
	}
	if _, err := fromDomain(c.From); err != nil {
		errs = append(errs, err)
	}
	if err := checkBaseURL(c.BaseURL); err != nil {
		errs = append(errs, err)
	}
	if len(c.TokenKey) < emailtoken.MinKeyLen {
		errs = append(errs, fmt.Errorf("the unsubscribe token key must be at least %d bytes, not %d", emailtoken.MinKeyLen, len(c.TokenKey)))
	}
	return errors.Join(errs...)
}

func (c *Config) setDefaults() {
	if c.SMTP.TLS == "" {
		c.SMTP.TLS = TLSMandatory
	}
	if c.SMTP.Port == 0 {
		c.SMTP.Port = 587
		if c.SMTP.TLS == TLSImplicit {
			c.SMTP.Port = 465
		}
	}
	if c.SendTimeout <= 0 {
		c.SendTimeout = 30 * time.Second
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
		c.MaxAttempts = 20
	}
	if c.MaxItems <= 0 {
		c.MaxItems = 50
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
}

// ParseTLSPolicy checks a TLS policy name (for flag parsing).
func ParseTLSPolicy(s string) (string, error) {
	if _, err := tlsPolicy(s); err != nil {
		return "", err
	}
	if s == "" {
		return TLSMandatory, nil
	}
	return s, nil
}

func tlsPolicy(s string) (gomail.TLSPolicy, error) {
	switch s {
	case "", TLSMandatory, TLSImplicit:
		return gomail.TLSMandatory, nil
	case TLSOpportunistic:
		return gomail.TLSOpportunistic, nil
	case TLSNone:
		return gomail.NoTLS, nil
	default:
		return 0, fmt.Errorf("SMTP TLS policy must be %s, %s, %s or %s, not %q", TLSMandatory, TLSOpportunistic, TLSImplicit, TLSNone, s)
	}
}

// fromDomain parses the sender address and returns its domain.
func fromDomain(from string) (string, error) {
	a, err := mail.ParseAddress(from)
	if err != nil {
		return "", fmt.Errorf("sender address %q: %w", from, err)
	}
	_, domain, ok := strings.Cut(a.Address, "@")
	if !ok || domain == "" {
		return "", fmt.Errorf("sender address %q has no domain", from)
	}
	return domain, nil
}

func checkBaseURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("base URL %q: %w", s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("base URL %q must be an absolute http or https URL without query or fragment", s)
	}
	return nil
}
