// Package kafkasec builds the security of kafka-go connections, TLS and SASL, from
// configuration. The zero Security is PLAINTEXT: every constructor that takes one behaves
// exactly as it did before this package existed, so the unsecured local stack keeps
// working unchanged while a secured cluster needs only environment variables.
//
// Configuration comes from flags whose defaults are read from the environment, as
// everywhere in kchat (pkg/service), except the password: a flag would show it in ps, so
// it is read from KAFKA_SASL_PASSWORD or from the file named by KAFKA_SASL_PASSWORD_FILE.
package kafkasec

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// The environment variables read by FromEnv and RegisterFlags.
const (
	EnvTLS           = "KAFKA_TLS" // true: TLS with the system's roots when no CA file is given
	EnvTLSCAFile     = "KAFKA_TLS_CA_FILE"
	EnvTLSCertFile   = "KAFKA_TLS_CERT_FILE"
	EnvTLSKeyFile    = "KAFKA_TLS_KEY_FILE"
	EnvTLSServerName = "KAFKA_TLS_SERVER_NAME"
	EnvSASLMechanism = "KAFKA_SASL_MECHANISM"
	EnvSASLUsername  = "KAFKA_SASL_USERNAME"
	EnvSASLPassword  = "KAFKA_SASL_PASSWORD"
	// EnvSASLPasswordFile names a file holding the password (a mounted secret); trailing
	// newlines are dropped.
	EnvSASLPasswordFile = "KAFKA_SASL_PASSWORD_FILE"
)

// The SASL mechanisms Config accepts.
const (
	ScramSHA512 = "SCRAM-SHA-512"
	ScramSHA256 = "SCRAM-SHA-256"
	Plain       = "PLAIN"
)

// Config is the security of a Kafka client as configured. The zero value is PLAINTEXT.
type Config struct {
	// TLS turns TLS on. It is implied by any TLS file: set it alone to verify the brokers
	// against the system's roots. There is deliberately no way to skip verification.
	TLS           bool
	TLSCAFile     string // PEM CA bundle the brokers' certificates are verified against
	TLSCertFile   string // PEM client certificate (mutual TLS); needs TLSKeyFile
	TLSKeyFile    string
	TLSServerName string // default: the host of the address dialled

	SASLMechanism string // "", SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN
	SASLUsername  string
	SASLPassword  string
}

// Error is a configuration error; Var names the environment variable (and flag) at fault.
type Error struct {
	Var string
	Err error
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %v", describe(e.Var), e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// flagNames maps each variable to its flag, for messages that name both.
var flagNames = map[string]string{
	EnvTLS: "kafka-tls", EnvTLSCAFile: "kafka-tls-ca-file", EnvTLSCertFile: "kafka-tls-cert-file",
	EnvTLSKeyFile: "kafka-tls-key-file", EnvTLSServerName: "kafka-tls-server-name",
	EnvSASLMechanism: "kafka-sasl-mechanism", EnvSASLUsername: "kafka-sasl-username",
}

func describe(v string) string {
	if f, ok := flagNames[v]; ok {
		return fmt.Sprintf("%s (-%s)", v, f)
	}
	return v
}

// FromEnv reads a Config from the environment through getenv (os.Getenv in programs).
// Only values that cannot be read are errors here; Security checks the combination.
func FromEnv(getenv func(string) string) (Config, error) {
	c := Config{
		TLSCAFile: getenv(EnvTLSCAFile), TLSCertFile: getenv(EnvTLSCertFile), TLSKeyFile: getenv(EnvTLSKeyFile),
		TLSServerName: getenv(EnvTLSServerName), SASLMechanism: getenv(EnvSASLMechanism),
		SASLUsername: getenv(EnvSASLUsername), SASLPassword: getenv(EnvSASLPassword),
	}
	if v := getenv(EnvTLS); v != "" {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return c, &Error{EnvTLS, fmt.Errorf("%q: want true or false", v)}
		}
		c.TLS = b
	}
	if f := getenv(EnvSASLPasswordFile); f != "" {
		if c.SASLPassword != "" {
			return c, &Error{EnvSASLPasswordFile, fmt.Errorf("set together with %s: use one", EnvSASLPassword)}
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return c, &Error{EnvSASLPasswordFile, err}
		}
		c.SASLPassword = strings.TrimRight(string(b), "\r\n")
	}
	return c, nil
}

