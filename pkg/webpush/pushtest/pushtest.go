// Package pushtest is a push service for tests: an HTTP server that plays the browser
// vendor's part of Web Push, so the whole chain is checked without an outside service.
// For every request it verifies the VAPID authorization (RFC 8292: an ES256 JWT signed
// by the key in k=, which must be the configured public key, aud the endpoint's origin,
// exp in the future and at most 24 hours ahead, sub mailto: or https:) and decrypts the
// aes128gcm body (RFC 8188 with the RFC 8291 key derivation) with the subscription's
// private key and authentication secret, which only it and the "browser" know.
//
// Each device is a Subscribe call. What a device answers is set per device (Respond), so a
// test can make one device gone (410) or a push service overloaded (503, 429).
package pushtest

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kchat/kchat/pkg/webpush"
)

// Push is one request the service accepted for a device (verified and decrypted).
type Push struct {
	Device  string // the Subscribe name
	Topic   string
	TTL     string
	Urgency string
	Subject string // the JWT's sub
	Payload []byte // decrypted
	Status  int    // what the service answered
}

// Device is a subscription the server knows the private keys of.
type Device struct {
	Name string
	Sub  webpush.Subscription
	priv *ecdh.PrivateKey
	auth []byte
}

// Server is the push service. Safe for concurrent use.
type Server struct {
	URL      string
	vapidPub []byte

	mu       sync.Mutex
	devices  map[string]*Device
	respond  map[string]func(n int) int // device -> status for its n-th request (1-based)
	hook     func(Push)
	pushes   []Push
	rejected []string
	signal   chan struct{}
}

// New starts a push service that accepts only pushes signed with vapidPublic (base64url).
func New(t testing.TB, vapidPublic string) *Server {
	t.Helper()
	pub, err := webpush.ParsePublicKey(vapidPublic)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{vapidPub: pub, devices: map[string]*Device{}, respond: map[string]func(int) int{}, signal: make(chan struct{}, 1)}
	srv := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// Subscribe makes a device: fresh P-256 keys and authentication secret, an endpoint on
// this server.
func (s *Server) Subscribe(t testing.TB, name string) *Device {
	t.Helper()
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	auth := make([]byte, 16)
	_, _ = rand.Read(auth)
	d := &Device{Name: name, priv: priv, auth: auth, Sub: webpush.Subscription{
		Endpoint: s.URL + "/push/" + name,
		P256dh:   base64.RawURLEncoding.EncodeToString(priv.PublicKey().Bytes()),
		Auth:     base64.RawURLEncoding.EncodeToString(auth),
	}}
	s.mu.Lock()
	s.devices[name] = d
	s.mu.Unlock()
	return d
}

// Respond sets what device answers to its n-th request (1-based); the default is 201.
func (s *Server) Respond(device string, status func(n int) int) {
	s.mu.Lock()
	s.respond[device] = status
	s.mu.Unlock()
}

// OnPush calls fn with every verified push before the answer is written (in the request's
// goroutine): a test can hold the answer or act as if the sender died meanwhile.
func (s *Server) OnPush(fn func(Push)) {
	s.mu.Lock()
	s.hook = fn
	s.mu.Unlock()
}

// Pushes returns every verified request so far, in arrival order, whatever was answered.
func (s *Server) Pushes() []Push {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Push(nil), s.pushes...)
}

// Rejected returns why requests that failed verification or decryption were refused.
func (s *Server) Rejected() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.rejected...)
}

// Wait blocks until cond holds for the pushes so far, or fails the test after timeout.
func (s *Server) Wait(t testing.TB, timeout time.Duration, what string, cond func([]Push) bool) []Push {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		ps := s.Pushes()
		if cond(ps) {
			return ps
		}
		select {
		case <-s.signal:
		case <-deadline.C:
			t.Fatalf("push service: %s not within %s; %d pushes, rejected %v", what, timeout, len(ps), s.Rejected())
		}
	}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutPrefix(r.URL.Path, "/push/")
	s.mu.Lock()
	d := s.devices[name]
	s.mu.Unlock()
	if r.Method != http.MethodPost || !ok || d == nil {
		http.Error(w, "no such subscription", http.StatusNotFound)
		return
	}
	p, err := s.verify(r, d)
	if err != nil {
		s.mu.Lock()
		s.rejected = append(s.rejected, name+": "+err.Error())
		s.mu.Unlock()
		s.notify()
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	n := 1
	for _, q := range s.pushes {
		if q.Device == name {
			n++
		}
	}
	p.Status = http.StatusCreated
	if f := s.respond[name]; f != nil {
		p.Status = f(n)
	}
	s.pushes = append(s.pushes, p)
	hook := s.hook
	s.mu.Unlock()
	if hook != nil {
		hook(p)
	}
	s.notify()
	w.WriteHeader(p.Status)
}

func (s *Server) notify() {
	select {
	case s.signal <- struct{}{}:
	default:
	}
}

