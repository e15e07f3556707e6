package main_test

import (
	"bufio"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kchat/kchat/pkg/stacktest"
)

// platform is persistence, fanout and gateways as real processes, on a database and topics
// of the test's own, plus the chat binary.
type platform struct {
	env    *stacktest.Env
	db     string
	common []string
	gwBin  string
	chat   string
	addrs  map[string]string // gateway id -> host:port
	gws    map[string]*stacktest.Process
}

func startPlatform(t *testing.T, gateways ...string) *platform {
	t.Helper()
	if testing.Short() {
		t.Skip("starts the platform as processes")
	}
	env := stacktest.Get(t)
	p := &platform{env: env, db: env.NewDatabase(t), addrs: map[string]string{}, gws: map[string]*stacktest.Process{}}
	prefix := env.Topics(t)("")
	p.common = []string{"-brokers", strings.Join(env.Brokers, ","), "-topic-prefix", prefix}
	persistence := env.Build(t, "./services/persistence")
	fanout := env.Build(t, "./services/fanout")
	p.gwBin = env.Build(t, "./services/gateway")
	p.chat = env.Build(t, "./clients/chat")
	var ready []string
	addr := func() string {
		a := fmt.Sprintf("127.0.0.1:%d", stacktest.FreePort(t))
		ready = append(ready, "http://"+a+"/readyz")
		return a
	}
	env.Start(t, "persistence", persistence, nil, append(p.common, "-database-url", p.db, "-http-addr", addr())...)
	env.Start(t, "fanout", fanout, nil, append(p.common, "-http-addr", addr(), "-start-offset", "first", "-group", stacktest.UniqueName("fanout-"))...)
	for _, id := range gateways {
		p.addrs[id] = fmt.Sprintf("127.0.0.1:%d", stacktest.FreePort(t))
		p.startGateway(t, id)
	}
	for _, u := range ready {
		stacktest.WaitHTTP(t, u, 2*time.Minute)
	}
	return p
}

// startGateway starts (or restarts, on the same port) gateway id and waits until ready.
func (p *platform) startGateway(t *testing.T, id string, extra ...string) {
	t.Helper()
	args := append(append([]string{}, p.common...), "-id", id, "-addr", p.addrs[id], "-database-url", p.db)
	p.gws[id] = p.env.Start(t, id, p.gwBin, nil, append(args, extra...)...)
	stacktest.WaitHTTP(t, "http://"+p.addrs[id]+"/readyz", 2*time.Minute)
}

func (p *platform) ws(ids ...string) string {
	var out []string
	for _, id := range ids {
		out = append(out, "ws://"+p.addrs[id]+"/ws")
	}
	return strings.Join(out, ",")
}

// chatProc is one run of the chat binary with its input, output and error lines.
type chatProc struct {
	t     *testing.T
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{}

	mu     sync.Mutex
	out    []string
	errs   []string
	more   chan struct{}
	readAt int // next unread index of out for Expect
}

// signedIn runs a client for a new user name on gateway gw (registering them) and waits
// until it is connected.
func (p *platform) signedIn(t *testing.T, name, gw string) *chatProc {
	t.Helper()
	c := p.chatRun(t, name, "-url", p.ws(gw), "-user", name, "-password", name+"-secret", "-register", "-connect-timeout", "20s")
	c.expectErr("connected to "+gw, 30*time.Second)
	return c
}

// quitAll ends each client with /quit and wants it to exit 0.
func quitAll(t *testing.T, cs ...*chatProc) {
	t.Helper()
	for _, c := range cs {
		c.say("/quit")
		if code := c.exit(30 * time.Second); code != 0 {
			t.Fatalf("%s exited %d", c.name, code)
		}
	}
}

