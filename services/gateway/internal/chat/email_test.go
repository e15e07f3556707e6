package chat_test

import (
	"strings"
	"testing"

	"github.com/kchat/kchat/services/gateway/internal/chat"
)

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
