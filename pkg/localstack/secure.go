package localstack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/devcert"
	"github.com/kchat/kchat/pkg/kafkasec"
	"github.com/kchat/kchat/pkg/topics"
)

// SecureConfig is the secured mode: every broker serves clients and each other on one
// SASL_SSL listener (TLS with a certificate generated at start, SCRAM-SHA-512 logins), and
// KRaft's StandardAuthorizer refuses whatever no ACL allows. It is how `devstack up` (make
// dev, make test) and pkg/stacktest run the stack by default; `devstack up -plaintext`
// (SECURE=0) leaves it out.
//
// The controller listener stays PLAINTEXT on 127.0.0.1, so its connections (broker
// registrations, Raft) have the principal User:ANONYMOUS, which is therefore a super
// user next to admin. Clients cannot reach it: the controller port is not advertised and
// answers controller requests only. A cluster on more than one machine must secure that
// listener too (docs/operations.md, "Kafka security").
type SecureConfig struct {
	// Users maps SCRAM-SHA-512 principals (User:<name>) to passwords. The credentials
	// are written into the metadata log when the storage is formatted, so they exist
	// before the first broker accepts a login. "admin" is required: the inter-broker
	// principal and the only super user a client can log in as.
	//
	// Nil means generated: admin and each of ServiceUsers get a random password on first
	// use, kept in StateDir/scram/<user> (one 0600 file each, the form
	// KAFKA_SASL_PASSWORD_FILE reads), and later runs read them back, since the
	// credentials live in the formatted storage and a new password would be refused.
	Users map[string]string
}

// ServiceUsers are the services' principals, one per service (ServiceACLs).
var ServiceUsers = []string{GatewayUser, PersistenceUser, FanoutUser, NotificationUser}

// Security modes as recorded in the state directory (see checkSecurityMode).
const (
	modePlaintext = "PLAINTEXT"
	modeSecured   = "SASL_SSL"
)

// ErrSecurityMismatch means the stack's Kafka storage was formatted for the other
// security mode than the one asked for.
var ErrSecurityMismatch = errors.New("security mode mismatch")

// AdminUser is the secured mode's super user, also used between brokers.
const AdminUser = "admin"