// Environ returns the environment variables that make FromEnv read c back, for a child
// process of a program that was configured by flags as well as variables. The password
// is passed by value (KAFKA_SASL_PASSWORD), never on a command line. Combine it with an
// environment from which the variables of this package were removed (IsVar): a
// KAFKA_SASL_PASSWORD_FILE left next to it would be refused.
func (c Config) Environ() []string {
	var env []string
	add := func(k, v string) {
		if v != "" {
			env = append(env, k+"="+v)
		}
	}
	if c.TLS {
		add(EnvTLS, "true")
	}
	add(EnvTLSCAFile, c.TLSCAFile)
	add(EnvTLSCertFile, c.TLSCertFile)
	add(EnvTLSKeyFile, c.TLSKeyFile)
	add(EnvTLSServerName, c.TLSServerName)
	add(EnvSASLMechanism, c.SASLMechanism)
	add(EnvSASLUsername, c.SASLUsername)
	add(EnvSASLPassword, c.SASLPassword)
	return env
}

// IsVar reports whether kv (KEY=VALUE, or a bare KEY) sets one of this package's
// variables.
func IsVar(kv string) bool {
	k, _, _ := strings.Cut(kv, "=")
	switch k {
	case EnvTLS, EnvTLSCAFile, EnvTLSCertFile, EnvTLSKeyFile, EnvTLSServerName,
		EnvSASLMechanism, EnvSASLUsername, EnvSASLPassword, EnvSASLPasswordFile:
		return true
	}
	return false
}

// Flags is a Config registered as flags with environment defaults; see RegisterFlags.
type Flags struct {
	cfg    Config
	envErr error
}

// RegisterFlags registers -kafka-tls, -kafka-tls-ca-file, -kafka-tls-cert-file,
// -kafka-tls-key-file, -kafka-tls-server-name, -kafka-sasl-mechanism and
// -kafka-sasl-username on fs, each defaulting to its environment variable. The password
// has no flag (see the package comment). Call Security after fs is parsed.
func RegisterFlags(fs *flag.FlagSet) *Flags {
	env, err := FromEnv(os.Getenv)
	f := &Flags{cfg: env, envErr: err}
	fs.BoolVar(&f.cfg.TLS, flagNames[EnvTLS], env.TLS, "connect to Kafka with TLS, verified against the system's roots unless a CA file is given ("+EnvTLS+")")
	fs.StringVar(&f.cfg.TLSCAFile, flagNames[EnvTLSCAFile], env.TLSCAFile, "PEM CA bundle that verifies the brokers; turns TLS on ("+EnvTLSCAFile+")")
	fs.StringVar(&f.cfg.TLSCertFile, flagNames[EnvTLSCertFile], env.TLSCertFile, "PEM client certificate for mutual TLS ("+EnvTLSCertFile+")")
	fs.StringVar(&f.cfg.TLSKeyFile, flagNames[EnvTLSKeyFile], env.TLSKeyFile, "PEM key of the client certificate ("+EnvTLSKeyFile+")")
	fs.StringVar(&f.cfg.TLSServerName, flagNames[EnvTLSServerName], env.TLSServerName, "name the brokers' certificates are verified for (default: the dialled host) ("+EnvTLSServerName+")")
	fs.StringVar(&f.cfg.SASLMechanism, flagNames[EnvSASLMechanism], env.SASLMechanism, "SASL mechanism: SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN; empty for none ("+EnvSASLMechanism+"; password in "+EnvSASLPassword+" or "+EnvSASLPasswordFile+")")
	fs.StringVar(&f.cfg.SASLUsername, flagNames[EnvSASLUsername], env.SASLUsername, "SASL user ("+EnvSASLUsername+")")
	return f
}

// Security resolves the parsed flags; the error names the variable at fault.
func (f *Flags) Security() (Security, error) {
	if f.envErr != nil {
		return Security{}, f.envErr
	}
	return f.cfg.Security()
}

// Config returns the parsed flags' Config.
func (f *Flags) Config() (Config, error) { return f.cfg, f.envErr }

// TLSEnabled reports whether the Config asks for TLS.
func (c Config) TLSEnabled() bool {
	return c.TLS || c.TLSCAFile != "" || c.TLSCertFile != "" || c.TLSKeyFile != "" || c.TLSServerName != ""
}

