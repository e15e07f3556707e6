package cli

import (
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/kafkasec"
	"github.com/kchat/kchat/pkg/localstack"
)

// The layout kafka-secrets writes under its directory (docker-compose.yml mounts it at
// DefaultSecretsDir in every Kafka client and broker, read-only).
const (
	DefaultSecretsDir = "/etc/kchat/kafka-secrets"
	// SecretsTLSDir holds localstack.CAFileName and localstack.KeyStoreFileName.
	SecretsTLSDir = "tls"
	// SecretsSCRAMDir holds one password file per principal, named after it
	// (KAFKA_SASL_PASSWORD_FILE), as the local stack's .cache/stack/scram.
	SecretsSCRAMDir = "scram"
	// SecretsAdminProperties is a Kafka client configuration logged in as the super user
	// (security.protocol, sasl.*, PEM truststore): the --command-config / --config of
	// Kafka's own tools (the brokers' healthcheck) and the login of Cruise Control.
	SecretsAdminProperties = "clients/admin.properties"
	// SecretsKafkaUIDir is a Spring Boot config tree for Kafka UI
	// (SPRING_CONFIG_IMPORT=configtree:<dir>/): each file is one property named after it.
	SecretsKafkaUIDir = "kafka-ui"
	// SecretsKafkaUIJAAS is its one file: Kafka UI's login as admin. The list index is in
	// brackets, Spring Boot's canonical form (environment variables are the only source
	// where it maps _0_ to [0] itself).
	SecretsKafkaUIJAAS = "kafka.clusters[0].properties.sasl.jaas.config"
)

// runKafkaSecrets writes the certificates and SCRAM passwords of the secured compose stack
// (docker-compose.yml's kafka-secrets job), using the local stack's generation
// (localstack.WriteCertificates, localstack.LoadOrCreatePasswords). It keeps whatever
// exists: the passwords are also in the brokers' formatted storage, and the CA is what
// every client trusts, so a second run must change neither.
//
// With -rotate it also replaces one principal's password: a new SCRAM-SHA-512 credential
// is set on the running cluster first (as admin, with the login in the directory), then
// the password file is replaced, so the file never holds a password the cluster refuses.
func runKafkaSecrets(ctx context.Context, a *app, args []string) error {
	fs := a.newFlagSet("kafka-secrets", "kafka-secrets [-dir "+DefaultSecretsDir+"] [-hosts kafka-1,...] [-broker-owner uid:gid] [-rotate principal -brokers list]")
	dir := fs.String("dir", DefaultSecretsDir, "directory to write into (created if missing)")
	hosts := fs.String("hosts", "kafka-1,kafka-2,kafka-3,kafka-4,localhost,127.0.0.1", "names and addresses the broker certificate is valid for")
	owner := fs.String("broker-owner", "", "uid:gid to own the brokers' key (the apache/kafka image runs as 1000:1000); empty keeps the current user")
	rotate := fs.String("rotate", "", "replace this principal's password, on the cluster (as admin) and in its file; then restart what logs in as it")
	brokers := a.brokersFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	uid, gid := -1, -1
	if *owner != "" {
		u, g, ok := strings.Cut(*owner, ":")
		var err1, err2 error
		uid, err1 = strconv.Atoi(u)
		gid, err2 = strconv.Atoi(g)
		if !ok || err1 != nil || err2 != nil || uid < 0 || gid < 0 {
			return usagef("-broker-owner %q: want uid:gid, e.g. 1000:1000", *owner)
		}
	}
	users := append([]string{localstack.AdminUser}, localstack.ServiceUsers...)
	s := secretsDir(*dir)

	tlsDir := filepath.Join(*dir, SecretsTLSDir)
	created, err := localstack.WriteCertificates(tlsDir, "kchat compose", splitList(*hosts))
	if err != nil {
		return fmt.Errorf("cannot write certificates: %w", err)
	}
	if created {
		fmt.Fprintf(a.env.Stdout, "created CA and broker certificate in %s for %s\n", tlsDir, *hosts)
	} else {
		fmt.Fprintf(a.env.Stdout, "kept the certificates in %s\n", tlsDir)
	}
	passwords, err := localstack.LoadOrCreatePasswords(filepath.Join(*dir, SecretsSCRAMDir), users)
	if err != nil {
		return fmt.Errorf("cannot write passwords: %w", err)
	}
	fmt.Fprintf(a.env.Stdout, "passwords for %s in %s\n", strings.Join(users, ", "), filepath.Join(*dir, SecretsSCRAMDir))
	if *rotate != "" {
		if !slices.Contains(users, *rotate) {
			return usagef("-rotate %q: not one of %s", *rotate, strings.Join(users, ", "))
		}
		pw, err := rotatePassword(ctx, *dir, *brokers, *rotate, passwords[localstack.AdminUser])
		if err != nil {
			return err
		}
		passwords[*rotate] = pw
		fmt.Fprintf(a.env.Stdout, "rotated the password of %s; restart what logs in as it (docs/operations.md, \"Docker Compose: Kafka security\")\n", *rotate)
	}

	jaas := scramJAAS(localstack.AdminUser, passwords[localstack.AdminUser])
	admin := strings.Join([]string{
		"# Written by chatctl kafka-secrets: a Kafka client logged in as the super user.",
		"security.protocol=SASL_SSL",
		"sasl.mechanism=" + kafkasec.ScramSHA512,
		"sasl.jaas.config=" + jaas,
		"ssl.truststore.type=PEM",
		"ssl.truststore.location=" + filepath.Join(*dir, SecretsTLSDir, localstack.CAFileName),
		"",
	}, "\n")
	if err := writeIfChanged(filepath.Join(*dir, SecretsAdminProperties), admin); err != nil {
		return err
	}
	// Kafka UI logs in as admin too; the value has no trailing newline (Spring's config
	// tree would keep it).
	if err := writeIfChanged(filepath.Join(*dir, SecretsKafkaUIDir, SecretsKafkaUIJAAS), jaas); err != nil {
		return err
	}

	// Who reads what: the brokers (uid 1000) their key; every client container (the
	// services and chatctl as 65532, Cruise Control as 10001, Kafka UI, the brokers'
	// healthcheck) the CA and a password. The volume is mounted only into this stack's
	// containers, read-only, so the password files are world-readable inside it; the
	// brokers' private key is not.
	if err := s.chmodTree(0o755, 0o644); err != nil {
		return err
	}
	keyStore := filepath.Join(tlsDir, localstack.KeyStoreFileName)
	if err := os.Chmod(keyStore, 0o600); err != nil {
		return err
	}
	if uid >= 0 {
		if err := os.Chown(keyStore, uid, gid); err != nil {
			return fmt.Errorf("cannot give the brokers their key (run as root, or drop -broker-owner): %w", err)
		}
	}
	return nil
}

