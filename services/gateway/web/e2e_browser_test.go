package web_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kchat/kchat/pkg/stacktest"
)

// TestBrowserE2E runs e2e/chat.test.mjs (Playwright driving headless Chromium) against the
// platform started here as real processes: persistence, fanout and two gateways (and a
// third with a tight rate limit), with a database and topics of the test's own. Its first test (room roles) needs both gateways;
// the second ends by stopping A. The script asks for gateway A to be stopped by
// POSTing to STOP_A_URL; the answer comes once A is gone, so the script never races it.
func TestBrowserE2E(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the platform and a browser")
	}
	browser := os.Getenv("CHROMIUM_PATH")
	if browser == "" {
		browser, _ = exec.LookPath("chromium")
	}
	node, nodeErr := exec.LookPath("node")
	npm, npmErr := exec.LookPath("npm")
	// Missing tools fail the test rather than skip it: make test and CI must test the same
	// things, and a skipped browser test reads as a pass (README, Prerequisites).
	switch {
	case browser == "":
		t.Fatal("chromium is not installed: apt-get install -y chromium, or set CHROMIUM_PATH (README, Prerequisites)")
	case nodeErr != nil || npmErr != nil:
		t.Fatal("node and npm are needed for the browser test: apt-get install -y nodejs npm (README, Prerequisites)")
	}
	dir, err := filepath.Abs("e2e")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core")); err != nil {
		cmd := exec.Command(npm, "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
		}
	}

	start := time.Now()
	env := stacktest.Get(t)
	db := env.NewDatabase(t)
	prefix := env.Topics(t)("")
	common := []string{"-brokers", strings.Join(env.Brokers, ","), "-topic-prefix", prefix}
	var ready []string
	addr := func() string {
		a := fmt.Sprintf("127.0.0.1:%d", stacktest.FreePort(t))
		ready = append(ready, "http://"+a+"/readyz")
		return a
	}
	env.Start(t, "persistence", env.Build(t, "./services/persistence"), nil, append(common, "-database-url", db, "-http-addr", addr())...)
	env.Start(t, "fanout", env.Build(t, "./services/fanout"), nil, append(common, "-http-addr", addr(), "-start-offset", "first", "-group", stacktest.UniqueName("fanout-"))...)
	gw := env.Build(t, "./services/gateway")
	gwA, gwB := addr(), addr()
	procA := env.Start(t, "gw-a", gw, nil, append(common, "-id", "gw-a", "-addr", gwA, "-database-url", db)...)
	env.Start(t, "gw-b", gw, nil, append(common, "-id", "gw-b", "-addr", gwB, "-database-url", db)...)
	// A gateway whose per-connection limit a test types past: 20/s with a burst of 2.
	gwSlow := addr()
	env.Start(t, "gw-slow", gw, nil, append(common, "-id", "gw-slow", "-addr", gwSlow, "-database-url", db, "-rate-conn", "20/s:2")...)
	for _, u := range ready {
		stacktest.WaitHTTP(t, u, 2*time.Minute)
	}
	t.Logf("platform up in %s", time.Since(start).Round(time.Millisecond))

	var stopOnce sync.Once
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/stop-a" {
			http.NotFound(w, r)
			return
		}
		// A crash, not a shutdown: the page gets no goodbye and must notice by itself.
		stopOnce.Do(func() { procA.Kill(); t.Logf("gateway A killed at %s", time.Since(start).Round(time.Millisecond)) })
		fmt.Fprintln(w, "stopped")
	}))
	defer hook.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", "chat.test.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GW_A=http://"+gwA, "GW_B=http://"+gwB, "GW_SLOW=http://"+gwSlow, "STOP_A_URL="+hook.URL+"/stop-a", "CHROMIUM_PATH="+browser)
	out, err := cmd.CombinedOutput()
	t.Logf("node --test (%s):\n%s", time.Since(start).Round(time.Millisecond), out)
	if err != nil {
		t.Fatalf("browser test failed: %v (screenshots in %s)", err, filepath.Join(dir, "screenshots", "latest"))
	}
}
