// Package edgetls is the gateway's server-side TLS: the certificate clients see on HTTPS
// and WSS. Certificates are short-lived wherever they are issued by a machine (ACME,
// cert-manager), so the files are watched and a renewed pair is served from the next
// handshake on, without a restart that would drop every WebSocket.
package edgetls

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Certificate serves a certificate and key from two PEM files and reloads them when
// either file changes.
type Certificate struct {
	certFile, keyFile string
	recheck           time.Duration
	log               *slog.Logger
	now               func() time.Time

	mu        sync.Mutex
	cert      *tls.Certificate
	certMod   time.Time
	keyMod    time.Time
	checkedAt time.Time
}

// Load reads the pair once, so that a wrong path or a key that does not match the
// certificate stops the program at start instead of failing every handshake. recheck is
// how often a handshake may stat the files (0: every handshake).
func Load(certFile, keyFile string, recheck time.Duration, log *slog.Logger) (*Certificate, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("TLS needs both a certificate file (TLS_CERT_FILE) and a key file (TLS_KEY_FILE)")
	}
	c := &Certificate{certFile: certFile, keyFile: keyFile, recheck: recheck, log: log, now: time.Now}
	if err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// ServerConfig is a TLS configuration serving this certificate. HTTP/1.1 only: WebSocket
// upgrades are an HTTP/1.1 mechanism, and the REST API gains nothing from HTTP/2 here.
func (c *Certificate) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.current(), nil },
	}
}

func (c *Certificate) current() *tls.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if now.Sub(c.checkedAt) >= c.recheck {
		c.checkedAt = now
		if changed, err := c.changedLocked(); err != nil || changed {
			if err == nil {
				err = c.reloadLocked()
			}
			if err != nil {
				// A renewal caught half-written (the key replaced before the certificate)
				// must not take the gateway down: keep serving the pair that worked and try
				// again at the next check.
				c.log.Warn("TLS certificate not reloaded; serving the previous one", "error", err)
			} else {
				c.log.Info("TLS certificate reloaded", "cert_file", c.certFile, "not_after", c.cert.Leaf.NotAfter)
			}
		}
	}
	return c.cert
}

func (c *Certificate) reload() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reloadLocked()
}

func (c *Certificate) changedLocked() (bool, error) {
	cm, km, err := c.modTimes()
	if err != nil {
		return false, err
	}
	return !cm.Equal(c.certMod) || !km.Equal(c.keyMod), nil
}

func (c *Certificate) modTimes() (cert, key time.Time, err error) {
	ci, err := os.Stat(c.certFile)
	if err != nil {
		return cert, key, fmt.Errorf("TLS_CERT_FILE: %w", err)
	}
	ki, err := os.Stat(c.keyFile)
	if err != nil {
		return cert, key, fmt.Errorf("TLS_KEY_FILE: %w", err)
	}
	return ci.ModTime(), ki.ModTime(), nil
}

func (c *Certificate) reloadLocked() error {
	cm, km, err := c.modTimes()
	if err != nil {
		return err
	}
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("TLS_CERT_FILE/TLS_KEY_FILE: %w", err)
	}
	if now := c.now(); now.After(pair.Leaf.NotAfter) {
		return fmt.Errorf("TLS_CERT_FILE: certificate expired at %s", pair.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	c.cert, c.certMod, c.keyMod = &pair, cm, km
	return nil
}
