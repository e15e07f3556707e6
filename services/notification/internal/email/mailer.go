package email

import (
	"context"
	"errors"
	"fmt"
	"time"

	gomail "github.com/wneessen/go-mail"
)

// Mailer hands one message to an SMTP server. Send returns nil once the server accepted
// the message.
type Mailer interface {
	Send(ctx context.Context, m *gomail.Msg) error
}

// SMTPMailer is a Mailer on one SMTP server: a connection per Send, since digests are a
// few a minute at most and a held connection would only time out between them.
type SMTPMailer struct {
	c *gomail.Client
}

var _ Mailer = (*SMTPMailer)(nil)

// NewSMTPMailer returns a Mailer for cfg (after setDefaults and Validate) whose every
// conversation, from the dial to the last reply, ends within timeout.
func NewSMTPMailer(cfg SMTPConfig, timeout time.Duration) (*SMTPMailer, error) {
	policy, err := tlsPolicy(cfg.TLS)
	if err != nil {
		return nil, err
	}
	// go-mail's context covers only the dial; the connection deadline (set once after
	// it) is what bounds a server that stops answering mid-conversation.
	opts := []gomail.Option{gomail.WithPort(cfg.Port), gomail.WithTimeout(timeout)}
	if cfg.TLS == TLSImplicit {
		opts = append(opts, gomail.WithSSL())
	} else {
		opts = append(opts, gomail.WithTLSPolicy(policy))
	}
	if cfg.Username != "" {
		// AutoDiscover picks the strongest mechanism the server offers; go-mail refuses
		// PLAIN and LOGIN over an unencrypted connection to anything but localhost.
		opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthAutoDiscover),
			gomail.WithUsername(cfg.Username), gomail.WithPassword(cfg.Password))
	}
	c, err := gomail.NewClient(cfg.Host, opts...)
	if err != nil {
		return nil, fmt.Errorf("cannot set up the SMTP client: %w", err)
	}
	return &SMTPMailer{c: c}, nil
}

// Send dials, sends m and quits; ctx bounds all of it.
func (s *SMTPMailer) Send(ctx context.Context, m *gomail.Msg) error {
	return s.c.DialAndSendWithContext(ctx, m)
}

// Permanent reports whether err is the SMTP server refusing for good (a 5xx reply):
// sending again would be refused again. Everything else (no connection, a timeout, a 4xx)
// is worth another attempt.
func Permanent(err error) bool {
	var se *gomail.SendError
	if errors.As(err, &se) {
		code := se.ErrorCode()
		return code >= 500 && code < 600
	}
	return false
}
