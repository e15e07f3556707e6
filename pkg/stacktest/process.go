package stacktest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kchat/kchat/pkg/kafkasec"
)

var (
	buildMu  sync.Mutex
	builtBin = map[string]string{}
)

// Build compiles a program of this repository (e.g. "./services/persistence") once per
// test binary and returns the executable's path. Tests run services as real processes so
// that they can be killed with SIGKILL like a crash would. tags are build tags, e.g.
// "faults" for persistence's fault-injection flags, which production builds lack.
func (e *Env) Build(t testing.TB, pkg string, tags ...string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	key := pkg
	if len(tags) > 0 {
		key += " -tags " + strings.Join(tags, ",")
	}
	if bin, ok := builtBin[key]; ok {
		return bin
	}
	dir, err := os.MkdirTemp("", "kchat-bin-")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, filepath.Base(pkg))
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	cmd := exec.Command("go", append(args, pkg)...)
	cmd.Dir = e.Root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("stacktest: go build %s: %v\n%s", pkg, err, out)
	}
	builtBin[key] = bin
	return bin
}

// Process is a service started by a test.
type Process struct {
	t    testing.TB
	name string
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	log  strings.Builder
	// grew is closed and replaced each time a line is added, so that WaitOutput wakes
	// on the line it waits for instead of polling.
	grew chan struct{}
}

// Start runs bin with args and extra environment (KEY=VALUE); its output is kept and
// printed if the test fails. The process is stopped (SIGTERM) when the test ends.
//
// The process reaches Kafka as the test does (KafkaEnv, the super user), unless env sets
// any kafkasec variable (KAFKA_TLS*, KAFKA_SASL_*) itself: then env alone decides its security
// (a test of a principal of its own, or of a wrong password).
func (e *Env) Start(t testing.TB, name, bin string, env []string, args ...string) *Process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = e.processEnv(os.Environ(), env)
	p := &Process{t: t, name: name, cmd: cmd, done: make(chan struct{}), grew: make(chan struct{})}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatalf("stacktest: start %s: %v", name, err)
	}
	pw.Close()
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			close(p.grew)
			p.grew = make(chan struct{})
			p.mu.Unlock()
		}
	}()
	go func() {
		_ = cmd.Wait()
		// Wait returns when the process is gone, not when its last lines have been read
		// from the pipe: an exited process's Output must be complete. The bound only
		// matters if a child of the process inherited the pipe and outlives it.
		select {
		case <-drained:
		case <-time.After(5 * time.Second):
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop(15 * time.Second)
		if t.Failed() || os.Getenv("KCHAT_TEST_LOGS") != "" {
			t.Logf("--- output of %s ---\n%s", name, p.Output())
		}
	})
	return p
}

// Environ is the environment for a program of ours that a test runs itself (exec.Cmd.Env):
// this process's, with Kafka security as Start gives it, then extra.
func (e *Env) Environ(extra ...string) []string { return e.processEnv(os.Environ(), extra) }

// processEnv is base without its Kafka security variables, then KafkaEnv unless extra has
// some of its own, then extra.
func (e *Env) processEnv(base, extra []string) []string {
	var out []string
	for _, kv := range base {
		if !kafkasec.IsVar(kv) {
			out = append(out, kv)
		}
	}
	if len(securityEnviron(extra)) == 0 {
		out = append(out, e.KafkaEnv...)
	}
	return append(out, extra...)
}

// Output returns everything the process printed so far.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// WaitOutput waits up to timeout for a line the process printed (or prints later) that
// match accepts, and returns it; the test fails if none comes. A response the process
// sent can reach the test before the log line written just ahead of it: the line
// travels through a pipe.
func (p *Process) WaitOutput(timeout time.Duration, match func(line string) bool) string {
	p.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	seen := 0
	for {
		p.mu.Lock()
		out, grew := p.log.String(), p.grew
		p.mu.Unlock()
		for _, l := range strings.SplitAfter(out[seen:], "\n") {
			if !strings.HasSuffix(l, "\n") {
				break
			}
			seen += len(l)
			if match(strings.TrimSuffix(l, "\n")) {
				return strings.TrimSuffix(l, "\n")
			}
		}
		select {
		case <-grew:
		case <-p.done:
			if p.Output() == out {
				p.t.Fatalf("stacktest: %s exited without printing the line waited for:\n%s", p.name, out)
			}
		case <-deadline.C:
			p.t.Fatalf("stacktest: %s printed no such line within %s:\n%s", p.name, timeout, out)
		}
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Process) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Signal sends sig (e.g. SIGSTOP/SIGCONT for pause faults).
func (p *Process) Signal(sig syscall.Signal) { _ = p.cmd.Process.Signal(sig) }

// Stop sends SIGTERM and waits up to grace before killing.
func (p *Process) Stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.t.Logf("stacktest: %s ignored SIGTERM for %s; killing", p.name, grace)
		p.Kill()
	}
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ExitCode is the exit status once Exited (-1 if killed by a signal).
func (p *Process) ExitCode() int { return p.cmd.ProcessState.ExitCode() }

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// WaitHTTP polls url until it answers 200 or the timeout passes.
func WaitHTTP(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	WaitHTTPWith(t, httpClient, url, timeout)
}

// WaitHTTPWith is WaitHTTP through client (e.g. one that trusts a test CA).
func WaitHTTPWith(t testing.TB, client *http.Client, url string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		if err := getOK(ctx, client, url); err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("stacktest: %s did not answer 200 within %s", url, timeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func getOK(ctx context.Context, client *http.Client, url string) error {
	req, err := httpNewRequest(ctx, url)
	if err != nil {
		return err
	}
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		return fmt.Errorf("status %d", res.StatusCode)
	}
	return nil
}
