package composecheck_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kchat/kchat/tools/chatctl/internal/cli"
	"github.com/kchat/kchat/tools/chatctl/internal/composecheck"
)

// TestBrokerConfigLoadsInKafka runs what a broker container does before Kafka starts,
// without Docker: deploy/docker/kafka-secure-entrypoint.sh with a node's compose
// environment and secrets from `chatctl kafka-secrets`, Kafka 4.0.2's own storage tool
// (from the local stack's jars) formatting with --add-scram, twice (the second start must
// not format again). The server.properties it renders, by the image's variable rule, is
// then loaded by Kafka's KafkaConfig and each SSL listener's PEM SslFactory
// (testdata/CheckBrokerConfig.java). Not covered: the apache/kafka image's own scripts.
func TestBrokerConfigLoadsInKafka(t *testing.T) {
	if testing.Short() {
		t.Skip("starts JVMs")
	}
	s := load(t)
	lib := filepath.Join(s.Root, ".cache", "kafka-lib")
	if _, err := os.Stat(filepath.Join(lib, "kafka_2.13-4.0.2.jar")); err != nil {
		// make test starts the local stack, which fetches them, before any test runs.
		t.Fatalf("no Kafka jars in %s (the local stack fetches them: make up)", lib)
	}
	java, err := exec.LookPath("java")
	if err != nil {
		t.Fatal("no java on PATH (the local stack's brokers need it too; see the README's prerequisites)")
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal("no bash on PATH (the broker entrypoint is a bash script)")
	}
	tmp := t.TempDir()
	secrets := filepath.Join(tmp, "secrets")
	var out, errb bytes.Buffer
	if code := cli.Run(context.Background(), []string{"kafka-secrets", "-dir", secrets}, cli.Env{Stdout: &out, Stderr: &errb}); code != 0 {
		t.Fatalf("kafka-secrets: exit %d: %s", code, errb.String())
	}

	script, err := os.ReadFile(filepath.Join(s.Root, "deploy", "docker", "kafka-secure-entrypoint.sh"))
	if err != nil {
		t.Fatal(err)
	}
	storage := filepath.Join(tmp, "kafka-storage.sh")
	stub := "#!/bin/sh\nexec " + java + " -Xmx256m -cp '" + lib + "/*' kafka.tools.StorageTool \"$@\"\n"
	if err := os.WriteFile(storage, []byte(stub), 0o755); err != nil {
		t.Fatal(err)
	}
	entry := string(script)
	for old, repl := range map[string]string{
		"/opt/kafka/bin/kafka-storage.sh": storage,
		`exec /etc/kafka/docker/run "$@"`: `render_properties > "$KCHAT_TEST_RENDERED"`,
	} {
		if !strings.Contains(entry, old) {
			t.Fatalf("kafka-secure-entrypoint.sh no longer contains %q; update this test", old)
		}
		entry = strings.ReplaceAll(entry, old, repl)
	}
	entryPath := filepath.Join(tmp, "entry.sh")
	if err := os.WriteFile(entryPath, []byte(entry), 0o755); err != nil {
		t.Fatal(err)
	}

	for _, name := range []string{"kafka-1", "kafka-4"} { // a combined node and a broker-only one
		t.Run(name, func(t *testing.T) {
			data := filepath.Join(tmp, name+"-data")
			rendered := filepath.Join(tmp, name+".properties")
			nodeEnv := env(t, s, name)
			vars := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + tmp, "KCHAT_KAFKA_SECRETS=" + secrets, "KCHAT_TEST_RENDERED=" + rendered}
			want := map[string]string{}
			for k, v := range nodeEnv {
				v = strings.ReplaceAll(v, cli.DefaultSecretsDir, secrets)
				if k == "KAFKA_LOG_DIRS" {
					v = data
				}
				vars = append(vars, k+"="+v)
				if key, ok := composecheck.BrokerProperty(k); ok {
					want[key] = v
				}
			}
			run := func() string {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				cmd := exec.CommandContext(ctx, bash, entryPath)
				cmd.Env = vars
				b, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("entrypoint: %v\n%s", err, b)
				}
				return string(b)
			}
			if first := run(); !strings.Contains(first, "formatting") || !strings.Contains(first, "admin kchat-fanout kchat-gateway kchat-notification kchat-persistence") {
				t.Errorf("first start did not format with every SCRAM user:\n%s", first)
			}
			for _, f := range []string{"meta.properties", "bootstrap.checkpoint"} {
				if _, err := os.Stat(filepath.Join(data, f)); err != nil {
					t.Errorf("formatted storage lacks %s: %v", f, err)
				}
			}
			if second := run(); strings.Contains(second, "formatting") {
				t.Errorf("second start formatted again:\n%s", second)
			}

			// The bash rendering agrees with composecheck's reading of the same rule, plus
			// the two logins the script adds.
			text, err := os.ReadFile(rendered)
			if err != nil {
				t.Fatal(err)
			}
			got := composecheck.ParseProperties(string(text))
			for k, v := range want {
				if got[k] != v {
					t.Errorf("rendered %s = %q, compose means %q", k, got[k], v)
				}
			}
			for _, k := range []string{"listener.name.internal.scram-sha-512.sasl.jaas.config", "cruise.control.metrics.reporter.sasl.jaas.config"} {
				if !strings.Contains(got[k], `username="admin"`) {
					t.Errorf("rendered %s = %q, want the admin login", k, got[k])
				}
			}
			if len(got) != len(want)+2 {
				t.Errorf("rendered %d properties, want %d from compose plus 2 logins", len(got), len(want))
			}

			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, java, "-Xmx256m", "-cp", lib+"/*",
				filepath.Join(s.Root, "tools", "chatctl", "internal", "composecheck", "testdata", "CheckBrokerConfig.java"), rendered)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			b, err := cmd.Output()
			if err != nil {
				msg := stderr.String()
				if len(msg) > 3000 {
					msg = msg[:3000]
				}
				t.Fatalf("Kafka refuses the rendered config: %v\n%s%s", err, b, msg)
			}
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if lines[len(lines)-1] != "ok" {
				t.Fatalf("CheckBrokerConfig:\n%s", b)
			}
			// Settings Kafka itself does not define must belong to a plugin we load:
			// StandardAuthorizer's and the Cruise Control metrics reporter's.
			plugin := map[string]bool{"allow.everyone.if.no.acl.found": true, "super.users": true}
			sslOK := 0
			for _, l := range lines {
				if k, ok := strings.CutPrefix(l, "unknown: "); ok && !plugin[k] && !strings.HasPrefix(k, "cruise.control.metrics.") {
					t.Errorf("%s is not a Kafka broker setting (typo?)", k)
				}
				if strings.HasPrefix(l, "listener: ") && strings.HasSuffix(l, " SASL_SSL ssl-ok") {
					sslOK++
				}
			}
			if sslOK != 2 {
				t.Errorf("want INTERNAL and HOST as SASL_SSL listeners with a loadable PEM keystore:\n%s", b)
			}
		})
	}
}