func (s *Server) verify(r *http.Request, d *Device) (Push, error) {
	p := Push{Device: d.Name, Topic: r.Header.Get("Topic"), TTL: r.Header.Get("TTL"), Urgency: r.Header.Get("Urgency")}
	if p.TTL == "" {
		return p, errors.New("no TTL header (RFC 8030 §5.2 requires it)")
	}
	if ce := r.Header.Get("Content-Encoding"); ce != "aes128gcm" {
		return p, fmt.Errorf("Content-Encoding %q, want aes128gcm", ce)
	}
	sub, err := s.checkVAPID(r.Header.Get("Authorization"), "http://"+r.Host)
	if err != nil {
		return p, fmt.Errorf("VAPID: %w", err)
	}
	p.Subject = sub
	body, err := io.ReadAll(io.LimitReader(r.Body, 8192))
	if err != nil {
		return p, err
	}
	if p.Payload, err = Decrypt(body, d.priv, d.auth); err != nil {
		return p, fmt.Errorf("decrypt: %w", err)
	}
	return p, nil
}

// checkVAPID verifies "vapid t=<jwt>, k=<public key>" for audience aud and returns sub.
func (s *Server) checkVAPID(h, aud string) (string, error) {
	rest, ok := strings.CutPrefix(h, "vapid ")
	if !ok {
		return "", fmt.Errorf("authorization scheme is not vapid: %q", h)
	}
	var token, key string
	for part := range strings.SplitSeq(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			token = v
		case "k":
			key = v
		}
	}
	k, err := base64.RawURLEncoding.DecodeString(key)
	if err != nil || string(k) != string(s.vapidPub) {
		return "", errors.New("k= is not the application server's public key")
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", errors.New("t= is not a JWT")
	}
	var header struct{ Alg, Typ string }
	if err := decodeJSON(parts[0], &header); err != nil || header.Alg != "ES256" {
		return "", fmt.Errorf("JWT header %+v (%v), want alg ES256", header, err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		return "", errors.New("JWT signature is not 64 bytes of r||s")
	}
	x, y := elliptic.Unmarshal(elliptic.P256(), s.vapidPub) //nolint:staticcheck // the only way to an ecdsa.PublicKey from raw bytes
	pub := &ecdsa.PublicKey{Curve: elliptic.P256(), X: x, Y: y}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if !ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		return "", errors.New("JWT signature does not verify with the VAPID public key")
	}
	var claims struct {
		Aud string `json:"aud"`
		Exp int64  `json:"exp"`
		Sub string `json:"sub"`
	}
	if err := decodeJSON(parts[1], &claims); err != nil {
		return "", fmt.Errorf("JWT claims: %w", err)
	}
	now := time.Now().Unix()
	switch {
	case claims.Aud != aud:
		return "", fmt.Errorf("aud %q, want the endpoint's origin %q", claims.Aud, aud)
	case claims.Exp <= now:
		return "", fmt.Errorf("exp %d is not in the future", claims.Exp)
	case claims.Exp > now+24*3600:
		return "", fmt.Errorf("exp %d is more than 24 hours ahead (RFC 8292 §2)", claims.Exp)
	case webpush.ValidateSubject(claims.Sub) != nil:
		return "", fmt.Errorf("sub %q is not mailto: or https:", claims.Sub)
	}
	return claims.Sub, nil
}

func decodeJSON(s string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// Decrypt opens an aes128gcm body (RFC 8188) sent to the holder of priv and auth,
// deriving the key as RFC 8291 §3.3-3.4 says. It accepts one record, as Web Push sends.
func Decrypt(body []byte, priv *ecdh.PrivateKey, auth []byte) ([]byte, error) {
	if len(body) < 21 {
		return nil, errors.New("shorter than the aes128gcm header")
	}
	salt, rs, idlen := body[:16], binary.BigEndian.Uint32(body[16:20]), int(body[20])
	if idlen != 65 || len(body) < 21+idlen {
		return nil, fmt.Errorf("keyid is %d bytes, want the sender's 65-byte public key", idlen)
	}
	asPub, err := ecdh.P256().NewPublicKey(body[21 : 21+idlen])
	if err != nil {
		return nil, fmt.Errorf("keyid is not a P-256 point: %w", err)
	}
	ciphertext := body[21+idlen:]
	if rs < 18 || len(ciphertext) > int(rs) {
		return nil, fmt.Errorf("record size %d, ciphertext %d bytes: more than one record", rs, len(ciphertext))
	}
	secret, err := priv.ECDH(asPub)
	if err != nil {
		return nil, err
	}
	// RFC 8291 §3.3: IKM from the ECDH secret, keyed by the authentication secret and
	// bound to both public keys.
	info := append(append([]byte("WebPush: info\x00"), priv.PublicKey().Bytes()...), asPub.Bytes()...)
	ikm, err := hkdf.Key(sha256.New, secret, auth, string(info), 32)
	if err != nil {
		return nil, err
	}
	cek, err := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: aes128gcm\x00", 16)
	if err != nil {
		return nil, err
	}
	nonce, err := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: nonce\x00", 12)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	plain, err := gcm.Open(nil, nonce, ciphertext, nil)
	if err != nil {
		return nil, fmt.Errorf("AES-GCM: %w", err)
	}
	// RFC 8188 §2: the content, then a delimiter (2 in the last record), then zeros.
	end := len(plain) - 1
	for end >= 0 && plain[end] == 0 {
		end--
	}
	if end < 0 || plain[end] != 2 {
		return nil, errors.New("no last-record padding delimiter")
	}
	return plain[:end], nil
}
