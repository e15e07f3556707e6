// Package webpush holds what the gateway, the notification service and chatctl share about
// Web Push: parsing and generating VAPID keys (RFC 8292) and validating the push
// subscriptions browsers hand out (RFC 8030 endpoint, RFC 8291 keys). Sending lives in
// the notification service; pushtest is a push service for tests that checks both RFCs.
package webpush

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"strings"
)

// ErrInvalid wraps every validation error; the message says what is wrong.
var ErrInvalid = errors.New("webpush")

// Keys is a VAPID key pair and the subject (a mailto: or https: contact for the push
// services). The key strings are base64url without padding, as browsers'
// applicationServerKey and the libraries expect.
type Keys struct {
	Public  string // uncompressed P-256 point, 65 bytes
	Private string // P-256 scalar, 32 bytes
	Subject string // mailto:ops@example.com or https://example.com/contact
}

// Zero reports whether no key is configured at all (push off).
func (k Keys) Zero() bool { return k.Public == "" && k.Private == "" && k.Subject == "" }

// Validate checks that all three are set, well formed, and that the private key is the
// public key's.
func (k Keys) Validate() error {
	var errs []error
	pub, err := ParsePublicKey(k.Public)
	if err != nil {
		errs = append(errs, fmt.Errorf("VAPID public key: %w", err))
	}
	priv, err := decodeKey(k.Private)
	if err == nil && len(priv) != 32 {
		err = fmt.Errorf("%w: want 32 bytes, got %d", ErrInvalid, len(priv))
	}
	var derived *ecdh.PrivateKey
	if err == nil {
		if derived, err = ecdh.P256().NewPrivateKey(priv); err != nil {
			err = fmt.Errorf("%w: not a P-256 private key: %v", ErrInvalid, err)
		}
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("VAPID private key: %w", err))
	}
	if pub != nil && derived != nil && !bytes.Equal(derived.PublicKey().Bytes(), pub) {
		errs = append(errs, fmt.Errorf("%w: the VAPID private key does not belong to the public key", ErrInvalid))
	}
	if err := ValidateSubject(k.Subject); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// ValidateSubject accepts mailto:<one address> or an absolute https URL (RFC 8292 §2.1).
func ValidateSubject(s string) error {
	if addr, ok := strings.CutPrefix(s, "mailto:"); ok {
		if a, err := mail.ParseAddress(addr); err != nil || a.Address != addr || a.Name != "" {
			return fmt.Errorf("%w: VAPID subject %q: after mailto: one bare address", ErrInvalid, s)
		}
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%w: VAPID subject must be mailto:<address> or an https URL, not %q", ErrInvalid, s)
	}
	return nil
}

// ParsePublicKey decodes a base64url uncompressed P-256 point (65 bytes, 0x04 first)
// and checks that it is on the curve. Used for VAPID keys and subscriptions' p256dh.
func ParsePublicKey(s string) ([]byte, error) {
	b, err := decodeKey(s)
	if err != nil {
		return nil, err
	}
	if len(b) != 65 || b[0] != 4 {
		return nil, fmt.Errorf("%w: want an uncompressed P-256 point of 65 bytes, got %d bytes", ErrInvalid, len(b))
	}
	if _, err := ecdh.P256().NewPublicKey(b); err != nil {
		return nil, fmt.Errorf("%w: not a point on P-256", ErrInvalid)
	}
	return b, nil
}

// decodeKey decodes base64url, unpadded (what browsers give) or padded.
func decodeKey(s string) ([]byte, error) {
	if s == "" {
		return nil, fmt.Errorf("%w: empty", ErrInvalid)
	}
	enc := base64.RawURLEncoding
	if strings.HasSuffix(s, "=") {
		enc = base64.URLEncoding
	}
	b, err := enc.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: not base64url (A-Z a-z 0-9 - _)", ErrInvalid)
	}
	return b, nil
}

// GenerateKeys makes a new VAPID key pair (subject left empty).
func GenerateKeys() (Keys, error) {
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return Keys{}, fmt.Errorf("cannot generate a VAPID key: %w", err)
	}
	return Keys{
		Public:  base64.RawURLEncoding.EncodeToString(k.PublicKey().Bytes()),
		Private: base64.RawURLEncoding.EncodeToString(k.Bytes()),
	}, nil
}
