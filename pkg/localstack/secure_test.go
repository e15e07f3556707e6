package localstack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/consumer"
	"github.com/kchat/kchat/pkg/kafkasec"
	"github.com/kchat/kchat/pkg/producer"
	"github.com/kchat/kchat/pkg/service"
	"github.com/kchat/kchat/pkg/topics"
)

// TestSecuredCluster runs a throwaway three-node cluster (ports and state of its own, not
// the shared stack) with one SASL_SSL listener, SCRAM-SHA-512 principals per service and
// the ACL matrix, and checks the services' Kafka path through pkg/kafkasec: a round trip
// as the services' principals, an ACL refusal, a wrong password and a client without TLS.
func TestSecuredCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three Kafka JVMs")
	}
	users := map[string]string{}
	for _, u := range []string{AdminUser, GatewayUser, PersistenceUser, FanoutUser, NotificationUser} {
		users[u] = randomPassword(t)
	}
	root := repoRoot(t)
	cfg := throwawayConfig(t, root)
	cfg.Secure = &SecureConfig{Users: users}
	st, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	t.Cleanup(func() { _ = st.Down(context.Background()) })
	if err := os.MkdirAll(st.logDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if err := st.UpKafka(ctx); err != nil {
		for id := 1; id <= 3; id++ {
			b, _ := os.ReadFile(st.logFile(st.kafkaName(id)))
			t.Logf("%s log, last lines:\n%s", st.kafkaName(id), lastLines(string(b), 25))
		}
		t.Fatal(err)
	}
	t.Logf("secured cluster up in %s", time.Since(began).Round(100*time.Millisecond))

	f, err := topics.Load(filepath.Join(root, "deploy", "topics.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	admin := st.AdminClient(30 * time.Second)
	if _, err := topics.Apply(ctx, admin, f); err != nil {
		t.Fatalf("create topics as admin: %v", err)
	}
	if err := st.CreateACLs(ctx, ServiceACLs(topics.Names{})); err != nil {
		t.Fatalf("create ACLs: %v", err)
	}
	t.Logf("topics and ACLs in %s", time.Since(began).Round(100*time.Millisecond))
	brokers := st.Info().Brokers
	security := func(t *testing.T, user string) kafkasec.Security {
		sec, err := st.Security(user)
		if err != nil {
			t.Fatal(err)
		}
		return sec
	}

	t.Run("round trip as gateway and persistence", func(t *testing.T) {
		prod, err := producer.New(producer.Config{Brokers: brokers, Security: security(t, GatewayUser)})
		if err != nil {
			t.Fatal(err)
		}
		defer prod.Close()
		want := "secured-" + randomPassword(t)
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		defer wcancel()
		if err := prod.Write(wctx, kafka.Message{Topic: topics.Submitted, Key: []byte("room-1"), Value: []byte(want)}); err != nil {
			t.Fatalf("gateway writes chat.submitted: %v", err)
		}
		got := make(chan string, 1)
		r, err := consumer.New(consumer.Config{Brokers: brokers, GroupID: "persistence", Topics: []string{topics.Submitted},
			Security: security(t, PersistenceUser)}, func(_ context.Context, m *consumer.Message) error {
			select {
			case got <- string(m.Value):
			default:
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		rctx, rcancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- r.Run(rctx) }()
		defer func() { rcancel(); <-done }()
		select {
		case v := <-got:
			if v != want {
				t.Errorf("persistence read %q, want %q", v, want)
			}
		case <-time.After(45 * time.Second):
			t.Fatal("persistence's group read nothing within 45s")
		}
	})

	// chat.stored is a topic the gateway may read but not write (the broker refuses the
	// produce request); chat.dlq one it has no right on at all (the broker hides it from
	// the gateway's metadata, and the producer asks why).
	t.Run("gateway writing chat.stored or chat.dlq is refused", func(t *testing.T) {
		prod, err := producer.New(producer.Config{Brokers: brokers, Security: security(t, GatewayUser)})
		if err != nil {
			t.Fatal(err)
		}
		defer prod.Close()
		for _, topic := range []string{topics.Stored, topics.DLQ} {
			start := time.Now()
			err = prod.Write(ctx, kafka.Message{Topic: topic, Key: []byte("room-1"), Value: []byte("forged")})
			took := time.Since(start)
			t.Logf("%s refused after %s: %v", topic, took.Round(time.Millisecond), err)
			if !errors.Is(err, kafka.TopicAuthorizationFailed) {
				t.Errorf("%s: error %v, want TOPIC_AUTHORIZATION_FAILED", topic, err)
			}
			if took > 10*time.Second {
				t.Errorf("%s: refusal took %s, want it at once (not retried until the delivery timeout)", topic, took)
			}
		}
	})

	t.Run("wrong password fails fast", func(t *testing.T) {
		sec, err := kafkasec.Config{TLSCAFile: st.Info().CAFile, SASLMechanism: kafkasec.ScramSHA512,
			SASLUsername: GatewayUser, SASLPassword: "not-" + users[GatewayUser]}.Security()
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		err = service.KafkaPreflight(ctx, brokers, sec, nil)
		t.Logf("preflight failed after %s: %v", time.Since(start).Round(time.Millisecond), err)
		if !errors.Is(err, kafkasec.ErrAuthentication) || !strings.Contains(err.Error(), "authentication failed") {
			t.Fatalf("preflight error %v, want one saying authentication failed", err)
		}
		prod, err := producer.New(producer.Config{Brokers: brokers, Security: sec})
		if err != nil {
			t.Fatal(err)
		}
		defer prod.Close()
		start = time.Now()
		err = prod.Write(ctx, kafka.Message{Topic: topics.Submitted, Key: []byte("k"), Value: []byte("v")})
		took := time.Since(start)
		t.Logf("producer failed after %s: %v", took.Round(time.Millisecond), err)
		if !errors.Is(err, kafka.SASLAuthenticationFailed) {
			t.Fatalf("producer error %v, want SASL authentication failed", err)
		}
		if took > 10*time.Second {
			t.Errorf("producer took %s to give up, want it at once", took)
		}
	})

	t.Run("client without TLS is refused clearly", func(t *testing.T) {
		for name, sec := range map[string]kafkasec.Security{
			"plaintext":              {},
			"sasl without tls":       mustSecurity(t, kafkasec.Config{SASLMechanism: kafkasec.ScramSHA512, SASLUsername: GatewayUser, SASLPassword: users[GatewayUser]}),
			"tls without trusted ca": mustSecurity(t, kafkasec.Config{TLS: true, SASLMechanism: kafkasec.ScramSHA512, SASLUsername: GatewayUser, SASLPassword: users[GatewayUser]}),
		} {
			start := time.Now()
			err := sec.Verify(ctx, brokers[0], 10*time.Second)
			took := time.Since(start)
			t.Logf("%s: failed after %s: %v", name, took.Round(time.Millisecond), err)
			if err == nil || !strings.Contains(err.Error(), "TLS") {
				t.Errorf("%s: error %v, want one that names TLS", name, err)
			}
			if took > 10*time.Second {
				t.Errorf("%s: took %s", name, took)
			}
		}
	})
}

func mustSecurity(t *testing.T, c kafkasec.Config) kafkasec.Security {
	t.Helper()
	sec, err := c.Security()
	if err != nil {
		t.Fatal(err)
	}
	return sec
}

func randomPassword(t *testing.T) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
