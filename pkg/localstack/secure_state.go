package localstack

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// What the state directory remembers about the secured mode: the generated passwords and
// which mode the Kafka storage was formatted for. Both outlive the processes, so that a
// restart (devstack up again, start-broker) comes back as the cluster that was formatted.

func passwordDir(stateDir string) string { return filepath.Join(stateDir, "scram") }

// PasswordFile is the file holding user's generated password (SecureConfig.Users nil), for
// KAFKA_SASL_PASSWORD_FILE; "" when the passwords were given in the Config or the stack
// is PLAINTEXT.
func (s *Stack) PasswordFile(user string) string {
	if s.cfg.Secure == nil || !s.generated {
		return ""
	}
	return filepath.Join(passwordDir(s.cfg.StateDir), user)
}

// LoadOrCreatePasswords reads each user's password from dir (one file per user, named
// after it, the form KAFKA_SASL_PASSWORD_FILE reads), creating a random one for a user
// that has none yet; existing files are kept. Files are created with mode 0600 and dir
// with 0700 if missing.
func LoadOrCreatePasswords(dir string, users []string) (map[string]string, error) {
	return loadOrCreatePasswords(dir, users, false)
}

// loadOrCreatePasswords reads each user's password from dir, creating a random one (file
// mode 0600, directory 0700) for a user that has none yet. formatted says the storage
// already holds SCRAM credentials: a password missing then cannot be made up, since the
// cluster would refuse it.
func loadOrCreatePasswords(dir string, users []string, formatted bool) (map[string]string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	out := make(map[string]string, len(users))
	for _, u := range users {
		path := filepath.Join(dir, u)
		b, err := os.ReadFile(path)
		switch {
		case err == nil:
			pw := strings.TrimRight(string(b), "\r\n")
			if pw == "" {
				return nil, fmt.Errorf("localstack: %s is empty", path)
			}
			out[u] = pw
			continue
		case !errors.Is(err, fs.ErrNotExist):
			return nil, err
		case formatted:
			return nil, fmt.Errorf("localstack: %s is missing, but the Kafka storage was formatted with a password for %s that is only stored there; "+
				"stop the stack and remove its state directory %s to start over", path, u, filepath.Dir(dir))
		}
		pw, err := NewPassword()
		if err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, err
		}
		if _, err := f.WriteString(pw + "\n"); err != nil {
			f.Close()
			return nil, err
		}
		if err := f.Close(); err != nil {
			return nil, err
		}
		out[u] = pw
	}
	return out, nil
}

// NewPassword returns a random password (144 bits, hex): what LoadOrCreatePasswords
// generates.
func NewPassword() (string, error) {
	raw := make([]byte, 18)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	return hex.EncodeToString(raw), nil
}

// formattedMode is the security mode the Kafka storage under stateDir was formatted for:
// modeSecured or modePlaintext from the mode file, modePlaintext for storage formatted
// before the mode file existed (the default stack), "" when no node is formatted yet.
func formattedMode(stateDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, "kafka-security"))
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	for id := 1; id <= 3; id++ {
		if _, err := os.Stat(filepath.Join(stateDir, fmt.Sprintf("kafka-%d", id), "data", "meta.properties")); err == nil {
			return modePlaintext, nil
		}
	}
	return "", nil
}

// SecuredState reports whether the Kafka storage in cfg's state directory was formatted
// in secured mode, so that commands other than up (status, kill-broker) can reach the
// brokers as the super user without being told.
func SecuredState(cfg Config) (bool, error) {
	cfg.setDefaults()
	mode, err := formattedMode(cfg.StateDir)
	return mode == modeSecured, err
}

// checkSecurityMode refuses to start brokers in the other mode than the one their storage
// was formatted for, and records the mode before the first format. Started anyway, a
// PLAINTEXT-formatted cluster on a SASL_SSL listener has no SCRAM users, not even the
// inter-broker one, and a secured one on PLAINTEXT serves its ACL-protected data to
// anyone: a half-converted cluster either way.
func (s *Stack) checkSecurityMode() error {
	want := modePlaintext
	if s.cfg.Secure != nil {
		want = modeSecured
	}
	got, err := formattedMode(s.cfg.StateDir)
	if err != nil {
		return err
	}
	switch got {
	case want:
		return nil
	case "":
		if err := os.MkdirAll(s.cfg.StateDir, 0o755); err != nil {
			return err
		}
		return os.WriteFile(s.modeFile(), []byte(want+"\n"), 0o644)
	}
	name := map[string]string{modePlaintext: "PLAINTEXT (make dev SECURE=0, devstack up -plaintext)", modeSecured: "secured (make dev, the default)"}
	if name[got] == "" {
		return fmt.Errorf("localstack: %s says %q, want %s or %s", s.modeFile(), got, modePlaintext, modeSecured)
	}
	// Every checkout whose stack was created before the secured default meets this once:
	// say what to run first, then why.
	return fmt.Errorf("%w: the Kafka cluster in %s was created %s and cannot be switched to %s in place. "+
		"To start over in the new mode, run `make down`, then `bin/devstack reset-kafka` "+
		"(it deletes Kafka's topics, their messages and consumer offsets; PostgreSQL's data stays), then start again. "+
		"To keep the cluster as it is, run it in the mode it was created in",
		ErrSecurityMismatch, s.cfg.StateDir, name[got], name[want])
}

// ResetKafka deletes the Kafka state: the nodes' storage, the cluster id, the security
// mode, certificates and generated passwords, so that the next Up formats a new cluster in
// whichever mode it is asked for. PostgreSQL's data stays. It refuses while a node runs.
func (s *Stack) ResetKafka() error {
	for id := 1; id <= 3; id++ {
		if pid, ok := s.running(s.kafkaName(id)); ok {
			return fmt.Errorf("%s runs (pid %d); stop the stack first (make down)", s.kafkaName(id), pid)
		}
	}
	paths := []string{s.clusterIDFile(), s.modeFile(), s.tlsDir(), passwordDir(s.cfg.StateDir)}
	for id := 1; id <= 3; id++ {
		paths = append(paths, s.kafkaDir(id))
	}
	for _, p := range paths {
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	return nil
}
