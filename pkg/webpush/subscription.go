package webpush

import (
	"fmt"
	"net"
	"net/url"
)

// MaxEndpointLen bounds an endpoint URL; real ones are a few hundred bytes.
const MaxEndpointLen = 2048

// Subscription is a browser's PushSubscription (its toJSON(): endpoint and keys).
type Subscription struct {
	Endpoint string `json:"endpoint"`
	P256dh   string `json:"p256dh"` // the browser's P-256 public key, base64url
	Auth     string `json:"auth"`   // the 16-byte authentication secret, base64url
}

// Validate checks the endpoint and keys as given; nothing is corrected. The endpoint must
// be an absolute https URL without credentials or fragment, or http on a loopback host
// (a push service on the same machine: development and tests); p256dh a P-256 point;
// auth 16 bytes.
func (s Subscription) Validate() error {
	if len(s.Endpoint) > MaxEndpointLen {
		return fmt.Errorf("%w: endpoint is longer than %d bytes", ErrInvalid, MaxEndpointLen)
	}
	u, err := url.Parse(s.Endpoint)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" || u.Opaque != "" {
		return fmt.Errorf("%w: endpoint must be an absolute URL without credentials or fragment", ErrInvalid)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && loopback(u.Hostname()):
	default:
		return fmt.Errorf("%w: endpoint must be https (http only on a loopback host), not %q", ErrInvalid, u.Scheme)
	}
	if _, err := ParsePublicKey(s.P256dh); err != nil {
		return fmt.Errorf("p256dh: %w", err)
	}
	auth, err := decodeKey(s.Auth)
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	if len(auth) != 16 {
		return fmt.Errorf("%w: auth must be 16 bytes, got %d", ErrInvalid, len(auth))
	}
	return nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
