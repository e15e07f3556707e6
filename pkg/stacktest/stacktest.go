// Package stacktest gives integration tests the real local stack: a three-broker Kafka
// cluster and PostgreSQL. With KAFKA_BROKERS and DATABASE_URL set it uses those servers;
// otherwise it starts (or reuses) the repository's localstack. Every test gets topics and
// a database of its own, removed when it ends.
package stacktest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

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
}

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
		return &Env{Brokers: strings.Split(b, ","), DatabaseURL: db, Root: root}, nil
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := localstack.New(localstack.Config{Root: root, Logger: logger})
	if err != nil {
		return nil, err
	}
	// Test binaries of several packages run at once; one of them starts the stack.
	unlock, err := localstack.Flock(filepath.Join(root, ".cache", "stack.lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := st.Up(ctx); err != nil {
		return nil, err
	}
	info := st.Info()
	return &Env{Brokers: info.Brokers, DatabaseURL: info.DatabaseURL, Root: root, Stack: st}, nil
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

// Client returns a kafka-go admin client for the cluster.
func (e *Env) Client() *kafka.Client {
	return &kafka.Client{Addr: kafka.TCP(e.Brokers...), Timeout: 30 * time.Second}
}

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
		_, err := topics.Apply(ctx, client, f)
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