func (p *platform) chatRun(t *testing.T, name string, args ...string) *chatProc {
	t.Helper()
	cmd := exec.Command(p.chat, args...)
	cmd.Env = append(cmd.Environ(), "TZ=UTC")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	c := &chatProc{t: t, name: name, cmd: cmd, stdin: stdin, done: make(chan struct{}), more: make(chan struct{}, 1)}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	read := func(r io.Reader, dst *[]string) {
		defer wg.Done()
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			c.mu.Lock()
			*dst = append(*dst, sc.Text())
			c.mu.Unlock()
			select {
			case c.more <- struct{}{}:
			default:
			}
		}
	}
	wg.Add(2)
	go read(stdout, &c.out)
	go read(stderr, &c.errs)
	go func() { wg.Wait(); _ = cmd.Wait(); close(c.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c.done
		if t.Failed() {
			c.mu.Lock()
			t.Logf("--- %s stdout ---\n%s\n--- %s stderr ---\n%s", name, strings.Join(c.out, "\n"), name, strings.Join(c.errs, "\n"))
			c.mu.Unlock()
		}
	})
	return c
}

func (c *chatProc) say(lines ...string) {
	for _, l := range lines {
		if _, err := io.WriteString(c.stdin, l+"\n"); err != nil {
			c.t.Fatalf("%s: write %q: %v", c.name, l, err)
		}
	}
}

// waitFor waits until check, run on the output and error lines, is true.
func (c *chatProc) waitFor(what string, timeout time.Duration, check func(out, errs []string) bool) {
	c.t.Helper()
	deadline := time.After(timeout)
	for {
		c.mu.Lock()
		ok := check(c.out, c.errs)
		c.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-c.more:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			c.t.Fatalf("%s: no %s within %s", c.name, what, timeout)
		}
	}
}

// expectOut waits for an output line matching re after the last one expectOut matched.
func (c *chatProc) expectOut(re string, timeout time.Duration) string {
	c.t.Helper()
	rx := regexp.MustCompile(re)
	var got string
	c.waitFor("output line matching "+re, timeout, func(out, _ []string) bool {
		for i := c.readAt; i < len(out); i++ {
			if rx.MatchString(out[i]) {
				got, c.readAt = out[i], i+1
				return true
			}
		}
		return false
	})
	return got
}

func (c *chatProc) expectErr(substr string, timeout time.Duration) {
	c.t.Helper()
	c.waitFor("error line with "+substr, timeout, func(_, errs []string) bool {
		for _, l := range errs {
			if strings.Contains(l, substr) {
				return true
			}
		}
		return false
	})
}

func (c *chatProc) exit(timeout time.Duration) int {
	c.t.Helper()
	select {
	case <-c.done:
		return c.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		c.t.Fatalf("%s did not exit within %s", c.name, timeout)
		return -1
	}
}

func (c *chatProc) lines() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.out...)
}

func (c *chatProc) errLines() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.errs...)
}

const clock = `^\[\d\d:\d\d:\d\d\] `

