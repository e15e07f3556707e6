package email_test

import (
	"strings"
	"testing"

	"github.com/kchat/kchat/services/notification/internal/email"
)

// goldenKey is a valid unsubscribe signing key for the tests.
const goldenKey = "0123456789abcdef0123456789abcdef"

func TestConfig_Validate(t *testing.T) {
	valid := func() email.Config {
		return email.Config{SMTP: email.SMTPConfig{Host: "smtp.example.com", Port: 587, TLS: email.TLSMandatory},
			From: "kchat <noreply@example.com>", BaseURL: "https://chat.example.com", TokenKey: []byte(goldenKey)}
	}
	for _, tc := range []struct {
		name   string
		change func(*email.Config)
		want   string // part of the error; "" means valid
	}{
		{"valid", func(*email.Config) {}, ""},
		{"valid with a path and a bare sender", func(c *email.Config) { c.BaseURL, c.From = "http://h:8081/chat", "n@h.test" }, ""},
		{"no host", func(c *email.Config) { c.SMTP.Host = " " }, "SMTP host"},
		{"port out of range", func(c *email.Config) { c.SMTP.Port = 70000 }, "port"},
		{"unknown TLS policy", func(c *email.Config) { c.SMTP.TLS = "starttls" }, "TLS policy"},
		{"password without user", func(c *email.Config) { c.SMTP.Password = "x" }, "SMTP user"},
		{"sender not an address", func(c *email.Config) { c.From = "kchat" }, "sender address"},
		{"relative base URL", func(c *email.Config) { c.BaseURL = "/chat" }, "base URL"},
		{"base URL with a query", func(c *email.Config) { c.BaseURL = "https://h/?a=b" }, "base URL"},
		{"other scheme", func(c *email.Config) { c.BaseURL = "ftp://h" }, "base URL"},
		{"short key", func(c *email.Config) { c.TokenKey = []byte("short") }, "token key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.change(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("accepted, want an error about %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}
