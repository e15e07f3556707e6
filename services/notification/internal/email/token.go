package email

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
)

// MinTokenKeyLen is the shortest accepted signing key: HMAC-SHA256 wants a key as long
// as its output to be as strong as it can.
const MinTokenKeyLen = 32

// The unsubscribe token is "v1.<user id>.<mac>", both parts unpadded base64url, the MAC
// HMAC-SHA256 over tokenDomain + user id. The gateway verifies it with its own copy of
// this code (services never import each other); both packages test the same fixed vector,
// so the two cannot drift apart unnoticed. It has no expiry on purpose: an unsubscribe
// link in an old e-mail must still work.
const (
	tokenVersion = "v1"
	tokenDomain  = "kchat-email-unsubscribe\x00v1\x00"
)

// ErrBadToken is returned for a token that is malformed or not signed with the key.
var ErrBadToken = errors.New("email: invalid unsubscribe token")

// UnsubscribeToken returns the signed token that turns e-mail off for userID.
func UnsubscribeToken(key []byte, userID string) string {
	enc := base64.RawURLEncoding
	return tokenVersion + "." + enc.EncodeToString([]byte(userID)) + "." + enc.EncodeToString(tokenMAC(key, userID))
}

// VerifyUnsubscribeToken returns the user id a token was signed for.
func VerifyUnsubscribeToken(key []byte, token string) (string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] != tokenVersion {
		return "", ErrBadToken
	}
	enc := base64.RawURLEncoding
	user, err := enc.DecodeString(parts[1])
	if err != nil || len(user) == 0 {
		return "", ErrBadToken
	}
	mac, err := enc.DecodeString(parts[2])
	if err != nil || !hmac.Equal(mac, tokenMAC(key, string(user))) {
		return "", ErrBadToken
	}
	return string(user), nil
}

func tokenMAC(key []byte, userID string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(tokenDomain + userID))
	return m.Sum(nil)
}
