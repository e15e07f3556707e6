package chat_test

import (
	"strings"
	"testing"

	"github.com/kchat/kchat/services/gateway/internal/chat"
)

// The same vector as services/notification/internal/email/unit_test.go: that service
// signs unsubscribe links, this one verifies them, each with its own copy of the code.
const (
	goldenKey   = "0123456789abcdef0123456789abcdef"
	goldenUser  = "u-ann"
	goldenToken = "v1.dS1hbm4.J27eL-itY1XL1_G-DVM7CeSvZNe9aRLPuzZJp9QXaTE"
)

func TestUnsubscribeToken_matches_the_notification_service(t *testing.T) {
	if got := chat.UnsubscribeToken([]byte(goldenKey), goldenUser); got != goldenToken {
		t.Fatalf("token %q, want %q", got, goldenToken)
	}
	user, err := chat.VerifyUnsubscribeToken([]byte(goldenKey), goldenToken)
	if err != nil || user != goldenUser {
		t.Fatalf("verify: %q, %v", user, err)
	}
	for _, bad := range []string{"", goldenToken + "x", strings.Replace(goldenToken, "v1.", "v2.", 1),
		"v1.dS1ib2I." + strings.Split(goldenToken, ".")[2]} {
		if u, err := chat.VerifyUnsubscribeToken([]byte(goldenKey), bad); err == nil {
			t.Errorf("accepted %q as %q", bad, u)
		}
	}
	if _, err := chat.VerifyUnsubscribeToken([]byte(strings.Repeat("x", 32)), goldenToken); err == nil {
		t.Error("accepted a token signed with another key")
	}
}

func TestValidateEmailAddress(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want string // part of the message; "" means valid
	}{
		{"bob@example.com", ""},
		{"Bob.Smith+chat@mail.example.co.uk", ""},
		{"", "required"},
		{" bob@example.com", "spaces"},
		{"bob@example.com\n", "spaces"},
		{"bob @example.com", "spaces"},
		{"Bob <bob@example.com>", "spaces"},
		{"<bob@example.com>", "single plain address"},
		{"bob@example.com (work)", "spaces"},
		{"bob", "single plain address"},
		{"bob@", "single plain address"},
		{"@example.com", "single plain address"},
		{"bob@example.com,eve@example.com", "single plain address"},
		{"bob@localhost", "domain"},
		{"bob@example.com.", "single plain address"},
		{"bob@[127.0.0.1]", "domain"},
		{strings.Repeat("b", 65) + "@example.com", "64 bytes"},
		{"bob@" + strings.Repeat("a", 250) + ".com", "254 bytes"},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			err := chat.ValidateEmailAddress(tc.addr)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && err == nil:
				t.Fatal("accepted")
			case tc.want != "" && (err.Code != "bad_request" || !strings.Contains(err.Message, tc.want)):
				t.Fatalf("got %s %q, want bad_request mentioning %q", err.Code, err.Message, tc.want)
			}
		})
	}
}
