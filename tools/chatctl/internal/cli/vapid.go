package cli

import (
	"context"
	"fmt"

	"github.com/kchat/kchat/pkg/webpush"
)

// runVapidKeys prints a new VAPID key pair for Web Push as environment lines, for the
// notification service (all three) and the gateways (the public key).
func runVapidKeys(_ context.Context, a *app, args []string) error {
	fs := a.newFlagSet("vapid-keys", "vapid-keys [-subject mailto:ops@example.com]")
	subject := fs.String("subject", "mailto:ops@example.com", "VAPID_SUBJECT to print: mailto:<address> or an https URL")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := webpush.ValidateSubject(*subject); err != nil {
		return usagef("%v", err)
	}
	k, err := webpush.GenerateKeys()
	if err != nil {
		return err
	}
	k.Subject = *subject
	if err := k.Validate(); err != nil {
		return err // a generator bug; never print keys the services would refuse
	}
	fmt.Fprintf(a.env.Stdout, "VAPID_PUBLIC_KEY=%s\nVAPID_PRIVATE_KEY=%s\nVAPID_SUBJECT=%s\n", k.Public, k.Private, k.Subject)
	return nil
}
