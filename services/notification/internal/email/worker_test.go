package email_test

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus/testutil"
	gomail "github.com/wneessen/go-mail"

	"github.com/kchat/kchat/pkg/backoff"
	"github.com/kchat/kchat/pkg/emailtoken"
	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/services/notification/internal/email"
	"github.com/kchat/kchat/services/notification/internal/email/smtptest"
)

const baseURL = "http://chat.test:8081"

// fixture is one test's database with users ann, bob, cat and dan, a DM between ann and
// bob, and rooms general and loud with everyone in them.
type fixture struct {
	t    *testing.T
	pool *pgxpool.Pool
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	env := stacktest.Get(t)
	pool := env.NewDatabasePool(t)
	f := &fixture{t: t, pool: pool}
	f.exec(`
		INSERT INTO users (id, username, password_hash) VALUES
		  ('u-ann', 'ann', 'x'), ('u-bob', 'bob', 'x'), ('u-cat', 'cat', 'x'), ('u-dan', 'dan', 'x');
		INSERT INTO rooms (id, name, kind) VALUES
		  ('dm-ab', 'ann+bob', 'dm'), ('r-general', 'general', 'room'), ('r-loud', 'loud', 'room');
		INSERT INTO room_members (room_id, user_id) VALUES ('dm-ab', 'u-ann'), ('dm-ab', 'u-bob'),
		  ('r-general', 'u-ann'), ('r-general', 'u-bob'), ('r-general', 'u-cat'), ('r-general', 'u-dan'),
		  ('r-loud', 'u-ann'), ('r-loud', 'u-bob'), ('r-loud', 'u-cat'), ('r-loud', 'u-dan');`)
	return f
}

func (f *fixture) exec(sql string, args ...any) {
	f.t.Helper()
	if _, err := f.pool.Exec(context.Background(), sql, args...); err != nil {
		f.t.Fatalf("%v\n%s", err, sql)
	}
}

func (f *fixture) str(sql string, args ...any) string {
	f.t.Helper()
	var s string
	if err := f.pool.QueryRow(context.Background(), sql, args...).Scan(&s); err != nil {
		f.t.Fatalf("%v\n%s", err, sql)
	}
	return s
}

// emailOn gives user an address with e-mail on and a one-second digest interval.
func (f *fixture) emailOn(user string) string {
	addr := strings.TrimPrefix(user, "u-") + "@mail.test"
	f.exec(`INSERT INTO email_settings (user_id, address, enabled, digest_interval) VALUES ($1, $2, true, interval '1 second')`, user, addr)
	return addr
}