// TLSConfig returns the TLS configuration, nil for none. Files are read now: an unreadable
// or malformed one is an error naming its variable.
func (c Config) TLSConfig() (*tls.Config, error) {
	if !c.TLSEnabled() {
		return nil, nil
	}
	// kafka-go fills ServerName per connection from the dialled host when it is empty.
	t := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.TLSServerName}
	if c.TLSCAFile != "" {
		pem, err := os.ReadFile(c.TLSCAFile)
		if err != nil {
			return nil, &Error{EnvTLSCAFile, err}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &Error{EnvTLSCAFile, fmt.Errorf("%s holds no PEM certificate", c.TLSCAFile)}
		}
		t.RootCAs = pool
	}
	switch {
	case c.TLSCertFile != "" && c.TLSKeyFile == "":
		return nil, &Error{EnvTLSKeyFile, fmt.Errorf("required with %s", EnvTLSCertFile)}
	case c.TLSKeyFile != "" && c.TLSCertFile == "":
		return nil, &Error{EnvTLSCertFile, fmt.Errorf("required with %s", EnvTLSKeyFile)}
	case c.TLSCertFile != "":
		pair, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
		if err != nil {
			return nil, &Error{EnvTLSCertFile, err}
		}
		t.Certificates = []tls.Certificate{pair}
	}
	return t, nil
}

// Mechanism returns the SASL mechanism, nil for none.
func (c Config) Mechanism() (sasl.Mechanism, error) {
	if c.SASLMechanism == "" {
		if c.SASLUsername != "" || c.SASLPassword != "" {
			return nil, &Error{EnvSASLMechanism, errors.New("empty, but a SASL user or password is set: say which mechanism (SCRAM-SHA-512)")}
		}
		return nil, nil
	}
	if c.SASLUsername == "" {
		return nil, &Error{EnvSASLUsername, fmt.Errorf("required with %s=%s", EnvSASLMechanism, c.SASLMechanism)}
	}
	if c.SASLPassword == "" {
		return nil, &Error{EnvSASLPassword, fmt.Errorf("required with %s=%s (or %s)", EnvSASLMechanism, c.SASLMechanism, EnvSASLPasswordFile)}
	}
	switch strings.ToUpper(c.SASLMechanism) {
	case ScramSHA512, ScramSHA256:
		algo := scram.SHA512
		if strings.EqualFold(c.SASLMechanism, ScramSHA256) {
			algo = scram.SHA256
		}
		m, err := scram.Mechanism(algo, c.SASLUsername, c.SASLPassword)
		if err != nil {
			return nil, &Error{EnvSASLUsername, err}
		}
		return m, nil
	case Plain:
		// PLAIN sends the password itself: refuse it on a connection anyone can read.
		if !c.TLSEnabled() {
			return nil, &Error{EnvSASLMechanism, errors.New("PLAIN sends the password in clear text: it needs TLS (" + EnvTLSCAFile + " or " + EnvTLS + "=true)")}
		}
		return plain.Mechanism{Username: c.SASLUsername, Password: c.SASLPassword}, nil
	}
	return nil, &Error{EnvSASLMechanism, fmt.Errorf("%q: want SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN", c.SASLMechanism)}
}

// Security checks the Config and builds its TLS configuration and SASL mechanism.
func (c Config) Security() (Security, error) {
	t, err := c.TLSConfig()
	if err != nil {
		return Security{}, err
	}
	m, err := c.Mechanism()
	if err != nil {
		return Security{}, err
	}
	return Security{TLS: t, SASL: m, user: c.SASLUsername}, nil
}

// Security is what a kafka-go connection needs to be secured. The zero value is
// PLAINTEXT. It is a value: copying it shares the read-only TLS configuration.
type Security struct {
	TLS  *tls.Config    // nil: no TLS
	SASL sasl.Mechanism // nil: no SASL
	user string         // the SASL user, for messages
}

// Enabled reports whether any security is configured.
func (s Security) Enabled() bool { return s.TLS != nil || s.SASL != nil }

// User is the SASL user as configured, "" without SASL.
func (s Security) User() string { return s.user }

// Secure sets t's TLS and SASL and returns it; on the zero Security t is unchanged.
func (s Security) Secure(t *kafka.Transport) *kafka.Transport {
	t.TLS, t.SASL = s.TLS, s.SASL
	return t
}

// RoundTripper is the transport for a kafka.Client: nil (kafka-go's shared
// DefaultTransport, as before) on the zero Security, else a new secured Transport.
func (s Security) RoundTripper() kafka.RoundTripper {
	if !s.Enabled() {
		return nil
	}
	return s.Secure(&kafka.Transport{})
}

