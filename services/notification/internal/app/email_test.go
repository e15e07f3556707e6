package app_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/backoff"
	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/service"
	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/services/notification/internal/app"
	"github.com/kchat/kchat/services/notification/internal/email"
	"github.com/kchat/kchat/services/notification/internal/email/smtptest"
)

// The whole chain: stored messages on Kafka become notifications for offline bob, and
// one digest e-mail lists the three of them; dan, notified too but with e-mail off, gets
// nothing.
func TestNotification_email_digest_for_offline_user(t *testing.T) {
	f := newFixture(t)
	seedChat(f)
	f.exec(`INSERT INTO email_settings (user_id, address, enabled, digest_interval) VALUES
		('u-bob', 'bob@mail.test', true, interval '2 seconds'), ('u-dan', 'dan@mail.test', false, interval '1 second')`)
	rcv := smtptest.New(t, "127.0.0.1:0")

	admin := service.NewAdmin()
	port := stacktest.FreePort(t)
	f.background(func(ctx context.Context) error {
		return app.Run(ctx, app.Config{
			Brokers: f.env.Brokers, Security: f.env.Security, DatabaseURL: f.dbURL, HTTPAddr: fmt.Sprintf("127.0.0.1:%d", port),
			TopicPrefix: f.names(""), Group: stacktest.UniqueName("notification-"), StartOffset: kafka.FirstOffset,
			PresenceExpiry: 10 * time.Second, Admin: admin,
			Email: &email.Config{
				SMTP: email.SMTPConfig{Host: "127.0.0.1", Port: rcv.Port(), TLS: email.TLSNone},
				From: "kchat <noreply@kchat.test>", BaseURL: "https://chat.test", TokenKey: []byte(strings.Repeat("k", 32)),
				SendTimeout: 5 * time.Second, Retry: backoff.Policy{Initial: 100 * time.Millisecond, Max: time.Second},
				MinGap: 50 * time.Millisecond, Rescan: 5 * time.Second,
			},
		})
	})
	stacktest.WaitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", port), time.Minute)

	f.publish(
		f.stored("dm-ab", 1, event.KindMessage, "u-ann", "hi bob, lunch?", event.RoomKindDM, "u-ann", "u-bob"),
		f.stored("r-general", 1, event.KindMessage, "u-ann", "hey @bob and @dan, standup moved", event.RoomKindRoom),
		f.stored("r-loud", 1, event.KindMessage, "u-cat", "pizza is here", event.RoomKindRoom),
	)
	m := rcv.Next(30 * time.Second)
	if len(m.To) != 1 || m.To[0] != "bob@mail.test" {
		t.Fatalf("mailed to %v", m.To)
	}
	for _, want := range []string{
		"You have 3 new notifications",
		"Direct message from ann", "hi bob, lunch?", "https://chat.test/?room=dm-ab&seq=1",
		"ann mentioned you in #general", "hey @bob and @dan, standup moved", "https://chat.test/?room=r-general&seq=1",
		"cat in #loud", "pizza is here", "https://chat.test/?room=r-loud&seq=1",
		"https://chat.test/api/email/unsubscribe?token=",
	} {
		if !strings.Contains(m.Text, want) {
			t.Errorf("the digest lacks %q:\n%s", want, m.Text)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for f.count(`SELECT count(*) FROM email_digests WHERE user_id = 'u-bob' AND status = 'sent'`) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("bob's digest not recorded as sent")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Digests are planned before any is sent, so dan's would exist by now.
	if n := f.count(`SELECT count(*) FROM notifications WHERE user_id = 'u-dan'`); n != 1 {
		t.Fatalf("dan has %d notifications, want 1", n)
	}
	if n := f.count(`SELECT count(*) FROM email_digests WHERE user_id <> 'u-bob'`); n != 0 {
		t.Errorf("%d digests for others", n)
	}
	if n := len(rcv.Messages()); n != 1 {
		t.Errorf("%d e-mails, want 1", n)
	}
	res, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(body), `kchat_notification_email_digests_total{outcome="sent"} 1`) {
		t.Errorf("/metrics does not count the digest:\n%s", body)
	}
}