// TestScriptedSession drives two clients through stdin as a person or a script would:
// register, join, talk, /users, /history, /search, /msg, /token, /stats, /quit; and a third one as a
// pure pipe that ends with end of input.
func TestScriptedSession(t *testing.T) {
	start := time.Now()
	p := startPlatform(t, "gw-a")
	t.Logf("platform up in %s", time.Since(start).Round(time.Millisecond))
	const wait = 30 * time.Second

	alice := p.chatRun(t, "alice", "-url", p.ws("gw-a"), "-user", "alice", "-password", "alice-secret", "-register", "-connect-timeout", "20s")
	alice.expectErr("connected to gw-a", wait)
	alice.say("hello before joining")
	alice.expectErr("no current room: /join ROOM first", wait)
	alice.say("/join general")
	alice.expectErr("created #general", wait)
	alice.expectOut(clock+`#general \* alice joined$`, wait)
	alice.say("hello from alice", "<script>alert(1)</script>")
	alice.expectOut(clock+`#general <alice> hello from alice$`, wait)
	alice.expectOut(clock+`#general <alice> <script>alert\(1\)</script>$`, wait)

	bob := p.chatRun(t, "bob", "-url", p.ws("gw-a"), "-user", "bob", "-password", "bob-secret", "-register", "-room", "general")
	bob.expectErr("now in #general", wait)
	bob.say("hi alice")
	alice.expectOut(clock+`#general \* bob joined$`, wait)
	alice.expectOut(clock+`#general <bob> hi alice$`, wait)

	alice.say("/users")
	alice.expectOut(`^--- 2 online ---$`, wait)
	alice.expectOut(`^  alice$`, wait)
	alice.expectOut(`^  bob$`, wait)

	alice.say("/history 10")
	alice.expectOut(`^--- history of #general: 5 entries ---$`, wait)
	for _, re := range []string{`\* alice joined`, `<alice> hello from alice`, `<alice> <script>`, `\* bob joined`, `<bob> hi alice`} {
		alice.expectOut(clock+`#general `+re, wait)
	}
	alice.expectOut(`^--- end of history ---$`, wait)

	// Search: what history showed as stored is found; the match is marked, markup stays text.
	alice.say("/search alert", "/search")
	alice.expectOut(`^--- search alert: 1 hits ---$`, wait)
	alice.expectOut(`^  \d{4}-\d\d-\d\d \d\d:\d\d #general/\d+ <alice> <script>«alert»\(1\)</script>$`, wait)
	alice.expectOut(`^--- end of search ---$`, wait)
	alice.expectErr("/search TEXT", wait)

	alice.say("/msg bob psst, only for you")
	bob.expectOut(clock+`@alice <alice> psst, only for you$`, wait)
	alice.expectOut(clock+`@bob <alice> psst, only for you$`, wait)

	alice.say("/token", "/stats", "/rooms")
	alice.expectOut(`^reconnect token: \S+ \(valid until \d\d:\d\d:\d\d\)$`, wait)
	alice.expectOut(`^--- stats \(gw-a\) ---$`, wait)
	alice.expectOut(`^  messages sent: [1-9]`, wait)
	alice.expectOut(`^--- your rooms ---$`, wait)
	alice.waitFor("both rooms listed", wait, func(out, _ []string) bool {
		// The list's order is the gateway's; only the two lines matter.
		return slices.Contains(out, "* #general (5 entries)") && slices.Contains(out, "  @bob (1 entries)")
	})

	alice.say("/bogus", "/history zero")
	alice.expectErr("unknown command /bogus", wait)
	alice.expectErr("N from 1 to 200", wait)

	alice.say("last words", "/quit")
	if code := alice.exit(wait); code != 0 {
		t.Fatalf("alice exited %d", code)
	}
	bob.expectOut(clock+`#general <alice> last words$`, wait)

	// A pipe: everything at once, then end of input. The client must still send it all
	// and exit 0 only after the gateway acknowledged it.
	carol := p.chatRun(t, "carol", "-url", p.ws("gw-a"), "-user", "carol", "-password", "carol-secret", "-register")
	carol.say("/join general", "one from a pipe", "two from a pipe")
	carol.stdin.Close()
	if code := carol.exit(wait); code != 0 {
		t.Fatalf("carol exited %d", code)
	}
	bob.expectOut(clock+`#general <carol> one from a pipe$`, wait)
	bob.expectOut(clock+`#general <carol> two from a pipe$`, wait)
	bob.stdin.Close()
	if code := bob.exit(wait); code != 0 {
		t.Fatalf("bob exited %d", code)
	}
	t.Logf("session done in %s", time.Since(start).Round(time.Millisecond))
}

