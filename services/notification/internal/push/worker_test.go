package push_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kchat/kchat/pkg/backoff"
	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/pkg/webpush"
	"github.com/kchat/kchat/pkg/webpush/pushtest"
	"github.com/kchat/kchat/services/notification/internal/push"
)

// fixture is one test's database (users ann, bob, cat; a DM of ann and bob; room
// general), VAPID keys and a push service that verifies and decrypts.
type fixture struct {
	t     *testing.T
	url   string
	pool  *pgxpool.Pool
	keys  webpush.Keys
	ps    *pushtest.Server
	count int
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	env := stacktest.Get(t)
	f := &fixture{t: t, url: env.NewDatabase(t)}
	f.pool = f.newPool()
	var err error
	if f.keys, err = webpush.GenerateKeys(); err != nil {
		t.Fatal(err)
	}
	f.keys.Subject = "mailto:ops@kchat.test"
	f.ps = pushtest.New(t, f.keys.Public)
	f.exec(`
		INSERT INTO users (id, username, password_hash) VALUES ('u-ann', 'ann', 'x'), ('u-bob', 'bob', 'x'), ('u-cat', 'cat', 'x');
		INSERT INTO rooms (id, name, kind) VALUES ('dm-ab', 'ann+bob', 'dm'), ('r-general', 'general', 'room');
		INSERT INTO room_members (room_id, user_id) VALUES ('dm-ab', 'u-ann'), ('dm-ab', 'u-bob'),
		  ('r-general', 'u-ann'), ('r-general', 'u-bob'), ('r-general', 'u-cat');`)
	return f
}

func (f *fixture) newPool() *pgxpool.Pool {
	pool, err := pgxpool.New(context.Background(), f.url)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(pool.Close)
	return pool
}

func (f *fixture) exec(sql string, args ...any) {
	f.t.Helper()
	if _, err := f.pool.Exec(context.Background(), sql, args...); err != nil {
		f.t.Fatalf("%v\n%s", err, sql)
	}
}

func (f *fixture) num(sql string, args ...any) int {
	f.t.Helper()
	var n int
	if err := f.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		f.t.Fatalf("%v\n%s", err, sql)
	}
	return n
}

// device subscribes a new device of user at the push service and stores it as the
// gateway does.
func (f *fixture) device(user, name string) *pushtest.Device {
	f.t.Helper()
	d := f.ps.Subscribe(f.t, name)
	f.exec(`INSERT INTO push_subscriptions (id, user_id, endpoint, p256dh, auth) VALUES ($1, $2, $3, $4, $5)`,
		uuid.Must(uuid.NewV7()).String(), user, d.Sub.Endpoint, d.Sub.P256dh, d.Sub.Auth)
	return d
}

// notify inserts a notification as the notification handler does and returns its id.
func (f *fixture) notify(user, room, reason, preview string) string {
	f.t.Helper()
	f.count++
	id := uuid.Must(uuid.NewV7()).String()
	f.exec(`INSERT INTO notifications (id, user_id, room_id, seq, reason, sender, preview) VALUES ($1, $2, $3, $4, $5, 'u-ann', $6)`,
		id, user, room, f.count, reason, preview)
	return id
}

func (f *fixture) config(m *push.Metrics) push.Config {
	return push.Config{Keys: f.keys, SendTimeout: 2 * time.Second, Lease: 2 * time.Second,
		Retry:  backoff.Policy{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond},
		Rescan: 2 * time.Second, MinGap: 20 * time.Millisecond, Metrics: m}
}

// run starts a worker on pool until the test ends; stop cancels it and waits for Run.
func run(t *testing.T, pool *pgxpool.Pool, cfg push.Config) (stop func()) {
	t.Helper()
	w, err := push.New(pool, cfg)
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
	return stop
}

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

func decode(t *testing.T, p pushtest.Push) push.Message {
	t.Helper()
	var m push.Message
	if err := json.Unmarshal(p.Payload, &m); err != nil {
		t.Fatalf("payload %q: %v", p.Payload, err)
	}
	return m
}

