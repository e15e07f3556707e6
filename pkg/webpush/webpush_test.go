package webpush_test

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/kchat/kchat/pkg/webpush"
)

func TestKeys_Validate(t *testing.T) {
	a, err := webpush.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := webpush.GenerateKeys()
	a.Subject = "mailto:ops@example.com"
	if err := a.Validate(); err != nil {
		t.Fatalf("generated keys: %v", err)
	}
	for _, tc := range []struct {
		name string
		mod  func(k *webpush.Keys)
		want string
	}{
		{"another pair's private key", func(k *webpush.Keys) { k.Private = b.Private }, "does not belong"},
		{"public not base64url", func(k *webpush.Keys) { k.Public = "+/" + k.Public[2:] }, "base64url"},
		{"public too short", func(k *webpush.Keys) { k.Public = k.Public[:40] }, "65 bytes"},
		{"private too short", func(k *webpush.Keys) { k.Private = k.Private[:20] }, "32 bytes"},
		{"private missing", func(k *webpush.Keys) { k.Private = "" }, "empty"},
		{"subject missing", func(k *webpush.Keys) { k.Subject = "" }, "subject"},
		{"subject http", func(k *webpush.Keys) { k.Subject = "http://example.com" }, "subject"},
		{"subject with a name", func(k *webpush.Keys) { k.Subject = "mailto:Ops <ops@example.com>" }, "bare address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := a
			tc.mod(&k)
			err := k.Validate()
			if !errors.Is(err, webpush.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want ErrInvalid saying %q", err, tc.want)
			}
		})
	}
	a.Subject = "https://chat.example.com/contact"
	if err := a.Validate(); err != nil {
		t.Fatalf("https subject: %v", err)
	}
}

func TestSubscription_Validate(t *testing.T) {
	k, _ := webpush.GenerateKeys()
	auth := base64.RawURLEncoding.EncodeToString([]byte("0123456789abcdef"))
	ok := webpush.Subscription{Endpoint: "https://push.example.com/send/abc", P256dh: k.Public, Auth: auth}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		mod  func(s *webpush.Subscription)
	}{
		{"relative endpoint", func(s *webpush.Subscription) { s.Endpoint = "/send/abc" }},
		{"http endpoint", func(s *webpush.Subscription) { s.Endpoint = "http://push.example.com/x" }},
		{"credentials", func(s *webpush.Subscription) { s.Endpoint = "https://u:p@push.example.com/x" }},
		{"fragment", func(s *webpush.Subscription) { s.Endpoint = "https://push.example.com/x#y" }},
		{"long endpoint", func(s *webpush.Subscription) { s.Endpoint = "https://push.example.com/" + strings.Repeat("a", 2048) }},
		{"p256dh not a point", func(s *webpush.Subscription) {
			s.P256dh = base64.RawURLEncoding.EncodeToString(append([]byte{4}, make([]byte, 64)...))
		}},
		{"p256dh short", func(s *webpush.Subscription) { s.P256dh = s.P256dh[:10] }},
		{"auth 15 bytes", func(s *webpush.Subscription) { s.Auth = base64.RawURLEncoding.EncodeToString(make([]byte, 15)) }},
		{"auth not base64url", func(s *webpush.Subscription) { s.Auth = "****" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := ok
			tc.mod(&s)
			if err := s.Validate(); !errors.Is(err, webpush.ErrInvalid) {
				t.Fatalf("Validate = %v, want ErrInvalid", err)
			}
		})
	}
	for _, ep := range []string{"http://127.0.0.1:8080/push/a", "http://localhost/push", "http://[::1]:9/x"} {
		s := ok
		s.Endpoint = ep
		if err := s.Validate(); err != nil {
			t.Errorf("loopback %s: %v", ep, err)
		}
	}
}
