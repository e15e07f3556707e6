package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/localstack"
	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/pkg/topics"
	"github.com/kchat/kchat/services/gateway/internal/gwtest"
)

// TestKafkaSecurity_processes runs the four services as real processes against a
// throwaway secured cluster (three brokers on ports and state of their own, one SASL_SSL
// listener, SCRAM-SHA-512, the ACL matrix; what `make dev` runs), each service
// logging in as its own principal from KAFKA_TLS_CA_FILE, KAFKA_SASL_MECHANISM,
// KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD_FILE, as devstack and the Kubernetes
// Deployments set them. PostgreSQL is the shared stack's.
//
// pkg/localstack's TestSecuredCluster proves the client side (round trip, refusals,
// TLS errors) through pkg clients; this adds what only the processes show: every
// service's path works under its principal's ACLs, a wrong password stops a service at
// start saying so, and a gateway whose principal may not write chat.submitted reports
// the refusal.
func TestKafkaSecurity_processes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three Kafka JVMs and the whole platform")
	}
	env := stacktest.Get(t)
	db := env.NewDatabase(t)
	began := time.Now()
	st, up := startSecuredKafka(t, env.Root)
	bins := map[string]string{}
	for _, svc := range []string{"persistence", "fanout", "notification", "gateway"} {
		bins[svc] = env.Build(t, "./services/"+svc)
	}
	up()
	t.Logf("secured cluster with topics and ACLs, binaries built: %s", time.Since(began).Round(100*time.Millisecond))
	brokers := strings.Join(st.Info().Brokers, ",")

	// run starts a service as user; extra environment comes last and wins.
	run := func(t *testing.T, name, bin, user string, extra ...string) (*stacktest.Process, string) {
		t.Helper()
		sec, err := st.ClientEnv(user)
		if err != nil {
			t.Fatal(err)
		}
		addr := fmt.Sprintf("127.0.0.1:%d", stacktest.FreePort(t))
		vars := append(sec, "KAFKA_BROKERS="+brokers, "DATABASE_URL="+db, "HTTP_ADDR="+addr, "TOPIC_PREFIX=", "LOG_LEVEL=info")
		return env.Start(t, name, bin, append(vars, extra...)), "http://" + addr
	}
	_, pURL := run(t, "persistence", bins["persistence"], localstack.PersistenceUser)
	_, fURL := run(t, "fanout", bins["fanout"], localstack.FanoutUser)
	_, nURL := run(t, "notification", bins["notification"], localstack.NotificationUser)
	_, a := run(t, "gw-a", bins["gateway"], localstack.GatewayUser, "GATEWAY_ID=gw-a", "RATE_LIMITS=off")
	_, b := run(t, "gw-b", bins["gateway"], localstack.GatewayUser, "GATEWAY_ID=gw-b", "RATE_LIMITS=off")
	for _, u := range []string{pURL, fURL, nURL, a, b} {
		stacktest.WaitHTTP(t, u+"/readyz", 2*time.Minute)
	}
	t.Logf("services ready: %s", time.Since(began).Round(100*time.Millisecond))
	wsA, wsB := strings.Replace(a, "http", "ws", 1)+"/ws", strings.Replace(b, "http", "ws", 1)+"/ws"

	t.Run("message from gateway A reaches gateway B and PostgreSQL", func(t *testing.T) {
		alice := gwtest.NewAccount(t, a, "alice")
		bob := gwtest.NewAccount(t, b, "bob")
		if code, f := gwtest.Do(t, "POST", a+"/api/rooms", alice.Token, map[string]string{"id": "secured"}); code != 201 {
			t.Fatalf("create: %d %v", code, f)
		}
		if code, f := gwtest.Do(t, "POST", b+"/api/rooms/secured/join", bob.Token, nil); code != 200 {
			t.Fatalf("join: %d %v", code, f)
		}
		ca := hello(t, wsA, alice, map[string]int64{"secured": 0}, nil)
		cb := hello(t, wsB, bob, map[string]int64{"secured": 0}, nil)
		sent := time.Now()
		ca.Send(map[string]any{"type": "send", "room": "secured", "client_msg_id": "m1", "text": "over SASL_SSL", "ref": "m1"})
		ack := ca.Expect("ack", "m1")
		if ack.Str("status") != "accepted" {
			t.Fatalf("send: %v", ack)
		}
		// On B only through chat.stored, which only persistence's relay may write.
		f, ok := cb.Next(func(f gwtest.Frame) bool { return f.Type() == "message" && f.Str("text") == "over SASL_SSL" }, 30*time.Second)
		if !ok {
			t.Fatalf("gateway B delivered nothing; buffered %v", cb.Buffered())
		}
		t.Logf("send on A -> message on B: %s (seq %d)", time.Since(sent).Round(time.Millisecond), f.Int("seq"))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var seq int64
		var sender string
		err = conn.QueryRow(ctx, `SELECT m.seq, m.sender_name FROM messages m WHERE m.room_id = 'secured' AND m.text = 'over SASL_SSL'`).Scan(&seq, &sender)
		if err != nil || seq != f.Int("seq") || sender != "alice" {
			t.Fatalf("stored row: seq %d sender %q (%v), want seq %d from alice", seq, sender, err, f.Int("seq"))
		}

		// Typing goes gateway -> chat.ephemeral -> fanout (group fanout) -> chat.deliveries.
		cb.Expect("subscribed")
		deadline := time.Now().Add(20 * time.Second)
		for {
			// Typing is not replayed and at most one per 2 s is forwarded: send again
			// past the throttle until one arrives (the first may race the subscription).
			ca.Send(map[string]any{"type": "typing", "room": "secured"})
			if f, ok := cb.Next(func(f gwtest.Frame) bool { return f.Type() == "typing" }, 2500*time.Millisecond); ok {
				if f.Str("user_name") != "alice" {
					t.Fatalf("typing: %v", f)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no typing frame on gateway B: fanout's path is broken")
			}
		}

		// Notification consumes chat.stored in group notification as its own user: its
		// committed offsets cover the room's three entries (two joins, the message).
		admin := st.AdminClient(10 * time.Second)
		md, err := admin.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topics.Stored}})
		if err != nil || len(md.Topics) != 1 {
			t.Fatalf("metadata: %v %v", md, err)
		}
		var parts []int
		for _, p := range md.Topics[0].Partitions {
			parts = append(parts, p.ID)
		}
		deadline = time.Now().Add(30 * time.Second)
		for {
			res, err := admin.OffsetFetch(context.Background(), &kafka.OffsetFetchRequest{GroupID: "notification", Topics: map[string][]int{topics.Stored: parts}})
			var committed int64
			if err == nil {
				for _, p := range res.Topics[topics.Stored] {
					if p.CommittedOffset > 0 {
						committed += p.CommittedOffset
					}
				}
			}
			if committed >= 3 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("group notification committed %d of 3 chat.stored entries (%v)", committed, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})

	t.Run("wrong password stops the service at start", func(t *testing.T) {
		wrong := filepath.Join(t.TempDir(), "password")
		if err := os.WriteFile(wrong, []byte("not-the-password\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		p, _ := run(t, "persistence-wrong-password", bins["persistence"], localstack.PersistenceUser, "KAFKA_SASL_PASSWORD_FILE="+wrong)
		for !p.Exited() && time.Since(start) < 30*time.Second {
			time.Sleep(50 * time.Millisecond)
		}
		took := time.Since(start)
		if !p.Exited() {
			t.Fatalf("still running after %s with a wrong password", took.Round(time.Millisecond))
		}
		out := p.Output()
		t.Logf("exited %d after %s", p.ExitCode(), took.Round(time.Millisecond))
		if p.ExitCode() == 0 || !strings.Contains(out, "authentication failed") || !strings.Contains(out, localstack.PersistenceUser) {
			t.Fatalf("exit %d, output does not say authentication failed for %s:\n%s", p.ExitCode(), localstack.PersistenceUser, out)
		}
		if took > 15*time.Second {
			t.Errorf("took %s to give up, want it at start", took)
		}
	})

	// kchat-notification may read chat.stored and log in fine, but may not even describe
	// chat.submitted: the gateway starts, and each send is refused at once, naming the
	// principal and the topic in the log and answering the client 503.
	t.Run("gateway whose principal may not write chat.submitted", func(t *testing.T) {
		p, g := run(t, "gw-wrong-principal", bins["gateway"], localstack.NotificationUser, "GATEWAY_ID=gw-wrong", "RATE_LIMITS=off")
		stacktest.WaitHTTP(t, g+"/healthz", time.Minute)
		carol := gwtest.NewAccount(t, g, "carol")
		if code, f := gwtest.Do(t, "POST", g+"/api/rooms", carol.Token, map[string]string{"id": "denied"}); code != 201 {
			t.Fatalf("create: %d %v", code, f)
		}
		start := time.Now()
		status, f := gwtest.Do(t, "POST", g+"/api/rooms/denied/messages", carol.Token, map[string]string{"client_msg_id": "d1", "text": "refused"})
		took := time.Since(start)
		t.Logf("send answered %d after %s: %v", status, took.Round(time.Millisecond), f)
		if status != 503 {
			t.Fatalf("send as %s: %d %v, want 503", localstack.NotificationUser, status, f)
		}
		if took > 15*time.Second {
			t.Errorf("refusal took %s, want it at once", took)
		}
		want := fmt.Sprintf("user %q may not use topic %s", localstack.NotificationUser, topics.Submitted)
		line := p.WaitOutput(10*time.Second, func(l string) bool {
			var rec map[string]any
			return json.Unmarshal([]byte(l), &rec) == nil && rec["msg"] == "publish failed"
		})
		var rec struct{ Error string }
		_ = json.Unmarshal([]byte(line), &rec)
		t.Logf("gateway logged: publish failed: %s", rec.Error)
		if !strings.Contains(rec.Error, want) || !strings.Contains(rec.Error, "Topic Authorization Failed") {
			t.Fatalf("the publish failed line does not say %q (Topic Authorization Failed):\n%s", want, line)
		}
	})
}

// startSecuredKafka starts a throwaway secured cluster in the background; the returned
// function waits for it, then creates the topics and the ACL matrix as the super user.
// The passwords are generated into the cluster's state directory, as devstack's are.
func startSecuredKafka(t *testing.T, root string) (*localstack.Stack, func()) {
	t.Helper()
	ports := func() []int { return []int{stacktest.FreePort(t), stacktest.FreePort(t), stacktest.FreePort(t)} }
	st, err := localstack.New(localstack.Config{Root: root, StateDir: t.TempDir(), CacheDir: filepath.Join(root, ".cache"),
		KafkaHeapMB: 256, KafkaPorts: ports(), ControllerPorts: ports(), MetricsPorts: ports(), PostgresPort: stacktest.FreePort(t),
		Secure: &localstack.SecureConfig{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Down(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	done := make(chan error, 1)
	go func() { done <- st.UpKafka(ctx) }()
	return st, func() {
		t.Helper()
		defer cancel()
		if err := <-done; err != nil {
			for id := 1; id <= 3; id++ {
				b, _ := os.ReadFile(st.LogFile(fmt.Sprintf("kafka-%d", id)))
				lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
				t.Logf("kafka-%d log, last lines:\n%s", id, strings.Join(lines[max(0, len(lines)-25):], "\n"))
			}
			t.Fatal(err)
		}
		f, err := topics.Load(filepath.Join(root, "deploy", "topics.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Provision(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
}