// byKey counts a device's pushes by idempotency key (the notification id in the
// payload), checking that every copy of one key is the same push.
func byKey(t *testing.T, ps []pushtest.Push, device string) map[string]int {
	t.Helper()
	out := map[string]int{}
	first := map[string]string{}
	for _, p := range ps {
		if p.Device != device {
			continue
		}
		m := decode(t, p)
		if p.Topic != push.Topic(m.ID) {
			t.Errorf("%s: Topic %q for notification %s", device, p.Topic, m.ID)
		}
		if prev, ok := first[m.ID]; ok && prev != string(p.Payload) {
			t.Errorf("%s: two different pushes for notification %s:\n%s\n%s", device, m.ID, prev, p.Payload)
		}
		first[m.ID] = string(p.Payload)
		out[m.ID]++
	}
	return out
}

// One push per device and notification, verified (VAPID) and decrypted by the push
// service; nothing for notifications read, quiet (do-not-disturb), older than the
// subscription, or of users without devices.
func TestWorker_one_push_per_device(t *testing.T) {
	f := newFixture(t)
	old := f.notify("u-bob", "r-general", "mention", "before the phone was subscribed")
	f.exec(`UPDATE notifications SET created_at = now() - interval '1 minute' WHERE id = $1`, old)
	f.device("u-bob", "bob-phone")
	f.device("u-bob", "bob-laptop")
	dm := f.notify("u-bob", "dm-ab", "dm", "lunch?")
	mention := f.notify("u-bob", "r-general", "mention", "hey @bob")
	read := f.notify("u-bob", "r-general", "mention", "read already")
	f.exec(`UPDATE notifications SET read_at = now() WHERE id = $1`, read)
	quiet := f.notify("u-bob", "r-general", "mention", "during do-not-disturb")
	f.exec(`UPDATE notifications SET quiet = true WHERE id = $1`, quiet)
	f.notify("u-cat", "r-general", "mention", "cat has no device")

	m := push.NewMetrics(nil)
	run(t, f.pool, f.config(m))
	ps := f.ps.Wait(t, 20*time.Second, "four pushes", func(ps []pushtest.Push) bool { return len(ps) >= 4 })
	waitFor(t, 10*time.Second, "four sent recorded", func() bool { return testutil.ToFloat64(m.Outcome(push.OutcomeSent)) == 4 })
	if r := f.ps.Rejected(); len(r) != 0 {
		t.Fatalf("the push service refused: %v", r)
	}
	for _, dev := range []string{"bob-phone", "bob-laptop"} {
		got := byKey(t, ps, dev)
		if len(got) != 2 || got[dm] != 1 || got[mention] != 1 {
			t.Errorf("%s got %v, want one push each of %s and %s", dev, got, dm, mention)
		}
	}
	for _, p := range ps {
		msg := decode(t, p)
		if p.Subject != "mailto:ops@kchat.test" || p.TTL != "86400" || p.Urgency != "high" {
			t.Errorf("headers: sub %q TTL %q urgency %q", p.Subject, p.TTL, p.Urgency)
		}
		switch msg.ID {
		case dm:
			if msg.Title != "Direct message from ann" || msg.Preview != "lunch?" || msg.URL != "/?room=dm-ab&seq=2" {
				t.Errorf("dm push %+v", msg)
			}
		case mention:
			if msg.Title != "ann mentioned you in #general" || msg.URL != "/?room=r-general&seq=3" {
				t.Errorf("mention push %+v", msg)
			}
		}
	}
	if n := f.num(`SELECT count(*) FROM push_deliveries WHERE status = 'sent'`); n != 4 {
		t.Errorf("%d deliveries sent, want 4", n)
	}
	// The read one was never planned: planning reads unread notifications only.
	if n := f.num(`SELECT count(*) FROM push_deliveries WHERE notification_id = ANY($1::text[])`, []string{old, read, quiet}); n != 0 {
		t.Errorf("%d deliveries planned for old, read or quiet notifications", n)
	}
	if got := testutil.ToFloat64(m.Planned()); got != 4 {
		t.Errorf("planned %v, want 4", got)
	}
}

