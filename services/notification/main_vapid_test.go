package main_test

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/pkg/webpush"
)

// Malformed or partial VAPID settings stop the service at start with a message naming
// the problem, before it touches Kafka or PostgreSQL.
func TestBinary_bad_VAPID_settings_stop_it(t *testing.T) {
	env := stacktest.Get(t)
	bin := env.Build(t, "./services/notification")
	good, _ := webpush.GenerateKeys()
	other, _ := webpush.GenerateKeys()
	for _, tc := range []struct {
		name string
		env  []string
		want string
	}{
		{"public key only", []string{"VAPID_PUBLIC_KEY=" + good.Public}, "VAPID private key"},
		{"garbage public key", []string{"VAPID_PUBLIC_KEY=xyz", "VAPID_PRIVATE_KEY=" + good.Private, "VAPID_SUBJECT=mailto:ops@example.com"}, "VAPID public key"},
		{"keys of two pairs", []string{"VAPID_PUBLIC_KEY=" + good.Public, "VAPID_PRIVATE_KEY=" + other.Private, "VAPID_SUBJECT=mailto:ops@example.com"}, "does not belong"},
		{"bad subject", []string{"VAPID_PUBLIC_KEY=" + good.Public, "VAPID_PRIVATE_KEY=" + good.Private, "VAPID_SUBJECT=ops@example.com"}, "mailto:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "-brokers", strings.Join(env.Brokers, ","), "-http-addr", "127.0.0.1:0")
			cmd.Env = env.Environ(tc.env...)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if ctx.Err() != nil || !errors.As(err, &ee) || ee.ExitCode() == 0 || !strings.Contains(string(out), tc.want) {
				t.Fatalf("exit %v, output lacks %q:\n%s", err, tc.want, out)
			}
		})
	}
}