// notify inserts a notification as the notification handler does and returns its id.
func (f *fixture) notify(user, room string, seq int64, reason, sender, preview string) string {
	f.t.Helper()
	id := uuid.Must(uuid.NewV7()).String()
	f.exec(`INSERT INTO notifications (id, user_id, room_id, seq, reason, sender, preview) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		id, user, room, seq, reason, sender, preview)
	return id
}

// waitFor polls cond until it holds; the worker's progress is in PostgreSQL and metrics.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func config(port int, m *email.Metrics) email.Config {
	return email.Config{
		SMTP: email.SMTPConfig{Host: "127.0.0.1", Port: port, TLS: email.TLSNone},
		From: "kchat <noreply@kchat.test>", BaseURL: baseURL, TokenKey: []byte(goldenKey),
		SendTimeout: 2 * time.Second, Lease: 3 * time.Second,
		Retry:  backoff.Policy{Initial: 100 * time.Millisecond, Max: 400 * time.Millisecond},
		Rescan: 2 * time.Second, MinGap: 20 * time.Millisecond, Metrics: m,
	}
}

// run starts a worker until the test ends; stop cancels it and waits for Run to return.
func run(t *testing.T, f *fixture, cfg email.Config) (w *email.Worker, stop func()) {
	t.Helper()
	w, err := email.New(f.pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("worker: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Error("worker did not stop within 20s")
			}
		})
	}
	t.Cleanup(stop)
	return w, stop
}

// covering maps each preview to the distinct Message-IDs whose text lists it.
func covering(msgs []smtptest.Message, previews ...string) map[string][]string {
	out := map[string][]string{}
	for _, m := range msgs {
		for _, p := range previews {
			if strings.Contains(m.Text, p) && !slices.Contains(out[p], m.MessageID) {
				out[p] = append(out[p], m.MessageID)
			}
		}
	}
	return out
}

// assertOneDigestEach fails if a preview is listed by no e-mail or by two different ones
// (the same Message-ID twice is a resend of one digest, which a receiver deduplicates).
func assertOneDigestEach(t *testing.T, msgs []smtptest.Message, previews ...string) {
	t.Helper()
	for p, ids := range covering(msgs, previews...) {
		if len(ids) != 1 {
			t.Errorf("%q is in %d different digests: %v", p, len(ids), ids)
		}
	}
	if c := covering(msgs, previews...); len(c) != len(previews) {
		t.Errorf("only %d of %d notifications were mailed: %v", len(c), len(previews), c)
	}
}

func TestWorker_one_digest_per_window_only_for_users_with_email_on(t *testing.T) {
	f := newFixture(t)
	rcv := smtptest.New(t, "127.0.0.1:0")
	bob := f.emailOn("u-bob")

	// Nobody but bob may get anything: each case is a reason not to mail.
	f.exec(`INSERT INTO email_settings (user_id, address, enabled, digest_interval) VALUES ('u-cat', 'cat@mail.test', false, interval '1 second')`)
	f.notify("u-cat", "r-general", 1, "mention", "u-ann", "cat is off")
	f.emailOn("u-dan")
	read := f.notify("u-dan", "r-general", 2, "mention", "u-ann", "dan read it")
	f.exec(`UPDATE notifications SET read_at = now() WHERE id = $1`, read)
	f.emailOn("u-ann")
	old := f.notify("u-ann", "r-loud", 1, "room", "u-bob", "ann's is older than her settings")
	f.exec(`UPDATE notifications SET created_at = now() - interval '1 hour' WHERE id = $1`, old)
	// Created during bob's do-not-disturb hours: in the app only, never mailed.
	quiet := f.notify("u-bob", "r-general", 4, "mention", "u-ann", "bob's quiet one")
	f.exec(`UPDATE notifications SET quiet = true WHERE id = $1`, quiet)

	previews := []string{"hi bob, it's ann", "hey @bob look", "lunch at noon?"}
	f.notify("u-bob", "dm-ab", 1, "dm", "u-ann", previews[0])
	f.notify("u-bob", "r-general", 3, "mention", "u-ann", previews[1])
	f.notify("u-bob", "r-loud", 2, "room", "u-cat", previews[2])

	metrics := email.NewMetrics(nil)
	run(t, f, config(rcv.Port(), metrics))

	m := rcv.Next(15 * time.Second)
	if !slices.Equal(m.To, []string{bob}) {
		t.Fatalf("mailed to %v, want %s", m.To, bob)
	}
	for _, want := range []string{
		"Hello bob,", "You have 3 new notifications",
		"Direct message from ann", "ann mentioned you in #general", "cat in #loud",
		baseURL + "/?room=dm-ab&seq=1", baseURL + "/?room=r-general&seq=3", baseURL + "/?room=r-loud&seq=2",
	} {
		if !strings.Contains(m.Text, want) {
			t.Errorf("the digest lacks %q:\n%s", want, m.Text)
		}
	}
	assertOneDigestEach(t, []smtptest.Message{m}, previews...)
	if m.Subject != "3 new notifications on kchat" {
		t.Errorf("subject %q", m.Subject)
	}
	digest := f.str(`SELECT id FROM email_digests WHERE user_id = 'u-bob'`)
	if want := "<" + email.MessageID(digest, "kchat.test") + ">"; m.MessageID != want {
		t.Errorf("Message-ID %s, want %s", m.MessageID, want)
	}
	// The unsubscribe link (in the text and in List-Unsubscribe) carries bob's token.
	unsub := baseURL + "/api/email/unsubscribe?token=" + url.QueryEscape(emailtoken.Sign([]byte(goldenKey), "u-bob"))
	if !strings.Contains(m.Text, unsub) || m.Header.Get("List-Unsubscribe") != "<"+unsub+">" {
		t.Errorf("no unsubscribe link %s:\n%s\n%v", unsub, m.Text, m.Header)
	}
	if !strings.Contains(m.HTML, `href="`+strings.ReplaceAll(unsub, "&", "&amp;")+`"`) {
		t.Errorf("the HTML part has no unsubscribe link:\n%s", m.HTML)
	}
	waitFor(t, 10*time.Second, "digest recorded as sent", func() bool {
		return f.str(`SELECT status FROM email_digests WHERE id = $1`, digest) == "sent"
	})

	// A later notification makes a second digest, one interval later, with only itself:
	// by then every case above has been scanned at least twice.
	f.notify("u-bob", "dm-ab", 2, "dm", "u-ann", "one more thing")
	second := rcv.Next(15 * time.Second)
	if second.MessageID == m.MessageID || strings.Contains(second.Text, previews[0]) || !strings.Contains(second.Text, "one more thing") {
		t.Fatalf("second digest %s:\n%s", second.MessageID, second.Text)
	}
	if second.Subject != "Direct message from ann" {
		t.Errorf("subject of a one-notification digest: %q", second.Subject)
	}
	assertOneDigestEach(t, rcv.Messages(), append(previews, "one more thing")...)
	if n := f.str(`SELECT count(*)::text FROM email_digests WHERE user_id <> 'u-bob'`); n != "0" {
		t.Errorf("%s digests for users who must get none", n)
	}
	if got := len(rcv.Messages()); got != 2 {
		t.Errorf("%d e-mails, want 2", got)
	}
	waitFor(t, 10*time.Second, "two digests recorded as sent", func() bool {
		return testutil.ToFloat64(metrics.Outcome(email.OutcomeSent)) == 2
	})
}

// hangingMailer sends through the real SMTP client and, the first time, then hangs until
// released, as a process that froze (or was about to crash) between the server's
// acceptance and the record of it would. Once released, the worker it belongs to runs on
// and may send again: those sends pass straight through.
type hangingMailer struct {
	real     email.Mailer
	once     sync.Once
	accepted chan struct{}
	release  chan struct{}
}

func (h *hangingMailer) Send(ctx context.Context, m *gomail.Msg) error {
	err := h.real.Send(ctx, m)
	h.once.Do(func() {
		close(h.accepted)
		<-h.release
	})
	return err
}

func TestWorker_resend_after_a_crash_keeps_the_message_id(t *testing.T) {
	for _, tc := range []struct {
		name string
		// crash runs a first worker into the failure and returns once it is gone (or
		// hung); the second worker then starts.
		crash func(t *testing.T, f *fixture, rcv *smtptest.Receiver, cfg email.Config) (after func())
	}{
		{"server accepted after the client timed out, worker restarted", func(t *testing.T, f *fixture, rcv *smtptest.Receiver, cfg email.Config) func() {
			entered, release := make(chan struct{}), make(chan struct{})
			var once sync.Once
			rcv.OnData = func(smtptest.Message) error {
				once.Do(func() {
					close(entered)
					<-release // hold the reply until the first worker has given up
				})
				return nil
			}
			cfg.SendTimeout = 500 * time.Millisecond
			_, stop := run(t, f, cfg)
			select {
			case <-entered:
			case <-time.After(15 * time.Second):
				t.Fatal("the first worker sent nothing")
			}
			stop() // returns once the attempt in flight timed out and was recorded
			close(release)
			return func() {}
		}},
		{"server accepted, worker hung before recording, lease expired", func(t *testing.T, f *fixture, rcv *smtptest.Receiver, cfg email.Config) func() {
			real, err := email.NewSMTPMailer(cfg.SMTP, cfg.SendTimeout)
			if err != nil {
				t.Fatal(err)
			}
			h := &hangingMailer{real: real, accepted: make(chan struct{}), release: make(chan struct{})}
			cfg.Mailer, cfg.Lease = h, time.Second
			run(t, f, cfg)
			select {
			case <-h.accepted:
			case <-time.After(15 * time.Second):
				t.Fatal("the first worker sent nothing")
			}
			return func() { close(h.release) } // wakes it after the second one resent
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			rcv := smtptest.New(t, "127.0.0.1:0")
			f.emailOn("u-bob")
			previews := []string{"first", "second", "third"}
			for i, p := range previews {
				f.notify("u-bob", "r-general", int64(i+1), "mention", "u-ann", "@bob "+p)
			}
			cfg := config(rcv.Port(), nil)
			after := tc.crash(t, f, rcv, cfg)

			metrics := email.NewMetrics(nil)
			cfg.Metrics = metrics
			run(t, f, cfg)
			first, again := rcv.Next(15*time.Second), rcv.Next(15*time.Second)
			after()
			if first.MessageID != again.MessageID || first.Text != again.Text {
				t.Fatalf("the resend differs: %s vs %s\n%s\n%s", first.MessageID, again.MessageID, first.Text, again.Text)
			}
			if rcv.Copies(first.MessageID) != 2 {
				t.Fatalf("%d copies of %s, want 2", rcv.Copies(first.MessageID), first.MessageID)
			}
			waitFor(t, 10*time.Second, "digest recorded as sent", func() bool {
				return f.str(`SELECT status FROM email_digests WHERE user_id = 'u-bob'`) == "sent"
			})
			// The released first worker may have recorded "sent" before the second one,
			// which then records it too, a moment later: wait for the second's count.
			waitFor(t, 10*time.Second, "the second worker's send counted", func() bool {
				return testutil.ToFloat64(metrics.Outcome(email.OutcomeSent)) == 1
			})
			// A new notification gets a digest of its own, which shows that the covered
			// ones are not planned again.
			f.notify("u-bob", "dm-ab", 1, "dm", "u-ann", "fourth")
			last := rcv.Next(15 * time.Second)
			if last.MessageID == first.MessageID {
				t.Fatalf("the fourth notification came in the old digest")
			}
			assertOneDigestEach(t, rcv.Messages(), "@bob first", "@bob second", "@bob third", "fourth")
		})
	}
}

func TestWorker_SMTP_down_is_retried_until_it_is_back(t *testing.T) {
	f := newFixture(t)
	f.emailOn("u-bob")
	f.notify("u-bob", "dm-ab", 1, "dm", "u-ann", "are you there?")
	port := stacktest.FreePort(t) // nothing listens there yet
	metrics := email.NewMetrics(nil)
	run(t, f, config(port, metrics))

	waitFor(t, 15*time.Second, "two failed attempts", func() bool {
		return testutil.ToFloat64(metrics.Outcome(email.OutcomeRetry)) >= 2
	})
	if e := f.str(`SELECT coalesce(last_error, '') FROM email_digests WHERE user_id = 'u-bob'`); !strings.Contains(e, "dial") {
		t.Errorf("last_error %q does not say the dial failed", e)
	}
	rcv := smtptest.New(t, fmt.Sprintf("127.0.0.1:%d", port))
	m := rcv.Next(15 * time.Second)
	if !strings.Contains(m.Text, "are you there?") {
		t.Fatalf("delivered:\n%s", m.Text)
	}
	waitFor(t, 10*time.Second, "digest recorded as sent", func() bool {
		return testutil.ToFloat64(metrics.Outcome(email.OutcomeSent)) == 1
	})
	if got := f.str(`SELECT status || ' ' || (attempts > 2)::text FROM email_digests WHERE user_id = 'u-bob'`); got != "sent true" {
		t.Errorf("digest: %s, want sent after more than two attempts", got)
	}
}

func TestWorker_switched_off_after_planning_sends_nothing(t *testing.T) {
	f := newFixture(t)
	rcv := smtptest.New(t, "127.0.0.1:0")
	refused := make(chan struct{}, 10)
	// The first attempt is refused with a temporary error; while it waits for its retry,
	// bob follows the unsubscribe link.
	rcv.OnData = func(smtptest.Message) error {
		refused <- struct{}{}
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	}
	f.emailOn("u-bob")
	f.notify("u-bob", "dm-ab", 1, "dm", "u-ann", "never mailed")
	metrics := email.NewMetrics(nil)
	cfg := config(rcv.Port(), metrics)
	cfg.Retry = backoff.Policy{Initial: time.Second, Max: time.Second}
	run(t, f, cfg)
	select {
	case <-refused:
	case <-time.After(15 * time.Second):
		t.Fatal("no attempt")
	}
	f.exec(`UPDATE email_settings SET enabled = false WHERE user_id = 'u-bob'`)
	waitFor(t, 10*time.Second, "digest cancelled", func() bool {
		return f.str(`SELECT status FROM email_digests WHERE user_id = 'u-bob'`) == "cancelled"
	})
	if n := len(rcv.Messages()); n != 0 {
		t.Fatalf("%d e-mails accepted", n)
	}
	if got := testutil.ToFloat64(metrics.Outcome(email.OutcomeCancelled)); got != 1 {
		t.Errorf("cancelled counter %v", got)
	}
}
