package localstack

import (
	"context"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"net"
	"strings"
	"testing"
)

func TestUp_reports_missing_tools_and_busy_ports_clearly(t *testing.T) {
	t.Run("missing java", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		st, err := New(Config{Root: t.TempDir(), PostgresPort: freePort(t), KafkaPorts: []int{freePort(t), freePort(t), freePort(t)},
			ControllerPorts: []int{freePort(t), freePort(t), freePort(t)}})
		if err != nil {
			t.Fatal(err)
		}
		err = st.UpKafka(context.Background())
		if !errors.Is(err, ErrPrerequisite) || !strings.Contains(err.Error(), "java not found") || !strings.Contains(err.Error(), "KAFKA_BROKERS") {
			t.Fatalf("got %v, want a prerequisite error naming java and the way out", err)
		}
	})
	t.Run("busy port", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		port := l.Addr().(*net.TCPAddr).Port
		err = checkPortFree(port, "kafka-1")
		if !errors.Is(err, ErrPortInUse) || !strings.Contains(err.Error(), l.Addr().String()) || !strings.Contains(err.Error(), "kafka-1") {
			t.Fatalf("got %v, want ErrPortInUse naming %s and kafka-1", err, l.Addr())
		}
	})
	t.Run("missing maven", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		st, err := New(Config{Root: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		err = st.mavenCopy(context.Background(), "kafka-pom.xml", t.TempDir(), "copy-dependencies")
		if !errors.Is(err, ErrPrerequisite) || !strings.Contains(err.Error(), "mvn not found") {
			t.Fatalf("got %v, want a prerequisite error naming mvn", err)
		}
	})
}

// freePort returns a port on 127.0.0.1 that was free a moment ago, below Linux's
// ephemeral range (32768-60999). A port the kernel hands out for ":0" is one it also gives
// outgoing connections as their local port, and a throwaway cluster binds its listeners
// seconds after the ports were picked, while its three JVMs open connections to each
// other: one of them took a broker's port that way ("Address already in use").
func freePort(t *testing.T) int {
	t.Helper()
	for range 1000 {
		port := 20000 + mathrand.IntN(32768-20000)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		l.Close()
		return port
	}
	t.Fatal("no free port in 20000-32767")
	return 0
}
