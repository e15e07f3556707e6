// Package emailtoken signs and verifies the unsubscribe links of e-mail digests: the
// notification service signs them, the gateway verifies them, with one key both are given
// (EMAIL_TOKEN_KEY).
package emailtoken

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
)

// MinKeyLen is the shortest accepted signing key: HMAC-SHA256 wants a key as long as its
// output to be as strong as it can.
const MinKeyLen = 32

// A token is "v1.<user id>.<mac>", both parts unpadded base64url, the MAC HMAC-SHA256 over
// domain + user id. It has no expiry on purpose: an unsubscribe link in an old e-mail must
// still work.
const (
	version = "v1"
	domain  = "kchat-email-unsubscribe\x00v1\x00"
)

// ErrInvalid is returned for a token that is malformed or not signed with the key.
var ErrInvalid = errors.New("emailtoken: invalid unsubscribe token")

// Sign returns the token that turns e-mail off for userID.
func Sign(key []byte, userID string) string {
	enc := base64.RawURLEncoding
	return version + "." + enc.EncodeToString([]byte(userID)) + "." + enc.EncodeToString(mac(key, userID))
}

// Verify returns the user id a token was signed for.
func Verify(key []byte, token string) (string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] != version {
		return "", ErrInvalid
	}
	enc := base64.RawURLEncoding
	user, err := enc.DecodeString(parts[1])
	if err != nil || len(user) == 0 {
		return "", ErrInvalid
	}
	got, err := enc.DecodeString(parts[2])
	if err != nil || !hmac.Equal(got, mac(key, string(user))) {
		return "", ErrInvalid
	}
	return string(user), nil
}

func mac(key []byte, userID string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(domain + userID))
	return m.Sum(nil)
}
