// Package stacktest gives integration tests the real local stack: a three-broker Kafka
// cluster and PostgreSQL. With KAFKA_BROKERS and DATABASE_URL set it uses those servers,
// secured as the KAFKA_TLS_* and KAFKA_SASL_* variables say (kafkasec.FromEnv); otherwise
// it starts (or reuses) the repository's localstack, secured (TLS and SCRAM-SHA-512, as
// make dev runs it; PLAINTEXT with KCHAT_STACK_PLAINTEXT=1), and logs in as its super
// user. Every test gets topics and a database of its own, removed when it ends.
//
// Test topics carry a prefix of their own (Topics), which the services' ACLs do not cover,
// so test clients and the service processes tests start log in as the super user; the
// per-service principals and ACLs are tested by tests that start clusters of their own.
package stacktest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/kafkasec"
	"github.com/kchat/kchat/pkg/localstack"
	"github.com/kchat/kchat/pkg/migrations"
	"github.com/kchat/kchat/pkg/topics"
)

// Env is one running stack.
type Env struct {
	Brokers     []string
	DatabaseURL string // the server's maintenance database
	Root        string
	// Stack is nil when the servers were given through the environment: tests that kill
	// brokers skip then, as they must not kill someone else's cluster.
	Stack *localstack.Stack
	// Security is what an in-process client needs to reach the brokers (TLS and SCRAM as
	// the super user on a secured cluster, the zero value on a PLAINTEXT one). Pass it to
	// every client a test builds: producer, consumer and presence configs take it as is;
	// see also Transport, ReaderDialer and Dialer.
	Security kafkasec.Security
	// KafkaEnv are the same credentials as environment variables (KAFKA_TLS_CA_FILE,
	// KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD_FILE) for a program
	// of ours; Start adds them to every process it runs. Empty on a PLAINTEXT cluster.
	KafkaEnv []string
	// KafkaConfig is the configuration Security was built from, for clients configured
	// from a kafkasec.Config (chatbench's franz-go clients).
	KafkaConfig kafkasec.Config

	transport kafka.RoundTripper // shared by Client and Transport; nil on PLAINTEXT
}

// EnvPlaintext, set to true (make test SECURE=0), makes a stack that stacktest starts or
// joins itself PLAINTEXT instead of secured. It does not matter with KAFKA_BROKERS and
// DATABASE_URL set.
const EnvPlaintext = "KCHAT_STACK_PLAINTEXT"

var (
	once    sync.Once
	shared  *Env
	initErr error
)

// Get returns the shared stack, starting it on first use in this test binary.
func Get(t testing.TB) *Env {
	t.Helper()
	once.Do(func() { shared, initErr = start() })
	if initErr != nil {
		t.Fatalf("stacktest: %v", initErr)
	}
	return shared
}

func start() (*Env, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	if b, db := os.Getenv("KAFKA_BROKERS"), os.Getenv("DATABASE_URL"); b != "" && db != "" {
		return newEnv(strings.Split(b, ","), db, root, nil, securityEnviron(os.Environ()))
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// Secured, as make dev and make test run it, unless KCHAT_STACK_PLAINTEXT is set (make
	// test SECURE=0). A stack created in the other mode (PLAINTEXT, before the secured
	// default) is refused with localstack.ErrSecurityMismatch, which says to run
	// bin/devstack reset-kafka.
	cfg := localstack.Config{Root: root, Logger: logger, Secure: &localstack.SecureConfig{}}
	if plain, _ := strconv.ParseBool(os.Getenv(EnvPlaintext)); plain {
		cfg.Secure = nil
	}
	// Brokers a test restarts go back where make dev / make bench placed them.
	if cfg.PinCPUs, err = localstack.PinCPUsFromEnv(); err != nil {
		return nil, err
	}
	// Test binaries of several packages run at once; one of them starts the stack. The
	// lock is taken before New, which generates the SCRAM passwords of a new stack: two
	// binaries must not both make them up.
	unlock, err := localstack.Flock(filepath.Join(root, ".cache", "stack.lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := localstack.New(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := st.Up(ctx); err != nil {
		return nil, err
	}
	info := st.Info()
	// The variables devstack up prints for chatctl and chatbench (nil on PLAINTEXT).
	kenv, err := st.ClientEnv(localstack.AdminUser)
	if err != nil {
		return nil, err
	}
	return newEnv(info.Brokers, info.DatabaseURL, root, st, kenv)
}

// newEnv reads the client security from kenv, the kafkasec variables a program of ours
// would be given, so that in-process clients and processes log in alike.
func newEnv(brokers []string, dbURL, root string, st *localstack.Stack, kenv []string) (*Env, error) {
	vars := map[string]string{}
	for _, kv := range kenv {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	cfg, err := kafkasec.FromEnv(func(k string) string { return vars[k] })
	if err != nil {
		return nil, err
	}
	sec, err := cfg.Security()
	if err != nil {
		return nil, err
	}
	return &Env{Brokers: brokers, DatabaseURL: dbURL, Root: root, Stack: st, Security: sec, KafkaEnv: kenv,
		KafkaConfig: cfg, transport: sec.RoundTripper()}, nil
}

// securityEnviron returns the kafkasec variables of env.
func securityEnviron(env []string) []string {
	var out []string
	for _, kv := range env {
		if kafkasec.IsVar(kv) {
			out = append(out, kv)
		}
	}
	return out
}

// RepoRoot finds the directory holding go.work, from the test's working directory up.
func RepoRoot() (string, error) {
	if r := os.Getenv("KCHAT_ROOT"); r != "" {
		return r, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("stacktest: no go.work above the working directory; set KCHAT_ROOT")
		}
		dir = parent
	}
}

// UniqueName returns prefix plus random hex, safe as a topic, group or database name.
func UniqueName(prefix string) string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// Client returns a kafka-go admin client for the cluster, secured (Transport).
func (e *Env) Client() *kafka.Client {
	return &kafka.Client{Addr: kafka.TCP(e.Brokers...), Timeout: 30 * time.Second, Transport: e.transport}
}

// Transport is the transport for a kafka.Writer or kafka.Client of a test: one secured
// kafka.Transport shared by the test binary (as kafka-go's DefaultTransport would be),
// nil (that default) on a PLAINTEXT cluster.
func (e *Env) Transport() kafka.RoundTripper { return e.transport }

// ReaderDialer is the Dialer for a kafka.ReaderConfig: secured, or nil (the Reader's
// default) on a PLAINTEXT cluster.
func (e *Env) ReaderDialer() *kafka.Dialer { return e.Security.ReaderDialer() }

// Dialer returns a secured dialer for kafka.Dial*-style connections (conn.ReadPartitions,
// DialLeader); on a PLAINTEXT cluster it dials as kafka.DialContext does.
func (e *Env) Dialer() *kafka.Dialer { return e.Security.Dialer(10 * time.Second) }

// NewDatabase creates a fresh database with every migration applied and returns its URL.
func (e *Env) NewDatabase(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := UniqueName("test_")
	admin, err := pgx.Connect(ctx, e.DatabaseURL)
	if err != nil {
		t.Fatalf("stacktest: connect to PostgreSQL: %v", err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("stacktest: create database: %v", err)
	}
	u, err := url.Parse(e.DatabaseURL)
	if err != nil {
		t.Fatalf("stacktest: DATABASE_URL: %v", err)
	}
	u.Path = "/" + name
	dbURL := u.String()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if c, err := pgx.Connect(ctx, e.DatabaseURL); err == nil {
			_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			_ = c.Close(ctx)
		}
	})
	if _, err := migrations.Up(ctx, dbURL); err != nil {
		t.Fatalf("stacktest: migrate: %v", err)
	}
	return dbURL
}

// NewDatabasePool opens a pool on a fresh migrated database (NewDatabase), runs the
// statements in it, and closes the pool when the test ends.
func (e *Env) NewDatabasePool(t testing.TB, statements ...string) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, e.NewDatabase(t))
	if err != nil {
		t.Fatalf("stacktest: open database: %v", err)
	}
	t.Cleanup(pool.Close)
	for _, q := range statements {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatalf("stacktest: seed database: %v", err)
		}
	}
	return pool
}

