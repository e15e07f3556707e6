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
	"github.com/kchat/kchat/pkg/webpush"
)

// TestBrowserPrefs runs e2e/prefs.test.mjs (the notification settings panel and the push
// button in headless Chromium) against persistence and one gateway with a VAPID key.
func TestBrowserPrefs(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the platform and a browser")
	}
	browser := os.Getenv("CHROMIUM_PATH")
	if browser == "" {
		browser, _ = exec.LookPath("chromium")
	}
	node, nodeErr := exec.LookPath("node")
	if browser == "" || nodeErr != nil {
		t.Fatal("chromium and node are needed for the browser test (README, Prerequisites)")
	}
	dir, err := filepath.Abs("e2e")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core")); err != nil {
		npm, err := exec.LookPath("npm")
		if err != nil {
			t.Fatal("npm is needed for the browser test (README, Prerequisites)")
		}
		cmd := exec.Command(npm, "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
		}
	}
	env := stacktest.Get(t)
	db := env.NewDatabase(t)
	common := []string{"-brokers", strings.Join(env.Brokers, ","), "-topic-prefix", env.Topics(t)("")}
	keys, err := webpush.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	persist := fmt.Sprintf("127.0.0.1:%d", stacktest.FreePort(t))
	gw := fmt.Sprintf("127.0.0.1:%d", stacktest.FreePort(t))
	env.Start(t, "persistence", env.Build(t, "./services/persistence"), nil, append(common, "-database-url", db, "-http-addr", persist)...)
	env.Start(t, "gw", env.Build(t, "./services/gateway"), []string{"VAPID_PUBLIC_KEY=" + keys.Public},
		append(common, "-id", "gw-prefs", "-addr", gw, "-database-url", db)...)
	stacktest.WaitHTTP(t, "http://"+persist+"/readyz", 2*time.Minute)
	stacktest.WaitHTTP(t, "http://"+gw+"/readyz", 2*time.Minute)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", "prefs.test.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GW=http://"+gw, "CHROMIUM_PATH="+browser)
	out, err := cmd.CombinedOutput()
	t.Logf("node --test:\n%s", out)
	if err != nil {
		t.Fatalf("browser test failed: %v", err)
	}
}
