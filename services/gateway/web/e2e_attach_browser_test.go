package web_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kchat/kchat/pkg/stacktest"
)

// TestBrowserAttachments runs e2e/attach.test.mjs (Playwright driving headless Chromium)
// against persistence, fanout and two gateways that share one attachments directory: an
// image attached on gateway A shows as a thumbnail on gateway B.
func TestBrowserAttachments(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the platform and a browser")
	}
	browser := os.Getenv("CHROMIUM_PATH")
	if browser == "" {
		browser, _ = exec.LookPath("chromium")
	}
	node, nodeErr := exec.LookPath("node")
	npm, npmErr := exec.LookPath("npm")
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
	env := stacktest.Get(t)
	db := env.NewDatabase(t)
	common := []string{"-brokers", strings.Join(env.Brokers, ","), "-topic-prefix", env.Topics(t)("")}
	var ready []string
	addr := func() string {
		a := fmt.Sprintf("127.0.0.1:%d", stacktest.FreePort(t))
		ready = append(ready, "http://"+a+"/readyz")
		return a
	}
	files := t.TempDir()
	env.Start(t, "persistence", env.Build(t, "./services/persistence"), nil, append(common, "-database-url", db, "-http-addr", addr())...)
	env.Start(t, "fanout", env.Build(t, "./services/fanout"), nil, append(common, "-http-addr", addr(), "-start-offset", "first", "-group", stacktest.UniqueName("fanout-"))...)
	gw := env.Build(t, "./services/gateway")
	gwA, gwB := addr(), addr()
	for id, a := range map[string]string{"gw-a": gwA, "gw-b": gwB} {
		env.Start(t, id, gw, nil, append(common, "-id", id, "-addr", a, "-database-url", db, "-attachment-dir", files)...)
	}
	for _, u := range ready {
		stacktest.WaitHTTP(t, u, 2*time.Minute)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", "attach.test.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GW_A=http://"+gwA, "GW_B=http://"+gwB, "CHROMIUM_PATH="+browser)
	out, err := cmd.CombinedOutput()
	t.Logf("node --test:\n%s", out)
	if err != nil {
		t.Fatalf("browser test failed: %v (screenshot in %s)", err, filepath.Join(dir, "screenshots", "latest"))
	}
}
