package localstack

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Down stops a three-node cluster cleanly and fast: every JVM exits by itself after
// SIGTERM (a controlled shutdown), none needs the SIGKILL that follows a missed grace
// period. Stopping the nodes one after another used to take over a minute and kill the
// last one: its broker waited for a controller quorum that the first two had taken away.
// The cluster here is a throwaway one on ports of its own, not the shared stack.
func TestDown_stops_every_broker_cleanly_within_15s(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three Kafka JVMs")
	}
	root := repoRoot(t)
	st, err := New(throwawayConfig(t, root))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t.Cleanup(func() { _ = st.Down(context.Background()) })
	if err := os.MkdirAll(st.logDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := st.UpKafka(ctx); err != nil {
		t.Fatal(err)
	}

	began := time.Now()
	if err := st.Down(ctx); err != nil {
		t.Fatal(err)
	}
	took := time.Since(began)
	t.Logf("down took %s", took.Round(100*time.Millisecond))
	for id := 1; id <= 3; id++ {
		ps := st.exitState(st.kafkaName(id), 10*time.Second)
		if ps == nil {
			t.Fatalf("%s: no exit status", st.kafkaName(id))
		}
		ws := ps.Sys().(syscall.WaitStatus)
		// The JVM exits with 128+15 after running its shutdown hooks on SIGTERM.
		if ws.Signaled() || !ws.Exited() {
			t.Errorf("%s ended by %v, not by itself after SIGTERM; log: %s", st.kafkaName(id), ps, st.logFile(st.kafkaName(id)))
		} else {
			t.Logf("%s exited with status %d", st.kafkaName(id), ws.ExitStatus())
		}
	}
	if limit := 15 * time.Second; took > limit {
		t.Errorf("down took %s, want within %s", took, limit)
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	if r := os.Getenv("KCHAT_ROOT"); r != "" {
		return r
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal(errors.New("no go.work above the working directory; set KCHAT_ROOT"))
		}
		dir = parent
	}
}

// throwawayConfig is a stack of the test's own: every port free, state in a temporary
// directory, the repository's download cache, small heaps. It never touches the shared
// stack that other tests (and make dev) use.
func throwawayConfig(t *testing.T, root string) Config {
	return Config{Root: root, StateDir: t.TempDir(), CacheDir: filepath.Join(root, ".cache"), KafkaHeapMB: 256,
		KafkaPorts: []int{freePort(t), freePort(t), freePort(t)}, ControllerPorts: []int{freePort(t), freePort(t), freePort(t)},
		MetricsPorts: []int{freePort(t), freePort(t), freePort(t)}, PostgresPort: freePort(t)}
}