// Dialer returns a dialer with kafka-go's default settings and timeout, secured; what
// kafka.DialContext uses on the zero Security.
func (s Security) Dialer(timeout time.Duration) *kafka.Dialer {
	return &kafka.Dialer{Timeout: timeout, DualStack: true, TLS: s.TLS, SASLMechanism: s.SASL}
}

// ReaderDialer is the Dialer for a kafka.ReaderConfig: nil (the Reader's own default, as
// before) on the zero Security.
func (s Security) ReaderDialer() *kafka.Dialer {
	if !s.Enabled() {
		return nil
	}
	return s.Dialer(10 * time.Second)
}

var (
	// ErrAuthentication marks a broker's refusal of the SASL credentials. It is
	// permanent: retrying with the same password cannot succeed.
	ErrAuthentication = errors.New("kafka authentication failed")
	// ErrTLS marks a TLS handshake that failed: the broker's certificate is not trusted
	// or not for this name, or the listener does not speak TLS. Permanent too.
	ErrTLS = errors.New("kafka TLS handshake failed")
)

// Explain wraps err, from a connection secured (or not) by s, with what it most likely
// means, so that a log line or a /readyz answer says "authentication failed" instead of
// a bare protocol error. Errors it does not recognise come back unchanged.
func (s Security) Explain(err error) error {
	if err == nil {
		return nil
	}
	var (
		unknownCA *x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		record    tls.RecordHeaderError
		verify    *tls.CertificateVerificationError
	)
	switch {
	case errors.Is(err, ErrAuthentication), errors.Is(err, ErrTLS):
		return err
	case errors.Is(err, kafka.SASLAuthenticationFailed):
		return fmt.Errorf("%w as user %q (wrong user or password, or no such SCRAM credential on the cluster): %w", ErrAuthentication, s.user, err)
	case errors.Is(err, kafka.UnsupportedSASLMechanism), errors.Is(err, kafka.IllegalSASLState):
		return fmt.Errorf("%w: the listener does not accept SASL mechanism of %s: %w", ErrAuthentication, EnvSASLMechanism, err)
	case errors.As(err, &verify), errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &invalid):
		return fmt.Errorf("%w: broker certificate not trusted (check %s and %s): %w", ErrTLS, EnvTLSCAFile, EnvTLSServerName, err)
	case errors.As(err, &record):
		return fmt.Errorf("%w: the broker did not answer in TLS (a PLAINTEXT or SASL_PLAINTEXT listener?): %w", ErrTLS, err)
	case s.TLS == nil && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)):
		// A TLS listener reads a plaintext request as a malformed handshake and hangs up.
		return fmt.Errorf("%w (the broker closed the connection: if its listener expects TLS, set %s or %s=true)", err, EnvTLSCAFile, EnvTLS)
	case s.SASL == nil && errors.Is(err, io.EOF):
		return fmt.Errorf("%w (the broker closed the connection: if its listener expects SASL, set %s)", err, EnvSASLMechanism)
	}
	return err
}

// IsPermanent reports whether err (explained or not) is a security failure that no retry
// will fix: refused credentials or an untrusted certificate.
func (s Security) IsPermanent(err error) bool {
	err = s.Explain(err)
	return errors.Is(err, ErrAuthentication) || errors.Is(err, ErrTLS)
}

// Verify opens one connection to the broker at addr with s, which performs the TLS
// handshake and the SASL exchange, and sends one request. Its error is explained (see
// Explain): a program calls it at start to fail fast on wrong credentials, instead of
// retrying them forever in its consumers.
func (s Security) Verify(ctx context.Context, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := s.Dialer(timeout).DialContext(ctx, "tcp", addr)
	if err != nil {
		return s.Explain(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.ApiVersions(); err != nil {
		return s.Explain(err)
	}
	return nil
}

// VerifyAny is Verify against each of brokers in turn until one answers. It returns nil
// once one does; a permanent failure (IsPermanent) at once; otherwise the last error, so
// that a caller can tell "the cluster is not up yet" (retry) from "it refused us" (stop).
func (s Security) VerifyAny(ctx context.Context, brokers []string, timeout time.Duration) error {
	var last error = errors.New("no brokers")
	for _, b := range brokers {
		err := s.Verify(ctx, b, timeout)
		if err == nil || s.IsPermanent(err) {
			return err
		}
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	return last
}