func (c *SecureConfig) validate() error {
	if c.Users[AdminUser] == "" {
		return errors.New("localstack: Secure.Users needs a password for " + AdminUser)
	}
	for name, pw := range c.Users {
		// The format tool parses name=...,password=... between brackets.
		if name == "" || pw == "" || strings.ContainsAny(name+pw, `,[]="\`) {
			return fmt.Errorf("localstack: SCRAM user %q: name and password must be non-empty, without , [ ] = \" or \\", name)
		}
	}
	return nil
}

// secureProperties replaces the PLAINTEXT listener lines of serverProperties in secured
// mode. PEM files are read by the brokers directly (ssl.keystore.type=PEM with a
// location: an unencrypted PKCS#8 key followed by the certificate chain).
const secureProperties = `{{define "secure" -}}
listeners=SASL_SSL://127.0.0.1:{{.Port}},CONTROLLER://127.0.0.1:{{.ControllerPort}}
advertised.listeners=SASL_SSL://127.0.0.1:{{.Port}}
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={{.AdminJAAS}}
ssl.keystore.type=PEM
ssl.keystore.location={{.KeyStore}}
ssl.truststore.type=PEM
ssl.truststore.location={{.TrustStore}}
ssl.client.auth=none
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin;User:ANONYMOUS
{{end}}`

func (s *Stack) tlsDir() string       { return filepath.Join(s.cfg.StateDir, "tls") }
func (s *Stack) modeFile() string     { return filepath.Join(s.cfg.StateDir, "kafka-security") }
func (s *Stack) caFile() string       { return filepath.Join(s.tlsDir(), CAFileName) }
func (s *Stack) keyStoreFile() string { return filepath.Join(s.tlsDir(), KeyStoreFileName) }

func (s *Stack) adminJAAS() string {
	if s.cfg.Secure == nil {
		return ""
	}
	return fmt.Sprintf(`org.apache.kafka.common.security.scram.ScramLoginModule required username="%s" password="%s";`,
		AdminUser, s.cfg.Secure.Users[AdminUser])
}

// scramFormatArgs are the format tool's --add-scram arguments, one per user.
func (s *Stack) scramFormatArgs() []string {
	if s.cfg.Secure == nil {
		return nil
	}
	names := make([]string, 0, len(s.cfg.Secure.Users))
	for n := range s.cfg.Secure.Users {
		names = append(names, n)
	}
	sort.Strings(names)
	var args []string
	for _, n := range names {
		args = append(args, "--add-scram", fmt.Sprintf("SCRAM-SHA-512=[name=%s,password=%s]", n, s.cfg.Secure.Users[n]))
	}
	return args
}

// Security returns what a client logging in as user needs: TLS verified against the
// stack's CA and SCRAM-SHA-512. On a PLAINTEXT stack it is the zero Security.
func (s *Stack) Security(user string) (kafkasec.Security, error) {
	if s.cfg.Secure == nil {
		return kafkasec.Security{}, nil
	}
	return kafkasec.Config{TLSCAFile: s.caFile(), SASLMechanism: kafkasec.ScramSHA512,
		SASLUsername: user, SASLPassword: s.cfg.Secure.Users[user]}.Security()
}

// ClientEnv is the environment a kchat program (a service, chatctl, chatbench) needs to
// log in as user: the kafkasec variables with the CA file and the password file
// (generated passwords only, see PasswordFile). Nil on a PLAINTEXT stack.
func (s *Stack) ClientEnv(user string) ([]string, error) {
	if s.cfg.Secure == nil {
		return nil, nil
	}
	pw := s.PasswordFile(user)
	if pw == "" || s.cfg.Secure.Users[user] == "" {
		return nil, fmt.Errorf("localstack: no generated password for %q", user)
	}
	return []string{
		kafkasec.EnvTLSCAFile + "=" + s.caFile(),
		kafkasec.EnvSASLMechanism + "=" + kafkasec.ScramSHA512,
		kafkasec.EnvSASLUsername + "=" + user,
		kafkasec.EnvSASLPasswordFile + "=" + pw,
	}, nil
}

// Provision creates or updates the topics of f as the super user and, on a secured stack,
// the ACL matrix (ServiceACLs, unprefixed names), waiting until every broker applies it.
// Both are idempotent: every devstack up runs them.
func (s *Stack) Provision(ctx context.Context, f topics.File) (topics.Plan, error) {
	plan, err := topics.Apply(ctx, s.AdminClient(30*time.Second), f)
	if err != nil {
		return nil, fmt.Errorf("create topics: %w", err)
	}
	if s.cfg.Secure == nil {
		return plan, nil
	}
	if err := s.CreateACLs(ctx, ServiceACLs(topics.Names{})); err != nil {
		return nil, fmt.Errorf("create ACLs: %w", err)
	}
	return plan, nil
}

// adminSecurity is Security(AdminUser), for the stack's own checks; the zero Security
// on a PLAINTEXT stack (or before the CA exists, when every check fails anyway).
func (s *Stack) adminSecurity() kafkasec.Security {
	sec, _ := s.Security(AdminUser)
	return sec
}

// AdminClient returns a client logged in as the super user (PLAINTEXT on a default stack).
func (s *Stack) AdminClient(timeout time.Duration) *kafka.Client {
	return &kafka.Client{Addr: kafka.TCP(s.Info().Brokers...), Timeout: timeout, Transport: s.adminSecurity().RoundTripper()}
}

// writeCertificates creates, in secured mode and once per state directory, a CA and a
// broker certificate for 127.0.0.1 and localhost signed by it, as PEM files the brokers
// read directly.
func (s *Stack) writeCertificates() error {
	if s.cfg.Secure == nil {
		return nil
	}
	_, err := WriteCertificates(s.tlsDir(), "kchat localstack", []string{"localhost", "127.0.0.1"})
	return err
}

// The files WriteCertificates writes into its directory.
const (
	// CAFileName is the CA certificate (PEM, mode 0644): what clients verify the brokers
	// against (KAFKA_TLS_CA_FILE, ssl.truststore.location with ssl.truststore.type=PEM).
	CAFileName = "ca.pem"
	// KeyStoreFileName is the brokers' unencrypted PKCS#8 key followed by their certificate
	// and the CA (PEM, mode 0600): ssl.keystore.location with ssl.keystore.type=PEM.
	KeyStoreFileName = "broker.pem"
)

// WriteCertificates creates in dir, unless KeyStoreFileName is already there, a CA named
// "<name> CA" and one broker certificate valid for a year for every name in hosts (DNS
// names or IP addresses), signed by it: CAFileName and KeyStoreFileName. Existing files
// are kept (created is false), so a certificate that clients already trust is never
// replaced behind their back. dir is created with mode 0700 if missing.
func WriteCertificates(dir, name string, hosts []string) (created bool, err error) {
	keyStore := filepath.Join(dir, KeyStoreFileName)
	if _, err := os.Stat(keyStore); err == nil {
		return false, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, err
	}
	ca, err := devcert.NewCA(name + " CA")
	if err != nil {
		return false, err
	}
	broker, err := ca.Issue(name+" broker", hosts, time.Now().AddDate(1, 0, 0))
	if err != nil {
		return false, err
	}
	caPEM := ca.PEM()
	var store []byte
	store = append(store, broker.KeyPEM...)
	store = append(store, broker.CertPEM...)
	store = append(store, caPEM...)
	if err := os.WriteFile(filepath.Join(dir, CAFileName), caPEM, 0o644); err != nil {
		return false, err
	}
	// Written last: its presence means both files are complete.
	if err := os.WriteFile(keyStore, store, 0o600); err != nil {
		return false, err
	}
	return true, nil
}

// ACL is one allow rule: Principal may do each of Operations on the named resource.
type ACL struct {
	Principal    string // user name, without "User:"
	ResourceType kafka.ResourceType
	Name         string // literal topic or group name
	Operations   []kafka.ACLOperationType
}

// ACLEntries turns acls into kafka-go's entries: one per operation, literal pattern, any
// host, allow.
func ACLEntries(acls []ACL) []kafka.ACLEntry {
	var entries []kafka.ACLEntry
	for _, a := range acls {
		for _, op := range a.Operations {
			entries = append(entries, kafka.ACLEntry{
				ResourceType: a.ResourceType, ResourceName: a.Name, ResourcePatternType: kafka.PatternTypeLiteral,
				Principal: "User:" + a.Principal, Host: "*", Operation: op, PermissionType: kafka.ACLPermissionTypeAllow,
			})
		}
	}
	return entries
}

// CreateACLs creates acls through client, which must be logged in as a principal allowed
// to (the super user). Creating an ACL that exists already is not an error, so it can run
// on every start. It does not wait for the brokers to apply them; (*Stack).CreateACLs
// does.
func CreateACLs(ctx context.Context, client *kafka.Client, acls []ACL) error {
	res, err := client.CreateACLs(ctx, &kafka.CreateACLsRequest{ACLs: ACLEntries(acls)})
	if err != nil {
		return err
	}
	return errors.Join(res.Errors...)
}

// CreateACLs creates acls as the super user, then waits until every broker applies
// them: ACLs are metadata records that each broker picks up on its own, and a client
// asking a broker that has not yet would be refused (or not even shown the topic).
func (s *Stack) CreateACLs(ctx context.Context, acls []ACL) error {
	client := s.AdminClient(10 * time.Second)
	err := waitFor(ctx, time.Minute, "ACLs created", func() error {
		return CreateACLs(ctx, client, acls)
	})
	if err != nil {
		return err
	}
	// Each principal asks each broker about each topic it was granted, by name.
	seen := map[[2]string]bool{}
	for _, a := range acls {
		key := [2]string{a.Principal, a.Name}
		if a.ResourceType != kafka.ResourceTypeTopic || seen[key] || s.cfg.Secure == nil || s.cfg.Secure.Users[a.Principal] == "" {
			continue
		}
		seen[key] = true
		sec, err := s.Security(a.Principal)
		if err != nil {
			return err
		}
		for _, addr := range s.Info().Brokers {
			err := waitFor(ctx, time.Minute, fmt.Sprintf("broker %s to let %s see %s", addr, a.Principal, a.Name), func() error {
				conn, err := sec.Dialer(5*time.Second).DialContext(ctx, "tcp", addr)
				if err != nil {
					return err
				}
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				_, err = conn.ReadPartitions(a.Name)
				return err
			})
			if err != nil {
				return err
			}
		}
	}
	return nil
}