// A device the push service reports gone is removed; one that is overloaded (503, 429)
// is retried with backoff and delivered once it recovers; a refusal (400) is given up.
func TestWorker_gone_removed_overload_retried(t *testing.T) {
	f := newFixture(t)
	f.device("u-bob", "gone")
	f.device("u-bob", "busy")
	f.device("u-cat", "broken")
	f.ps.Respond("gone", func(int) int { return 410 })
	f.ps.Respond("busy", func(n int) int {
		switch n {
		case 1:
			return 503
		case 2:
			return 429
		}
		return 201
	})
	f.ps.Respond("broken", func(int) int { return 400 })
	id := f.notify("u-bob", "dm-ab", "dm", "are you there?")
	f.notify("u-cat", "r-general", "mention", "cat?")

	m := push.NewMetrics(nil)
	run(t, f.pool, f.config(m))
	waitFor(t, 20*time.Second, "gone removed, busy sent, broken failed", func() bool {
		return testutil.ToFloat64(m.Outcome(push.OutcomeRemoved)) == 1 && testutil.ToFloat64(m.Outcome(push.OutcomeSent)) == 1 &&
			testutil.ToFloat64(m.Outcome(push.OutcomeFailed)) == 1
	})
	if n := f.num(`SELECT count(*) FROM push_subscriptions WHERE endpoint LIKE '%/gone'`); n != 0 {
		t.Errorf("the gone subscription is still there")
	}
	if n := f.num(`SELECT count(*) FROM push_subscriptions`); n != 2 {
		t.Errorf("%d subscriptions left, want busy and broken", n)
	}
	if got := testutil.ToFloat64(m.Outcome(push.OutcomeRetry)); got != 2 {
		t.Errorf("retries %v, want 2 (503, 429)", got)
	}
	ps := f.ps.Pushes()
	if got := byKey(t, ps, "busy"); got[id] != 3 || len(got) != 1 {
		t.Errorf("busy got %v, want 3 attempts of %s", got, id)
	}
	if n := f.num(`SELECT count(*) FROM push_deliveries WHERE status = 'failed' AND last_error LIKE '%400%'`); n != 1 {
		t.Errorf("%d failed deliveries with the 400 recorded, want 1", n)
	}
}

// The worker dies after the push service accepted a push and before it recorded it (its
// database connections gone): the next worker sends it again once the lease expires,
// with the same idempotency key and content, and never a second different push.
func TestWorker_crash_after_acceptance_resends_same_key(t *testing.T) {
	f := newFixture(t)
	f.device("u-bob", "phone")
	dm := f.notify("u-bob", "dm-ab", "dm", "first")
	mention := f.notify("u-bob", "r-general", "mention", "second")

	crashed := make(chan struct{})
	first := f.newPool()
	var once sync.Once
	f.ps.OnPush(func(p pushtest.Push) {
		// The first accepted push: the process "dies" before recording it.
		once.Do(func() {
			first.Close()
			close(crashed)
		})
	})
	m1 := push.NewMetrics(nil)
	cfg1 := f.config(m1)
	cfg1.Concurrency = 1
	stop1 := run(t, first, cfg1)
	<-crashed
	stop1()
	if got := testutil.ToFloat64(m1.Outcome(push.OutcomeSent)); got != 0 {
		t.Fatalf("the crashed worker recorded %v sent", got)
	}

	m2 := push.NewMetrics(nil)
	run(t, f.newPool(), f.config(m2))
	waitFor(t, 20*time.Second, "both recorded sent", func() bool {
		return f.num(`SELECT count(*) FROM push_deliveries WHERE status = 'sent'`) == 2
	})
	ps := f.ps.Pushes()
	got := byKey(t, ps, "phone")
	if len(got) != 2 || got[dm] < 1 || got[mention] < 1 {
		t.Fatalf("keys %v, want %s and %s", got, dm, mention)
	}
	// Exactly one key was sent twice: the one in flight at the crash.
	if len(ps) != 3 || got[dm]+got[mention] != 3 {
		t.Fatalf("%d pushes %v, want 3 (one resent)", len(ps), got)
	}
	if r := f.ps.Rejected(); len(r) != 0 {
		t.Fatalf("rejected: %v", r)
	}
}

func TestConfig_Validate(t *testing.T) {
	keys, _ := webpush.GenerateKeys()
	other, _ := webpush.GenerateKeys()
	for _, tc := range []struct {
		name string
		cfg  push.Config
		want string
	}{
		{"no keys", push.Config{}, "VAPID keys are required"},
		{"no subject", push.Config{Keys: webpush.Keys{Public: keys.Public, Private: keys.Private}}, "subject"},
		{"mismatched", push.Config{Keys: webpush.Keys{Public: keys.Public, Private: other.Private, Subject: "mailto:a@b.example"}}, "does not belong"},
		{"garbage", push.Config{Keys: webpush.Keys{Public: "abc", Private: "def", Subject: "mailto:a@b.example"}}, "public key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
}
