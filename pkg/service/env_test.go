package service_test

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kchat/kchat/pkg/service"
	"github.com/kchat/kchat/pkg/stacktest"
)

func TestLookup(t *testing.T) {
	tests := []struct {
		name, value string
		lookup      func(key string) (any, error)
		want        any
		wantErr     string // "" for none
	}{
		{"int unset", "", func(k string) (any, error) { return service.LookupInt(k, 7) }, 7, ""},
		{"int", "250", func(k string) (any, error) { return service.LookupInt(k, 7) }, 250, ""},
		{"int negative", "-3", func(k string) (any, error) { return service.LookupInt(k, 7) }, -3, ""},
		{"int spaces", " 12 ", func(k string) (any, error) { return service.LookupInt(k, 7) }, 12, ""},
		{"int with suffix", "1k", func(k string) (any, error) { return service.LookupInt(k, 7) }, 7, "X=1k: want an integer"},
		{"int float", "1.5", func(k string) (any, error) { return service.LookupInt(k, 7) }, 7, "X=1.5: want an integer"},
		{"int overflow", "99999999999999999999", func(k string) (any, error) { return service.LookupInt(k, 7) }, 7, "want an integer"},
		{"duration unset", "", func(k string) (any, error) { return service.LookupDuration(k, time.Second) }, time.Second, ""},
		{"duration", "250ms", func(k string) (any, error) { return service.LookupDuration(k, time.Second) }, 250 * time.Millisecond, ""},
		{"duration without unit", "5", func(k string) (any, error) { return service.LookupDuration(k, time.Second) }, time.Second, "X=5: want a duration with a unit"},
		{"duration garbage", "soon", func(k string) (any, error) { return service.LookupDuration(k, time.Second) }, time.Second, "X=soon: want a duration"},
		{"bool unset", "", func(k string) (any, error) { return service.LookupBool(k, true) }, true, ""},
		{"bool false", "false", func(k string) (any, error) { return service.LookupBool(k, true) }, false, ""},
		{"bool off", "off", func(k string) (any, error) { return service.LookupBool(k, true) }, false, ""},
		{"bool ON", "ON", func(k string) (any, error) { return service.LookupBool(k, false) }, true, ""},
		{"bool 1", "1", func(k string) (any, error) { return service.LookupBool(k, false) }, true, ""},
		{"bool yes", "yes", func(k string) (any, error) { return service.LookupBool(k, false) }, true, ""},
		{"bool typo", "of", func(k string) (any, error) { return service.LookupBool(k, true) }, true, "X=of: want true or false"},
		{"bool garbage", "enabled", func(k string) (any, error) { return service.LookupBool(k, false) }, false, "X=enabled: want true or false"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("X", tc.value)
			got, err := tc.lookup("X")
			if got != tc.want {
				t.Errorf("value %v, want %v", got, tc.want)
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("error %v, want none", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("error %v, want one containing %q", err, tc.wantErr)
			case tc.wantErr != "":
				var ee *service.EnvError
				if !errors.As(err, &ee) || ee.Key != "X" || ee.Value != tc.value {
					t.Errorf("error %#v is not an *EnvError naming X=%s", err, tc.value)
				}
			}
		})
	}
}

// A real service binary given a malformed environment value stops at start, naming the
// variable and the expected form; before, BATCH_SIZE=1k was ignored without a word.
func TestService_binary_refuses_malformed_environment(t *testing.T) {
	root, err := stacktest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "notification")
	build := exec.Command("go", "build", "-o", bin, "./services/notification")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	tests := []struct{ env, want string }{
		{"BATCH_SIZE=1k", "BATCH_SIZE=1k: want an integer"},
		{"PRESENCE_EXPIRY=30", "PRESENCE_EXPIRY=30: want a duration with a unit"},
		{"LOG_LEVEL=verbose", `log level "verbose" (-log-level, LOG_LEVEL): want debug, info, warn or error`},
	}
	for _, tc := range tests {
		t.Run(tc.env, func(t *testing.T) {
			// Nothing it could reach: a binary that ignored the value would try to connect
			// here and fail differently (or hang until the timeout).
			cmd := exec.Command(bin, "-brokers", "127.0.0.1:1", "-database-url", "postgres://nobody@127.0.0.1:1/x", "-http-addr", "127.0.0.1:0")
			cmd.Env = append(cmd.Environ(), tc.env)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			done := make(chan error, 1)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { done <- cmd.Wait() }()
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				t.Fatalf("still running after 30s with %s; stderr: %s", tc.env, stderr.String())
			}
			var exitErr *exec.ExitError
			if !errors.As(err, &exitErr) || exitErr.ExitCode() != 2 {
				t.Errorf("exit: %v, want status 2", err)
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr %q, want it to contain %q", stderr.String(), tc.want)
			}
		})
	}
}
