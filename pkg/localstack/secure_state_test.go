package localstack

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Generated passwords: one 0600 file per user in a 0700 directory, the same passwords on
// the next New, and no made-up password for storage that was already formatted.
func TestSecureConfig_generated_passwords_are_kept(t *testing.T) {
	cfg := Config{Root: t.TempDir(), StateDir: t.TempDir(), Secure: &SecureConfig{}}
	st, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := passwordDir(cfg.StateDir)
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("password directory: %v %v, want mode 0700", fi, err)
	}
	for _, u := range append([]string{AdminUser}, ServiceUsers...) {
		path := st.PasswordFile(u)
		if path != filepath.Join(dir, u) {
			t.Errorf("%s: PasswordFile %q", u, path)
		}
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v, want a 0600 file", u, fi, err)
		}
		b, _ := os.ReadFile(path)
		if got := strings.TrimSpace(string(b)); got != st.cfg.Secure.Users[u] || len(got) < 24 {
			t.Errorf("%s: file holds %q, config %q", u, got, st.cfg.Secure.Users[u])
		}
		env, err := st.ClientEnv(u)
		if err != nil || !strings.Contains(strings.Join(env, " "), "KAFKA_SASL_PASSWORD_FILE="+path) {
			t.Errorf("%s: ClientEnv %v %v", u, env, err)
		}
	}
	again, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for u, pw := range st.cfg.Secure.Users {
		if again.cfg.Secure.Users[u] != pw {
			t.Errorf("%s: password changed on the second New", u)
		}
	}
	// Storage formatted in secured mode, a password file lost: refused, not regenerated.
	if err := os.WriteFile(filepath.Join(cfg.StateDir, "kafka-security"), []byte(modeSecured), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(st.PasswordFile(FanoutUser)); err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "is missing") {
		t.Fatalf("New with a lost password file: %v", err)
	}
	if _, err := os.Stat(st.PasswordFile(FanoutUser)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a new password was written for formatted storage: %v", err)
	}
}

// A state directory stays in the mode its Kafka storage was formatted in; switching is
// refused before anything starts, with a message that says how to start over.
func TestCheckSecurityMode(t *testing.T) {
	for _, tc := range []struct {
		name      string
		formatted string // "", "legacy" (meta.properties, no mode file), or the mode file's content
		secure    bool
		wantErr   bool
		wantFile  string // the mode file afterwards
	}{
		{name: "fresh plaintext", secure: false, wantFile: modePlaintext},
		{name: "fresh secured", secure: true, wantFile: modeSecured},
		{name: "legacy plaintext stays", formatted: "legacy", secure: false},
		{name: "legacy plaintext to secured", formatted: "legacy", secure: true, wantErr: true},
		{name: "plaintext to secured", formatted: modePlaintext, secure: true, wantErr: true, wantFile: modePlaintext},
		{name: "secured to plaintext", formatted: modeSecured, secure: false, wantErr: true, wantFile: modeSecured},
		{name: "secured stays", formatted: modeSecured, secure: true, wantFile: modeSecured},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state := t.TempDir()
			switch tc.formatted {
			case "":
			case "legacy":
				data := filepath.Join(state, "kafka-2", "data")
				if err := os.MkdirAll(data, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(data, "meta.properties"), []byte("version=1\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			default:
				if err := os.WriteFile(filepath.Join(state, "kafka-security"), []byte(tc.formatted+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cfg := Config{Root: t.TempDir(), StateDir: state}
			if tc.secure {
				cfg.Secure = &SecureConfig{}
				if tc.formatted == modeSecured { // its generated passwords would be there
					cfg.Secure.Users = map[string]string{AdminUser: "pw"}
				}
			}
			// New refuses generated credentials for a PLAINTEXT state itself; otherwise
			// the check runs when the stack starts.
			st, err := New(cfg)
			if err == nil {
				err = st.checkSecurityMode()
			}
			if tc.wantErr != (err != nil) {
				t.Fatalf("error %v, want error: %v", err, tc.wantErr)
			}
			if err != nil {
				t.Log(err)
				if !errors.Is(err, ErrSecurityMismatch) || !strings.Contains(err.Error(), "cannot be switched") || !strings.Contains(err.Error(), state) ||
					!strings.Contains(err.Error(), "reset-kafka") {
					t.Errorf("error %q does not say what happened and where", err)
				}
				if tc.formatted != modeSecured {
					if _, serr := os.Stat(passwordDir(state)); !errors.Is(serr, os.ErrNotExist) {
						t.Errorf("refused, but password files were written: %v", serr)
					}
				}
			}
			b, _ := os.ReadFile(filepath.Join(state, "kafka-security"))
			if got := strings.TrimSpace(string(b)); got != tc.wantFile {
				t.Errorf("mode file %q, want %q", got, tc.wantFile)
			}
			secured, err := SecuredState(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if want := tc.wantFile == modeSecured; secured != want {
				t.Errorf("SecuredState %v, want %v", secured, want)
			}
		})
	}
}

// reset-kafka: the state of a secured cluster goes, so the next start may be PLAINTEXT;
// refused while a node runs.
func TestResetKafka(t *testing.T) {
	state := t.TempDir()
	cfg := Config{Root: t.TempDir(), StateDir: state, Secure: &SecureConfig{}}
	st, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.checkSecurityMode(); err != nil { // records SASL_SSL, as the first start does
		t.Fatal(err)
	}
	for _, d := range []string{"kafka-1/data", "kafka-2/data", "kafka-3/data", "tls", "postgres"} {
		if err := os.MkdirAll(filepath.Join(state, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(state, "kafka-1.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"+os.Args[0]), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := st.ResetKafka(); err == nil || !strings.Contains(err.Error(), "kafka-1 runs") {
		t.Fatalf("reset with kafka-1 running: %v", err)
	}
	if err := os.Remove(filepath.Join(state, "kafka-1.pid")); err != nil {
		t.Fatal(err)
	}
	if err := st.ResetKafka(); err != nil {
		t.Fatal(err)
	}
	left, _ := os.ReadDir(state)
	var names []string
	for _, e := range left {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "postgres" {
		t.Fatalf("left in the state directory: %v, want only postgres", names)
	}
	plain, err := New(Config{Root: cfg.Root, StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.checkSecurityMode(); err != nil {
		t.Fatalf("PLAINTEXT after reset: %v", err)
	}
}
