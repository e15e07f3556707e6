package email_test

import (
	"strings"
	"testing"

	"github.com/kchat/kchat/services/notification/internal/email"
)

// goldenKey and goldenToken are shared with the gateway's tests
// (services/gateway/internal/chat/email_test.go): the gateway verifies what this package
// signs, with its own copy of the code, and both must agree on this vector.
const (
	goldenKey   = "0123456789abcdef0123456789abcdef"
	goldenUser  = "u-ann"
	goldenToken = "v1.dS1hbm4.J27eL-itY1XL1_G-DVM7CeSvZNe9aRLPuzZJp9QXaTE"
)

func TestUnsubscribeToken_golden_vector(t *testing.T) {
	if got := email.UnsubscribeToken([]byte(goldenKey), goldenUser); got != goldenToken {
		t.Fatalf("token of %s = %q, want %q (the gateway's copy verifies the latter)", goldenUser, got, goldenToken)
	}
}

func TestVerifyUnsubscribeToken(t *testing.T) {
	key := []byte(goldenKey)
	good := email.UnsubscribeToken(key, "u-bob")
	parts := strings.Split(good, ".")
	other := email.UnsubscribeToken(key, "u-cat")
	for _, tc := range []struct {
		name, token string
		key         []byte
		want        string // "" means refused
	}{
		{"valid", good, key, "u-bob"},
		{"golden", goldenToken, key, goldenUser},
		{"other key", good, []byte(strings.Repeat("k", 32)), ""},
		{"user swapped, mac kept", parts[0] + "." + strings.Split(other, ".")[1] + "." + parts[2], key, ""},
		{"unknown version", "v2." + parts[1] + "." + parts[2], key, ""},
		{"mac cut short", parts[0] + "." + parts[1] + "." + parts[2][:10], key, ""},
		{"not base64", "v1.!!!." + parts[2], key, ""},
		{"empty user", "v1.." + parts[2], key, ""},
		{"too many parts", good + ".x", key, ""},
		{"empty", "", key, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := email.VerifyUnsubscribeToken(tc.key, tc.token)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("accepted %q as %q", tc.token, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

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
