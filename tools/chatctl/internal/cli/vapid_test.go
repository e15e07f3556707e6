package cli_test

import (
	"strings"
	"testing"

	"github.com/kchat/kchat/pkg/webpush"
	"github.com/kchat/kchat/tools/chatctl/internal/cli"
)

// The printed keys are what the notification service accepts, and new each time.
func TestVapidKeys(t *testing.T) {
	parse := func(out string) webpush.Keys {
		var k webpush.Keys
		for line := range strings.Lines(out) {
			name, value, _ := strings.Cut(strings.TrimSpace(line), "=")
			switch name {
			case "VAPID_PUBLIC_KEY":
				k.Public = value
			case "VAPID_PRIVATE_KEY":
				k.Private = value
			case "VAPID_SUBJECT":
				k.Subject = value
			}
		}
		return k
	}
	r := run(t, nil, "vapid-keys", "-subject", "https://chat.example.com/contact")
	if r.code != cli.ExitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	k := parse(r.stdout)
	if err := k.Validate(); err != nil || k.Subject != "https://chat.example.com/contact" {
		t.Fatalf("printed keys %+v do not validate: %v", k, err)
	}
	if again := parse(run(t, nil, "vapid-keys").stdout); again.Private == k.Private || again.Subject != "mailto:ops@example.com" {
		t.Fatalf("second run %+v", again)
	}
	if r := run(t, nil, "vapid-keys", "-subject", "ops@example.com"); r.code != cli.ExitUsage || !strings.Contains(r.stderr, "mailto:") {
		t.Fatalf("bad subject: exit %d, %s", r.code, r.stderr)
	}
}
