package stacktest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kchat/kchat/pkg/localstack"
)

// S3 is an S3-compatible server started for one test: versitygw serving a temporary
// directory, as a real process.
type S3 struct {
	Endpoint  string // http://127.0.0.1:<port>
	AccessKey string
	SecretKey string
	// Dir holds the buckets as directories (each object a file), for tests that check
	// what is stored without going through S3.
	Dir string
}

// StartS3 builds versitygw on first use (pkg/localstack.InstallVersityGW: minutes, once
// per machine, cached in .cache/bin), starts it and waits until it answers. A server that
// cannot be built or started fails the test with the reason; it never skips.
func (e *Env) StartS3(t testing.TB) *S3 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	bin, err := localstack.InstallVersityGW(ctx, e.Root, filepath.Join(e.Root, ".cache"), nil)
	if err != nil {
		t.Fatalf("stacktest: an S3-compatible server is needed and could not be installed: %v", err)
	}
	tmp := t.TempDir()
	s := &S3{AccessKey: "kchat-test", SecretKey: "kchat-test-secret", Dir: filepath.Join(tmp, "data")}
	sidecar := filepath.Join(tmp, "meta")
	for _, d := range []string{s.Dir, sidecar} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	port := FreePort(t)
	cmd := localstack.VersityGWCommand(bin, port, s.AccessKey, s.SecretKey, s.Dir, sidecar)
	e.Start(t, "versitygw", cmd.Path, nil, cmd.Args[1:]...)
	s.Endpoint = fmt.Sprintf("http://127.0.0.1:%d", port)
	waitAnyHTTP(t, s.Endpoint+"/", time.Minute)
	return s
}

// waitAnyHTTP waits until url gives an HTTP answer of any status: versitygw refuses the
// anonymous request (403), which is answer enough that it serves.
func waitAnyHTTP(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res, err := httpClient.Do(req); err == nil {
			res.Body.Close()
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("stacktest: %s did not answer within %s", url, timeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
