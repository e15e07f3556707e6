// Command notification consumes chat.stored and notifies members who are offline about
// direct messages, @mentions and messages in rooms set to notify_all: it stores the
// notifications in PostgreSQL and publishes notification.created through the outbox.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/kchat/kchat/pkg/presence"
	"github.com/kchat/kchat/pkg/service"
	"github.com/kchat/kchat/pkg/webpush"
	"github.com/kchat/kchat/services/notification/internal/app"
	"github.com/kchat/kchat/services/notification/internal/email"
	"github.com/kchat/kchat/services/notification/internal/push"
)

func main() {
	f := service.NewConsumerFlags("notification", ":8092", "CONSUMER_GROUP")
	databaseURL := flag.String("database-url", service.Env("DATABASE_URL", service.DefaultDatabaseURL), "PostgreSQL URL (DATABASE_URL)")
	expiry := flag.Duration("presence-expiry", service.EnvDuration("PRESENCE_EXPIRY", presence.DefaultExpiry), "a gateway without a heartbeat for this long is dead (PRESENCE_EXPIRY)")
	batchSize := flag.Int("batch-size", service.EnvInt("BATCH_SIZE", 100), "most events handled in one transaction (BATCH_SIZE)")
	fetchWait := flag.Duration("fetch-wait", service.EnvDuration("FETCH_WAIT", app.DefaultFetchWait), "how long a fetch collects stored messages before handing them over; nobody waits for a notification to an offline user, and every fetch costs the brokers; 0: none (FETCH_WAIT)")
	migrate := flag.Bool("migrate", false, "apply database migrations before starting (persistence normally does)")
	// E-mail digests: off unless an SMTP host is given (docs/notifications.md).
	smtpHost := flag.String("smtp-host", service.Env("SMTP_HOST", ""), "SMTP server for e-mail digests; empty: no e-mail (SMTP_HOST)")
	smtpPort := flag.Int("smtp-port", service.EnvInt("SMTP_PORT", 0), "SMTP port (SMTP_PORT; default 587, 465 with -smtp-tls implicit)")
	smtpUser := flag.String("smtp-user", service.Env("SMTP_USER", ""), "SMTP user; empty: no authentication (SMTP_USER)")
	smtpPassword := flag.String("smtp-password", service.Env("SMTP_PASSWORD", ""), "SMTP password; prefer the environment (SMTP_PASSWORD)")
	smtpTLS := flag.String("smtp-tls", service.Env("SMTP_TLS", email.TLSMandatory), "mandatory (STARTTLS), opportunistic, implicit (SMTPS) or none (SMTP_TLS)")
	emailFrom := flag.String("email-from", service.Env("EMAIL_FROM", ""), `sender of e-mail digests, e.g. "kchat <noreply@example.com>" (EMAIL_FROM)`)
	emailBaseURL := flag.String("email-base-url", service.Env("EMAIL_BASE_URL", ""), "where users open the web page; links in e-mails start with it (EMAIL_BASE_URL)")
	emailKey := flag.String("email-token-key", service.Env("EMAIL_TOKEN_KEY", ""), "key signing unsubscribe links, at least 32 bytes, the gateways' too; prefer the environment (EMAIL_TOKEN_KEY)")
	emailTimeout := flag.Duration("email-send-timeout", service.EnvDuration("EMAIL_SEND_TIMEOUT", 30*time.Second), "longest SMTP conversation of one digest (EMAIL_SEND_TIMEOUT)")
	// Web Push: off unless the VAPID keys are given (docs/notifications.md).
	vapidPublic := flag.String("vapid-public-key", service.Env("VAPID_PUBLIC_KEY", ""), "VAPID public key, base64url (VAPID_PUBLIC_KEY; all three VAPID settings or none; none: no push)")
	vapidPrivate := flag.String("vapid-private-key", service.Env("VAPID_PRIVATE_KEY", ""), "VAPID private key, base64url; prefer the environment (VAPID_PRIVATE_KEY)")
	vapidSubject := flag.String("vapid-subject", service.Env("VAPID_SUBJECT", ""), "contact for push services: mailto:<address> or an https URL (VAPID_SUBJECT)")
	pushTTL := flag.Duration("push-ttl", service.EnvDuration("PUSH_TTL", 24*time.Hour), "how long push services keep a push for an offline device (PUSH_TTL)")
	service.Main(f, func(ctx context.Context, logger *slog.Logger) error {
		if *fetchWait < 0 {
			return fmt.Errorf("-fetch-wait %s: want 0 (none) or a positive duration", *fetchWait)
		}
		var pushCfg *push.Config
		if keys := (webpush.Keys{Public: *vapidPublic, Private: *vapidPrivate, Subject: *vapidSubject}); !keys.Zero() {
			pushCfg = &push.Config{Keys: keys, TTL: *pushTTL}
			if err := pushCfg.Validate(); err != nil {
				return fmt.Errorf("web push settings: %w", err)
			}
		}
		var mail *email.Config
		if *smtpHost != "" {
			tls, err := email.ParseTLSPolicy(*smtpTLS)
			if err != nil {
				return fmt.Errorf("-smtp-tls: %w", err)
			}
			mail = &email.Config{
				SMTP: email.SMTPConfig{Host: *smtpHost, Port: *smtpPort, Username: *smtpUser, Password: *smtpPassword, TLS: tls},
				From: *emailFrom, BaseURL: *emailBaseURL, TokenKey: []byte(*emailKey), SendTimeout: *emailTimeout,
			}
			if err := mail.Validate(); err != nil {
				return fmt.Errorf("e-mail settings: %w", err)
			}
		}
		return app.Run(ctx, app.Config{
			Brokers:        f.Brokers,
			Security:       f.Security,
			DatabaseURL:    *databaseURL,
			HTTPAddr:       f.HTTPAddr,
			TopicPrefix:    f.TopicPrefix,
			Group:          f.Group,
			StartOffset:    f.StartOffset,
			BatchSize:      *batchSize,
			FetchWait:      noWaitIsNegative(*fetchWait),
			PresenceExpiry: *expiry,
			Migrate:        *migrate,
			Logger:         logger,
			Email:          mail,
			Push:           pushCfg,
		})
	})
}

// noWaitIsNegative maps a fetch wait of 0 on the command line (none) to what app.Config
// means by none; app.Config's zero value is the default wait.
func noWaitIsNegative(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
