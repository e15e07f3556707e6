package emailtoken_test

import (
	"strings"
	"testing"

	"github.com/kchat/kchat/pkg/emailtoken"
)

// A fixed vector: links in e-mails already sent must keep verifying after any change here.
const (
	goldenKey   = "0123456789abcdef0123456789abcdef"
	goldenUser  = "u-ann"
	goldenToken = "v1.dS1hbm4.J27eL-itY1XL1_G-DVM7CeSvZNe9aRLPuzZJp9QXaTE"
)

func TestSign_golden_vector(t *testing.T) {
	if got := emailtoken.Sign([]byte(goldenKey), goldenUser); got != goldenToken {
		t.Fatalf("token of %s = %q, want %q", goldenUser, got, goldenToken)
	}
}

func TestVerify(t *testing.T) {
	key := []byte(goldenKey)
	good := emailtoken.Sign(key, "u-bob")
	parts := strings.Split(good, ".")
	other := emailtoken.Sign(key, "u-cat")
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
			got, err := emailtoken.Verify(tc.key, tc.token)
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
