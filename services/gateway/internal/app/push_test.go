package app_test

import (
	"context"
	"strings"
	"testing"

	"github.com/kchat/kchat/pkg/webpush"
	"github.com/kchat/kchat/services/gateway/internal/app"
	"github.com/kchat/kchat/services/gateway/internal/gwtest"
)

// Push subscriptions over REST: the VAPID key is served, a bad subscription is a 400
// saying what is wrong and stores nothing, the same endpoint again replaces its keys, an
// endpoint another user subscribes becomes theirs alone, and DELETE removes only one's own.
func TestPush_REST(t *testing.T) {
	t.Parallel()
	vapid, err := webpush.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	h := start(t, func(c *app.Config) { c.VAPIDPublicKey = vapid.Public })
	ann := gwtest.NewAccount(t, h.base, "ann")
	bob := gwtest.NewAccount(t, h.base, "bob")
	subs := h.base + "/api/me/push-subscriptions"

	if st, f := gwtest.Do(t, "GET", h.base+"/api/push/vapid-public-key", "", nil); st != 200 || f["public_key"] != vapid.Public {
		t.Fatalf("vapid key: %d %v", st, f)
	}
	device, _ := webpush.GenerateKeys()
	auth := "MDEyMzQ1Njc4OWFiY2RlZg" // 16 bytes
	sub := func(endpoint, p256dh, auth string) map[string]any {
		return map[string]any{"endpoint": endpoint, "keys": map[string]string{"p256dh": p256dh, "auth": auth}}
	}
	for _, tc := range []struct {
		name string
		body any
		want string
	}{
		{"no keys", map[string]any{"endpoint": "https://push.example.com/a"}, "required"},
		{"no endpoint", map[string]any{"keys": map[string]string{"p256dh": device.Public, "auth": auth}}, "required"},
		{"relative endpoint", sub("/push/a", device.Public, auth), "absolute URL"},
		{"http endpoint", sub("http://push.example.com/a", device.Public, auth), "https"},
		{"p256dh not base64url", sub("https://push.example.com/a", "not base64!", auth), "p256dh"},
		{"p256dh wrong length", sub("https://push.example.com/a", device.Public[:40], auth), "65 bytes"},
		{"auth wrong length", sub("https://push.example.com/a", device.Public, "MDEyMzQ1Njc4OWFi"), "16 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, f := gwtest.Do(t, "POST", subs, ann.Token, tc.body)
			if msg, _ := f["message"].(string); st != 400 || !strings.Contains(msg, tc.want) {
				t.Fatalf("%d %v, want 400 saying %q", st, f, tc.want)
			}
		})
	}
	count := func(sql string, args ...any) int {
		t.Helper()
		var n int
		if err := h.db.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(`SELECT count(*) FROM push_subscriptions`); n != 0 {
		t.Fatalf("bad input stored %d subscriptions", n)
	}

	endpoint := "https://push.example.com/send/device-1"
	st, f := gwtest.Do(t, "POST", subs, ann.Token, sub(endpoint, device.Public, auth))
	if st != 200 || f["endpoint"] != endpoint || f["id"] == "" {
		t.Fatalf("subscribe: %d %v", st, f)
	}
	id := f["id"]
	other, _ := webpush.GenerateKeys()
	if st, f = gwtest.Do(t, "POST", subs, ann.Token, sub(endpoint, other.Public, auth)); st != 200 || f["id"] != id {
		t.Fatalf("subscribe again: %d %v, want the same id %v", st, f, id)
	}
	if n := count(`SELECT count(*) FROM push_subscriptions WHERE user_id = (SELECT id FROM users WHERE username = $1) AND p256dh = $2`, ann.Name, other.Public); n != 1 {
		t.Fatalf("keys not replaced")
	}
	// bob cannot remove ann's device, and subscribing it moves it to him.
	if st, f = gwtest.Do(t, "DELETE", subs, bob.Token, map[string]string{"endpoint": endpoint}); st != 200 || f["removed"] != false {
		t.Fatalf("bob deletes ann's: %d %v", st, f)
	}
	if st, f = gwtest.Do(t, "POST", subs, bob.Token, sub(endpoint, device.Public, auth)); st != 200 || f["id"] == id {
		t.Fatalf("bob subscribes the same browser: %d %v (want a new id)", st, f)
	}
	if n := count(`SELECT count(*) FROM push_subscriptions s JOIN users u ON u.id = s.user_id WHERE u.username = $1`, ann.Name); n != 0 {
		t.Fatalf("ann still has the browser bob subscribed")
	}
	if st, f = gwtest.Do(t, "DELETE", subs, bob.Token, map[string]string{"endpoint": endpoint}); st != 200 || f["removed"] != true {
		t.Fatalf("bob deletes his: %d %v", st, f)
	}
	if st, f = gwtest.Do(t, "DELETE", subs, bob.Token, map[string]string{}); st != 400 {
		t.Fatalf("delete without endpoint: %d %v", st, f)
	}

	// A gateway without VAPID key: push is off, said so.
	off := start(t, nil)
	if st, f := gwtest.Do(t, "GET", off.base+"/api/push/vapid-public-key", "", nil); st != 503 || f["code"] != "unavailable" {
		t.Fatalf("no key: %d %v", st, f)
	}
}