// Topics creates the topics of deploy/topics.yaml under a prefix of this test's own and
// returns a function mapping a declared name (e.g. "chat.submitted") to the real one.
func (e *Env) Topics(t testing.TB) func(name string) string {
	t.Helper()
	f, err := topics.Load(filepath.Join(e.Root, "deploy", "topics.yaml"))
	if err != nil {
		t.Fatalf("stacktest: %v", err)
	}
	prefix := UniqueName("t") + "."
	f = f.WithPrefix(prefix)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	client := e.Client()
	// Tests in other packages kill and restart brokers (durability, chaos, cluster health);
	// RF-3 topics cannot be created while one is down, so wait for it to come back.
	for {
		err := createTopics(ctx, client, f)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("stacktest: create topics: %v", err)
		}
		t.Logf("stacktest: create topics: %v; retrying", err)
		time.Sleep(time.Second)
	}
	if err := WaitTopicsReady(ctx, client, f.Names()); err != nil {
		t.Fatalf("stacktest: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: f.Names()})
	})
	return func(name string) string { return prefix + name }
}

// createTopics creates every topic of f, as declared, in one CreateTopics request: one
// round trip to the controller for the whole set, where topics.Apply plans (reading the
// cluster's metadata) and then creates the topics one request at a time. A topic that
// already exists (made by an earlier attempt that failed part way) is not an error.
func createTopics(ctx context.Context, client *kafka.Client, f topics.File) error {
	req := &kafka.CreateTopicsRequest{Topics: make([]kafka.TopicConfig, 0, len(f.Topics))}
	for _, spec := range f.Topics {
		keys := make([]string, 0, len(spec.Configs))
		for k := range spec.Configs {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		entries := make([]kafka.ConfigEntry, 0, len(keys))
		for _, k := range keys {
			entries = append(entries, kafka.ConfigEntry{ConfigName: k, ConfigValue: spec.Configs[k]})
		}
		req.Topics = append(req.Topics, kafka.TopicConfig{Topic: spec.Name, NumPartitions: spec.Partitions,
			ReplicationFactor: spec.ReplicationFactor, ConfigEntries: entries})
	}
	res, err := client.CreateTopics(ctx, req)
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range f.Names() {
		if err := res.Errors[name]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// WaitTopicsReady waits until every broker knows a leader for every partition of the
// topics: right after creation, produce requests can fail with "unknown topic or
// partition" (see topics.WaitKnown).
func WaitTopicsReady(ctx context.Context, client *kafka.Client, names []string) error {
	return topics.WaitKnown(ctx, client, names)
}

// ExclusiveFaults serialises tests that take brokers down: two of them at once (say in
// two packages' test binaries) would leave one broker of three and stop every write.
// The lock is held until the test ends.
func (e *Env) ExclusiveFaults(t testing.TB) {
	t.Helper()
	unlock, err := localstack.Flock(filepath.Join(e.Root, ".cache", "faults.lock"))
	if err != nil {
		t.Fatalf("stacktest: %v", err)
	}
	t.Cleanup(unlock)
}
