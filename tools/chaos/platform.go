package chaos

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kchat/kchat/pkg/stacktest"
)

// Platform is every kchat service as real processes on 127.0.0.1, on topics and a
// database of its own: two persistence instances (one consumer group; one active outbox
// relay, the other standing by), fanout, notification and two gateways.
type Platform struct {
	t      testing.TB
	env    *stacktest.Env
	DB     string
	prefix string
	// persistenceGroup is the consumer group both persistence instances join.
	persistenceGroup string

	mu    sync.Mutex
	bins  map[string]string
	args  map[string][]string
	admin map[string]string // process -> http address of /readyz and /metrics
	procs map[string]*stacktest.Process

	// GatewayHTTP and GatewayWS are indexed like Gateways.
	Gateways    []string
	GatewayHTTP []string
	GatewayWS   []string
}

// LogLevel is the services' -log-level (-chaos.log-level); their output is printed when
// a run fails, or always with KCHAT_TEST_LOGS set.
var LogLevel = "warn"

// Persistence instances, in start order.
var persistenceNames = []string{"persistence-1", "persistence-2"}

// StartPlatform builds and starts the services and waits until each is ready.
func StartPlatform(t testing.TB) *Platform {
	t.Helper()
	env := stacktest.Get(t)
	if env.Stack != nil {
		// A fault of an earlier run (or of another test binary) may have left a broker or
		// PostgreSQL down or still recovering; Up starts what is missing and waits for
		// three registered brokers and a quorum leader.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		err := env.Stack.Up(ctx)
		cancel()
		if err != nil {
			t.Fatalf("local stack not healthy: %v", err)
		}
	}
	p := &Platform{t: t, env: env, DB: env.NewDatabase(t), prefix: env.Topics(t)(""),
		bins: map[string]string{}, args: map[string][]string{}, admin: map[string]string{}, procs: map[string]*stacktest.Process{}}
	p.setCommitMode(!AsyncCommit)
	for _, svc := range []string{"persistence", "fanout", "notification", "gateway"} {
		p.bins[svc] = env.Build(t, "./services/"+svc)
	}
	common := []string{"-brokers", strings.Join(env.Brokers, ","), "-topic-prefix", p.prefix, "-log-level", LogLevel}
	addr := func() string { return fmt.Sprintf("127.0.0.1:%d", stacktest.FreePort(t)) }
	group := stacktest.UniqueName("persistence-")
	p.persistenceGroup = group
	for _, name := range persistenceNames {
		a := addr()
		p.admin[name] = a
		p.args[name] = append(slices.Clone(common), "-database-url", p.DB, "-http-addr", a, "-group", group)
	}
	// Fresh topics: a group without committed offsets must start at the beginning.
	for _, name := range []string{"fanout", "notification"} {
		a := addr()
		p.admin[name] = a
		p.args[name] = append(slices.Clone(common), "-http-addr", a, "-start-offset", "first", "-group", stacktest.UniqueName(name+"-"))
	}
	p.args["notification"] = append(p.args["notification"], "-database-url", p.DB)
	for _, id := range []string{"gw-a", "gw-b"} {
		a := addr()
		p.admin[id] = a
		// Rate limits off: the load is ours, and a refusal would read as a fault.
		p.args[id] = append(slices.Clone(common), "-id", id, "-addr", a, "-database-url", p.DB,
			"-rate-limits=false", "-login-rate-addr", "1000/s:1000", "-login-rate-account", "1000/s:1000")
		p.Gateways = append(p.Gateways, id)
		p.GatewayHTTP = append(p.GatewayHTTP, "http://"+a)
		p.GatewayWS = append(p.GatewayWS, "ws://"+a+"/ws")
	}
	// The first persistence instance starts alone so that it is the relay leader.
	p.Start(persistenceNames[0])
	p.WaitReady(persistenceNames[0], 2*time.Minute)
	for _, name := range []string{persistenceNames[1], "fanout", "notification", "gw-a", "gw-b"} {
		p.Start(name)
	}
	for name := range p.admin {
		p.WaitReady(name, 2*time.Minute)
	}
	return p
}

func (p *Platform) binOf(name string) string {
	switch {
	case strings.HasPrefix(name, "persistence"):
		return p.bins["persistence"]
	case strings.HasPrefix(name, "gw-"):
		return p.bins["gateway"]
	default:
		return p.bins[name]
	}
}

// Start (re)starts a process with its original arguments.
func (p *Platform) Start(name string) {
	proc := p.env.Start(p.t, name, p.binOf(name), nil, p.args[name]...)
	p.mu.Lock()
	p.procs[name] = proc
	p.mu.Unlock()
	// A test that fails while a process is paused must not leave it stopped.
	p.t.Cleanup(func() { proc.Signal(syscall.SIGCONT) })
}

func (p *Platform) proc(name string) *stacktest.Process {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.procs[name]
}

// Kill SIGKILLs a process and waits until it is gone.
func (p *Platform) Kill(name string) { p.proc(name).Kill() }

// Signal sends sig (SIGSTOP, SIGCONT) to a process.
func (p *Platform) Signal(name string, sig syscall.Signal) { p.proc(name).Signal(sig) }

// Ready reports whether name answers /readyz with 200.
func (p *Platform) Ready(name string) bool {
	c := &http.Client{Timeout: 2 * time.Second}
	res, err := c.Get("http://" + p.admin[name] + "/readyz")
	if err != nil {
		return false
	}
	res.Body.Close()
	return res.StatusCode == 200
}

// WaitReady waits until name is ready, failing the test after d.
func (p *Platform) WaitReady(name string, d time.Duration) {
	p.t.Helper()
	stacktest.WaitHTTP(p.t, "http://"+p.admin[name]+"/readyz", d)
}

// RelayLeader is the persistence instance whose outbox relay is active ("" if none is).
func (p *Platform) RelayLeader() string {
	for _, name := range persistenceNames {
		if p.proc(name).Exited() {
			continue
		}
		c := &http.Client{Timeout: 2 * time.Second}
		res, err := c.Get("http://" + p.admin[name] + "/metrics")
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if strings.Contains(string(b), "\nkchat_outbox_relay_active 1\n") {
			return name
		}
	}
	return ""
}

// Env is the stack the platform runs on.
func (p *Platform) Env() *stacktest.Env { return p.env }

// waitRelay waits until some instance relays (after a leader died, the standby takes
// the lock within about a second).
func (p *Platform) waitRelay(ctx context.Context, d time.Duration) string {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if l := p.RelayLeader(); l != "" {
			return l
		}
		time.Sleep(200 * time.Millisecond)
	}
	return ""
}

// AsyncCommit sets synchronous_commit=off for the platform's database
// (-chaos.async-commit): the setting under which a PostgreSQL crash loses acknowledged
// messages.
var AsyncCommit bool

// setCommitMode sets synchronous_commit for this platform's database. Off, a commit returns
// before its WAL is written and a crash of the server loses the last few hundred
// milliseconds of commits: messages already acknowledged, relayed and shown to clients
// (the first chaos runs found exactly that; see docs/reliability.md). The local server
// now defaults to on, as production must; it is still set explicitly here so that a stack
// started by an older checkout (default off) is judged under the same rule.
func (p *Platform) setCommitMode(durable bool) {
	mode := "on"
	if !durable {
		mode = "off"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.env.DatabaseURL)
	if err != nil {
		p.t.Fatal(err)
	}
	defer conn.Close(ctx)
	u, err := url.Parse(p.DB)
	if err != nil {
		p.t.Fatal(err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{name}.Sanitize()+" SET synchronous_commit = "+mode); err != nil {
		p.t.Fatal(err)
	}
}