// TestReconnectResume kills the gateway alice is connected to while bob keeps talking and
// alice keeps sending, then restarts it and stops the other one gracefully. Alice's output
// must have every one of bob's messages once, in order, and each of hers once.
func TestReconnectResume(t *testing.T) {
	p := startPlatform(t, "gw-a", "gw-b")
	const wait = 45 * time.Second
	// A short -connect-timeout would do; the default shows that nothing needs tuning.
	alice := p.chatRun(t, "alice", "-url", p.ws("gw-a", "gw-b"), "-user", "alice", "-password", "alice-secret", "-register", "-room", "lobby")
	alice.expectErr("now in #lobby", wait)
	bob := p.chatRun(t, "bob", "-url", p.ws("gw-b", "gw-a"), "-user", "bob", "-password", "bob-secret", "-register", "-room", "lobby")
	bob.expectErr("now in #lobby", wait)
	alice.expectOut(clock+`#lobby \* bob joined$`, wait)

	bobSays := func(from, to int) {
		for i := from; i <= to; i++ {
			bob.say(fmt.Sprintf("bob %03d", i))
			time.Sleep(20 * time.Millisecond)
		}
	}
	bobSays(1, 10)
	alice.expectOut(clock+`#lobby <bob> bob 010$`, wait)

	// Crash: no goodbye, the socket just goes away.
	p.gws["gw-a"].Kill()
	alice.say("alice during the outage")
	bobSays(11, 25)
	alice.expectErr("reconnected to gw-b", wait)
	alice.expectOut(clock+`#lobby <bob> bob 025$`, wait)
	bob.expectOut(clock+`#lobby <alice> alice during the outage$`, wait)

	// Graceful: gw-a is back, gw-b shuts down (reconnect frame, close 1012); both move.
	p.startGateway(t, "gw-a")
	p.gws["gw-b"].Signal(syscall.SIGTERM)
	bob.say("bob 026")
	alice.say("alice after the restart")
	bobSays(27, 40)
	alice.expectOut(clock+`#lobby <bob> bob 040$`, wait)
	bob.expectOut(clock+`#lobby <alice> alice after the restart$`, wait)
	alice.say("/quit")
	if code := alice.exit(wait); code != 0 {
		t.Fatalf("alice exited %d", code)
	}

	var got []string
	own := map[string]int{}
	for _, l := range alice.lines() {
		if m := regexp.MustCompile(clock + `#lobby <bob> (bob \d+)$`).FindStringSubmatch(l); m != nil {
			got = append(got, m[1])
		}
		if m := regexp.MustCompile(clock + `#lobby <alice> (.*)$`).FindStringSubmatch(l); m != nil {
			own[m[1]]++
		}
	}
	var want []string
	for i := 1; i <= 40; i++ {
		want = append(want, fmt.Sprintf("bob %03d", i))
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("alice saw bob's messages as\n%v\nwant\n%v", got, want)
	}
	if own["alice during the outage"] != 1 || own["alice after the restart"] != 1 || len(own) != 2 {
		t.Fatalf("alice's own messages: %v", own)
	}
	bob.stdin.Close()
	if code := bob.exit(wait); code != 0 {
		t.Fatalf("bob exited %d", code)
	}
}

