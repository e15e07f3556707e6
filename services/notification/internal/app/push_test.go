package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/backoff"
	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/service"
	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/pkg/webpush"
	"github.com/kchat/kchat/pkg/webpush/pushtest"
	"github.com/kchat/kchat/services/notification/internal/app"
	"github.com/kchat/kchat/services/notification/internal/email"
	"github.com/kchat/kchat/services/notification/internal/email/smtptest"
	"github.com/kchat/kchat/services/notification/internal/push"
)

// The scenario, from Kafka to the receivers: offline bob, with an e-mail address
// and two devices, gets one digest and one push per device for a DM and a mention, and
// nothing for a room he muted; cat, in her do-not-disturb hours, gets no push (her
// notifications exist, quiet); dan's device is gone (410) and is removed. The push
// service verifies every VAPID signature and decrypts every payload.
func TestNotification_push_email_and_preferences(t *testing.T) {
	f := newFixture(t)
	seedChat(f)
	keys, err := webpush.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	keys.Subject = "https://chat.test/contact"
	ps := pushtest.New(t, keys.Public)
	device := func(user, name string) {
		d := ps.Subscribe(t, name)
		f.exec(`INSERT INTO push_subscriptions (id, user_id, endpoint, p256dh, auth) VALUES ($1, $2, $3, $4, $5)`,
			uuid.Must(uuid.NewV7()).String(), user, d.Sub.Endpoint, d.Sub.P256dh, d.Sub.Auth)
	}
	device("u-bob", "bob-phone")
	device("u-bob", "bob-laptop")
	device("u-cat", "cat-phone")
	device("u-dan", "dan-old")
	ps.Respond("dan-old", func(int) int { return http.StatusGone })
	now := time.Now().UTC()
	minute := now.Hour()*60 + now.Minute()
	f.exec(`INSERT INTO email_settings (user_id, address, enabled, digest_interval) VALUES ('u-bob', 'bob@mail.test', true, interval '1 second')`)
	f.exec(`INSERT INTO room_notification_prefs (user_id, room_id, muted_until) VALUES ('u-bob', 'r-loud', $1)`, now.Add(time.Hour))
	f.exec(`INSERT INTO notification_prefs (user_id, level, dnd_start, dnd_end, dnd_zone) VALUES ('u-cat', 'all', $1, $2, 'UTC')`,
		(minute+24*60-60)%(24*60), (minute+60)%(24*60))
	rcv := smtptest.New(t, "127.0.0.1:0")

	port, group := startWithChannels(t, f, rcv.Port(), keys, 5*time.Second)

	f.publish(
		f.stored("dm-ab", 1, event.KindMessage, "u-ann", "lunch, bob?", event.RoomKindDM, "u-ann", "u-bob"),
		f.stored("r-general", 1, event.KindMessage, "u-ann", "@bob @cat @dan standup moved", event.RoomKindRoom),
		f.stored("r-loud", 1, event.KindMessage, "u-ann", "pizza is here", event.RoomKindRoom),
	)
	f.waitConsumed(group, time.Minute)

	// Every notification is committed now; the worker plans them all in its next scan.
	pushes := ps.Wait(t, 30*time.Second, "bob's four pushes and dan's 410", func(ps []pushtest.Push) bool {
		n := 0
		for _, p := range ps {
			if strings.HasPrefix(p.Device, "bob-") || p.Device == "dan-old" {
				n++
			}
		}
		return n >= 5
	})
	if r := ps.Rejected(); len(r) != 0 {
		t.Fatalf("the push service refused: %v", r)
	}
	titles := map[string][]string{}
	for _, p := range pushes {
		var m push.Message
		if err := json.Unmarshal(p.Payload, &m); err != nil {
			t.Fatal(err)
		}
		if p.Subject != keys.Subject {
			t.Errorf("VAPID sub %q", p.Subject)
		}
		titles[p.Device] = append(titles[p.Device], m.Title)
	}
	for _, dev := range []string{"bob-phone", "bob-laptop"} {
		got := strings.Join(titles[dev], " | ")
		if len(titles[dev]) != 2 || !strings.Contains(got, "Direct message from ann") || !strings.Contains(got, "ann mentioned you in #general") {
			t.Errorf("%s got %q, want the DM and the mention once each", dev, got)
		}
	}
	if len(titles["cat-phone"]) != 0 {
		t.Errorf("cat got pushes during do-not-disturb: %v", titles["cat-phone"])
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("not within 20s: %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("dan's gone device removed", func() bool { return f.count(`SELECT count(*) FROM push_subscriptions WHERE user_id = 'u-dan'`) == 0 })
	waitFor("bob's pushes recorded", func() bool {
		return f.count(`SELECT count(*) FROM push_deliveries WHERE status = 'sent'`) == 4
	})
	if n := f.count(`SELECT count(*) FROM notifications WHERE user_id = 'u-cat' AND quiet`); n != 2 {
		t.Errorf("cat has %d quiet notifications, want 2 (mention, notify_all room)", n)
	}
	if n := f.count(`SELECT count(*) FROM push_deliveries d JOIN notifications n ON n.id = d.notification_id WHERE n.user_id = 'u-cat'`); n != 0 {
		t.Errorf("%d pushes planned for cat", n)
	}
	if n := f.count(`SELECT count(*) FROM notifications WHERE user_id = 'u-bob' AND room_id = 'r-loud'`); n != 0 {
		t.Errorf("bob was notified of the muted room")
	}

	m := rcv.Next(30 * time.Second)
	if len(m.To) != 1 || m.To[0] != "bob@mail.test" || !strings.Contains(m.Text, "You have 2 new notifications") ||
		!strings.Contains(m.Text, "lunch, bob?") || !strings.Contains(m.Text, "standup moved") || strings.Contains(m.Text, "pizza") {
		t.Errorf("digest to %v:\n%s", m.To, m.Text)
	}

	res, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{`kchat_notification_push_deliveries_total{outcome="sent"} 4`, `kchat_notification_push_deliveries_total{outcome="removed"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// startWithChannels runs the notification service on f's topics with e-mail (SMTP on
// 127.0.0.1:smtpPort, bob's digests every second) and Web Push on, and returns its HTTP
// port and consumer group once it is ready.
func startWithChannels(t *testing.T, f *fixture, smtpPort int, keys webpush.Keys, sendTimeout time.Duration) (int, string) {
	t.Helper()
	port := stacktest.FreePort(t)
	group := stacktest.UniqueName("notification-")
	f.background(func(ctx context.Context) error {
		return app.Run(ctx, app.Config{
			Brokers: f.env.Brokers, Security: f.env.Security, DatabaseURL: f.dbURL, HTTPAddr: fmt.Sprintf("127.0.0.1:%d", port),
			TopicPrefix: f.names(""), Group: group, StartOffset: kafka.FirstOffset,
			PresenceExpiry: 10 * time.Second, Admin: service.NewAdmin(),
			Email: &email.Config{
				SMTP: email.SMTPConfig{Host: "127.0.0.1", Port: smtpPort, TLS: email.TLSNone},
				From: "kchat <noreply@kchat.test>", BaseURL: "https://chat.test", TokenKey: []byte(strings.Repeat("k", 32)),
				SendTimeout: sendTimeout, Retry: backoff.Policy{Initial: 100 * time.Millisecond, Max: time.Second},
				MinGap: 50 * time.Millisecond, Rescan: 5 * time.Second,
			},
			Push: &push.Config{Keys: keys, SendTimeout: 5 * time.Second, MinGap: 50 * time.Millisecond, Rescan: 5 * time.Second,
				Retry: backoff.Policy{Initial: 100 * time.Millisecond, Max: time.Second}},
		})
	})
	stacktest.WaitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", port), time.Minute)
	return port, group
}

// A channel that hangs does not hold up the others: with bob's SMTP server accepting
// connections and never answering, his DM is pushed to his phone while the digest's send
// is still stuck, and the stuck channel shows in the e-mail metrics once its send times
// out (what the KChatNotificationChannelFailing alert watches). The timeout is longer
// than the workers' 10 s for a database write on purpose: the outcome of a send that long
// used to miss its deadline, counted as a database error and left the digest to be
// sent again.
func TestNotification_a_hanging_channel_does_not_delay_the_others(t *testing.T) {
	f := newFixture(t)
	seedChat(f)
	keys, err := webpush.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	keys.Subject = "https://chat.test/contact"
	ps := pushtest.New(t, keys.Public)
	d := ps.Subscribe(t, "bob-phone")
	f.exec(`INSERT INTO push_subscriptions (id, user_id, endpoint, p256dh, auth) VALUES ($1, 'u-bob', $2, $3, $4)`,
		uuid.Must(uuid.NewV7()).String(), d.Sub.Endpoint, d.Sub.P256dh, d.Sub.Auth)
	f.exec(`INSERT INTO email_settings (user_id, address, enabled, digest_interval) VALUES ('u-bob', 'bob@mail.test', true, interval '1 second')`)

	// The kernel completes the handshake for the listen backlog; nobody ever greets.
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()
	connected := make(chan struct{}, 16)
	go func() {
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			connected <- struct{}{}
			defer c.Close()
		}
	}()
	const sendTimeout = 12 * time.Second
	port, group := startWithChannels(t, f, hung.Addr().(*net.TCPAddr).Port, keys, sendTimeout)

	f.publish(f.stored("dm-ab", 1, event.KindMessage, "u-ann", "lunch, bob?", event.RoomKindDM, "u-ann", "u-bob"))
	f.waitConsumed(group, time.Minute)
	select {
	case <-connected:
	case <-time.After(30 * time.Second):
		t.Fatal("the e-mail worker never connected to the SMTP server")
	}
	start := time.Now()
	ps.Wait(t, 30*time.Second, "bob's push", func(ps []pushtest.Push) bool { return len(ps) >= 1 })
	if waited := time.Since(start); waited >= sendTimeout {
		t.Fatalf("the push came %s after the e-mail send hung, not before its %s timeout", waited, sendTimeout)
	}
	if r := ps.Rejected(); len(r) != 0 {
		t.Fatalf("the push service refused: %v", r)
	}
	metric := func() string {
		res, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return string(body)
	}
	if m := metric(); !strings.Contains(m, `kchat_notification_email_digests_total{outcome="retry"} 0`) {
		t.Fatalf("an e-mail attempt ended while the send should still hang:\n%s", m)
	}
	deadline := time.Now().Add(sendTimeout + 30*time.Second)
	for !strings.Contains(metric(), `kchat_notification_email_digests_total{outcome="retry"} 1`) {
		if time.Now().After(deadline) {
			t.Fatalf("the hung send was never counted as a retry:\n%s", metric())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if m := metric(); !strings.Contains(m, "kchat_notification_email_db_errors_total 0") {
		t.Fatalf("recording the hung send's outcome failed:\n%s", m)
	}
}