// scramIterations is what the new credential is hashed with (Kafka's minimum for
// SCRAM-SHA-512 is 4096, which is also what kafka-configs.sh uses by default).
const scramIterations = 8192

// rotatePassword sets a new random password for user: written to "<file>.new", set on the
// cluster as a SCRAM-SHA-512 credential (logged in as admin with adminPassword), then
// renamed over the old file. A failure before the rename leaves the old password valid
// and in place.
func rotatePassword(ctx context.Context, dir, brokers, user, adminPassword string) (string, error) {
	pw, err := localstack.NewPassword()
	if err != nil {
		return "", err
	}
	file := filepath.Join(dir, SecretsSCRAMDir, user)
	if err := os.WriteFile(file+".new", []byte(pw+"\n"), 0o600); err != nil {
		return "", err
	}
	sec, err := kafkasec.Config{TLSCAFile: filepath.Join(dir, SecretsTLSDir, localstack.CAFileName),
		SASLMechanism: kafkasec.ScramSHA512, SASLUsername: localstack.AdminUser, SASLPassword: adminPassword}.Security()
	if err != nil {
		return "", err
	}
	addrs := splitList(brokers)
	if len(addrs) == 0 {
		return "", usagef("no Kafka brokers given (-brokers or KAFKA_BROKERS)")
	}
	salt := make([]byte, 32)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	salted, err := pbkdf2.Key(sha512.New, pw, salt, scramIterations, sha512.Size)
	if err != nil {
		return "", err
	}
	client := &kafka.Client{Addr: kafka.TCP(addrs...), Timeout: 10 * time.Second, Transport: sec.RoundTripper()}
	res, err := client.AlterUserScramCredentials(ctx, &kafka.AlterUserScramCredentialsRequest{
		Upsertions: []kafka.UserScramCredentialsUpsertion{{
			Name: user, Mechanism: kafka.ScramMechanismSha512, Iterations: scramIterations, Salt: salt, SaltedPassword: salted,
		}},
	})
	if err == nil {
		for _, r := range res.Results {
			err = errors.Join(err, r.Error)
		}
	}
	if err != nil {
		_ = os.Remove(file + ".new")
		return "", sec.Explain(fmt.Errorf("cannot set the new credential of %s on %s: %w", user, brokers, err))
	}
	if err := os.Rename(file+".new", file); err != nil {
		return "", fmt.Errorf("the cluster has the new password of %s, but %s was not replaced (the new one is in %s.new): %w", user, file, file, err)
	}
	return pw, nil
}

// scramJAAS is a client's SCRAM login as Kafka's Java clients take it (sasl.jaas.config).
func scramJAAS(user, password string) string {
	return fmt.Sprintf(`org.apache.kafka.common.security.scram.ScramLoginModule required username="%s" password="%s";`, user, password)
}

type secretsDir string

// chmodTree sets every directory under s to dirMode and every file to fileMode.
func (s secretsDir) chmodTree(dirMode, fileMode os.FileMode) error {
	return filepath.Walk(string(s), func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if info.IsDir() {
			return os.Chmod(path, dirMode)
		}
		return os.Chmod(path, fileMode)
	})
}

// writeIfChanged writes content to path (creating its directory) unless it holds exactly
// that already, so a rerun leaves the files' times alone.
func writeIfChanged(path, content string) error {
	if old, err := os.ReadFile(path); err == nil && string(old) == content {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(content), 0o644)
}