// TestOrderOverTheRateLimit pipes more lines than the gateway's per-connection limit lets
// through at once: the gateway refuses some (rate_limited, retry_after_ms), the client
// retries them, and the room must still show every line once, in the order typed. With
// several sends on the wire a refused line could be overtaken by the next one.
func TestOrderOverTheRateLimit(t *testing.T) {
	p := startPlatform(t)
	p.addrs["gw-a"] = fmt.Sprintf("127.0.0.1:%d", stacktest.FreePort(t))
	p.startGateway(t, "gw-a", "-rate-conn", "20/s:2")
	const wait = 45 * time.Second
	bob := p.chatRun(t, "bob", "-url", p.ws("gw-a"), "-user", "bob", "-password", "bob-secret", "-register", "-room", "lobby")
	bob.expectErr("now in #lobby", wait)

	alice := p.chatRun(t, "alice", "-url", p.ws("gw-a"), "-user", "alice", "-password", "alice-secret", "-register")
	lines := []string{"/join lobby"}
	var want []string
	for i := 1; i <= 30; i++ {
		want = append(want, fmt.Sprintf("alice %03d", i))
	}
	alice.say(append(lines, want...)...)
	alice.stdin.Close()
	if code := alice.exit(wait); code != 0 {
		t.Fatalf("alice exited %d", code)
	}
	bob.expectOut(clock+`#lobby <alice> alice 030$`, wait)
	var got []string
	for _, l := range bob.lines() {
		if m := regexp.MustCompile(clock + `#lobby <alice> (alice \d+)$`).FindStringSubmatch(l); m != nil {
			got = append(got, m[1])
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("bob saw alice's lines as\n%v\nwant\n%v", got, want)
	}
	if refused := strings.Count(strings.Join(alice.errLines(), "\n"), "not accepted yet"); refused == 0 {
		t.Fatal("the gateway refused none of alice's lines: the test did not reach the rate limit")
	}
	bob.stdin.Close()
	if code := bob.exit(wait); code != 0 {
		t.Fatalf("bob exited %d", code)
	}
}

// TestBadInput: each way of failing ends with a clear sentence on stderr and exit 1
// (exit 2 for a command line that cannot work), never a hang.
func TestBadInput(t *testing.T) {
	p := startPlatform(t, "gw-a")
	// A second gateway whose reconnect tokens live one second, to get a really expired one.
	p.addrs["gw-short"] = fmt.Sprintf("127.0.0.1:%d", stacktest.FreePort(t))
	p.startGateway(t, "gw-short", "-reconnect-ttl", "1s")
	const wait = 30 * time.Second

	reg := p.chatRun(t, "register", "-url", p.ws("gw-short"), "-user", "dana", "-password", "dana-secret", "-register")
	reg.say("/token")
	tok := regexp.MustCompile(`^reconnect token: (\S+)`).FindStringSubmatch(reg.expectOut(`^reconnect token: `, wait))[1]
	reg.say("/quit")
	if code := reg.exit(wait); code != 0 {
		t.Fatalf("register run exited %d", code)
	}

	cases := []struct {
		name string
		args []string
		code int
		want string
		max  time.Duration
	}{
		{"wrong password", []string{"-url", p.ws("gw-a"), "-user", "dana", "-password", "not-her-password"}, 1, "wrong username or password", 10 * time.Second},
		{"unknown user", []string{"-url", p.ws("gw-a"), "-user", "nobody", "-password", "whatever-1"}, 1, "wrong username or password", 10 * time.Second},
		{"short password at registration", []string{"-url", p.ws("gw-a"), "-user", "erin", "-password", "short", "-register"}, 1, "password must be 8-256 characters", 10 * time.Second},
		{"forged token", []string{"-url", p.ws("gw-a"), "-reconnect-token", "forged"}, 1, "reconnect token is invalid or expired", 10 * time.Second},
		{"expired token", []string{"-url", p.ws("gw-a"), "-reconnect-token", tok}, 1, "reconnect token is invalid or expired", 10 * time.Second},
		{"server down", []string{"-url", fmt.Sprintf("ws://127.0.0.1:%d/ws", stacktest.FreePort(t)), "-user", "dana", "-password", "dana-secret", "-connect-timeout", "2s"}, 1, "no gateway answered within 2s", 8 * time.Second},
		{"not a gateway", []string{"-url", "http://" + p.addrs["gw-a"] + "/nothing-here", "-user", "dana", "-password", "dana-secret", "-connect-timeout", "2s"}, 1, "not a WebSocket endpoint (HTTP 404", 10 * time.Second},
		{"no password", []string{"-url", p.ws("gw-a"), "-user", "dana"}, 2, "give -user and -password", 5 * time.Second},
		{"bad url", []string{"-url", "ftp://x", "-user", "dana", "-password", "dana-secret"}, 2, "scheme must be", 5 * time.Second},
	}
	time.Sleep(1500 * time.Millisecond) // let the 1 s token expire
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			started := time.Now()
			c := p.chatRun(t, tc.name, tc.args...)
			code := c.exit(tc.max)
			if code != tc.code {
				t.Fatalf("exit %d, want %d", code, tc.code)
			}
			c.mu.Lock()
			errs := strings.Join(c.errs, "\n")
			c.mu.Unlock()
			// The last line says why; earlier ones may report retries.
			last := errs[strings.LastIndex(errs, "chat: "):]
			if !strings.Contains(last, tc.want) || !strings.HasPrefix(errs, "chat: ") {
				t.Fatalf("last stderr line %q does not say %q (all: %q)", last, tc.want, errs)
			}
			t.Logf("%s: %q in %s", tc.name, last, time.Since(started).Round(time.Millisecond))
		})
	}
}
