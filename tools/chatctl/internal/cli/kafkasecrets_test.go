package cli_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kchat/kchat/pkg/kafkasec"
	"github.com/kchat/kchat/pkg/localstack"
	"github.com/kchat/kchat/pkg/topics"
	"github.com/kchat/kchat/tools/chatctl/internal/cli"
	"github.com/kchat/kchat/tools/chatctl/internal/composecheck"
)

func TestKafkaSecrets_writes_once_and_keeps(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "secrets")
	code, out, errOut := runLive(t, nil, "kafka-secrets", "-dir", dir, "-hosts", "kafka-1,localhost")
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, out, errOut)
	}
	files := []string{"tls/ca.pem", "tls/broker.pem", "scram/admin", "scram/kchat-gateway", "scram/kchat-persistence",
		"scram/kchat-fanout", "scram/kchat-notification", cli.SecretsAdminProperties,
		cli.SecretsKafkaUIDir + "/" + cli.SecretsKafkaUIJAAS}
	before := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		before[f] = string(b)
	}
	admin := strings.TrimSpace(before["scram/admin"])
	props := composecheck.ParseProperties(before[cli.SecretsAdminProperties])
	if props["security.protocol"] != "SASL_SSL" || props["ssl.truststore.location"] != filepath.Join(dir, "tls", "ca.pem") ||
		!strings.Contains(props["sasl.jaas.config"], `password="`+admin+`"`) {
		t.Errorf("admin.properties does not log in as admin over SASL_SSL:\n%s", before[cli.SecretsAdminProperties])
	}
	if st, _ := os.Stat(filepath.Join(dir, "tls", "broker.pem")); st.Mode().Perm() != 0o600 {
		t.Errorf("broker.pem mode %v, want 0600", st.Mode().Perm())
	}
	if st, _ := os.Stat(filepath.Join(dir, "scram", "kchat-gateway")); st.Mode().Perm() != 0o644 {
		t.Errorf("password file mode %v, want 0644 (read by other containers' users)", st.Mode().Perm())
	}
	// A second run changes nothing.
	if code, out, errOut := runLive(t, nil, "kafka-secrets", "-dir", dir); code != 0 {
		t.Fatalf("second run: exit %d: %s%s", code, out, errOut)
	}
	for _, f := range files {
		b, _ := os.ReadFile(filepath.Join(dir, f))
		if string(b) != before[f] {
			t.Errorf("%s changed on the second run", f)
		}
	}
	if code, _, _ := runLive(t, nil, "kafka-secrets", "-dir", dir, "-broker-owner", "nobody"); code != cli.ExitUsage {
		t.Errorf("-broker-owner nobody: exit %d, want %d", code, cli.ExitUsage)
	}
}

func TestACLs_print_is_the_matrix(t *testing.T) {
	code, out, errOut := runLive(t, nil, "acls", "print")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(localstack.ServiceACLs(topics.Names{})) {
		t.Errorf("%d lines for %d rules:\n%s", len(lines), len(localstack.ServiceACLs(topics.Names{})), out)
	}
	if !strings.Contains(out, "User:kchat-persistence") || !strings.Contains(out, "chat.stored") {
		t.Errorf("unexpected matrix:\n%s", out)
	}
}

// -rotate against a throwaway secured cluster (the local stack's secured mode, whose state
// directory has the same tls/ and scram/ layout as the compose secrets volume): the new
// password logs in, the old one no longer does, and the file holds the new one.
func TestKafkaSecrets_rotate_on_a_secured_cluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three Kafka JVMs")
	}
	root, err := composecheck.RepoRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	cfg := localstack.Config{Root: root, StateDir: state, CacheDir: filepath.Join(root, ".cache"), KafkaHeapMB: 256,
		KafkaPorts: []int{freePort(t), freePort(t), freePort(t)}, ControllerPorts: []int{freePort(t), freePort(t), freePort(t)},
		MetricsPorts: []int{freePort(t), freePort(t), freePort(t)}, PostgresPort: freePort(t),
		Secure: &localstack.SecureConfig{}}
	st, err := localstack.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	t.Cleanup(func() { _ = st.Down(context.Background()) })
	if err := st.UpKafka(ctx); err != nil {
		t.Fatal(err)
	}
	brokers := strings.Join(st.Info().Brokers, ",")
	pwFile := filepath.Join(state, "scram", localstack.GatewayUser)
	old, err := os.ReadFile(pwFile)
	if err != nil {
		t.Fatal(err)
	}
	login := func(password string) error {
		sec, err := kafkasec.Config{TLSCAFile: filepath.Join(state, "tls", "ca.pem"), SASLMechanism: kafkasec.ScramSHA512,
			SASLUsername: localstack.GatewayUser, SASLPassword: strings.TrimSpace(password)}.Security()
		if err != nil {
			t.Fatal(err)
		}
		return sec.Verify(ctx, st.Info().Brokers[0], 10*time.Second)
	}
	if err := login(string(old)); err != nil {
		t.Fatalf("the generated password does not log in: %v", err)
	}
	code, out, errOut := runLive(t, nil, "kafka-secrets", "-dir", state, "-rotate", localstack.GatewayUser, "-brokers", brokers)
	if code != 0 {
		t.Fatalf("rotate: exit %d: %s%s", code, out, errOut)
	}
	now, _ := os.ReadFile(pwFile)
	if string(now) == string(old) {
		t.Fatal("the password file did not change")
	}
	// Each broker applies the new credential from the metadata log on its own.
	deadline := time.Now().Add(15 * time.Second)
	for {
		errNew, errOld := login(string(now)), login(string(old))
		if errNew == nil && errOld != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after rotation: new password: %v; old password refused: %v", errNew, errOld)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := os.Stat(pwFile + ".new"); err == nil {
		t.Error("the .new file was left behind")
	}
	// acls apply as admin, through the variables the compose jobs set; twice, since
	// topics-init runs on every `up`.
	adminEnv := map[string]string{"KAFKA_BROKERS": brokers, kafkasec.EnvTLSCAFile: filepath.Join(state, "tls", "ca.pem"),
		kafkasec.EnvSASLMechanism: kafkasec.ScramSHA512, kafkasec.EnvSASLUsername: localstack.AdminUser,
		kafkasec.EnvSASLPasswordFile: filepath.Join(state, "scram", localstack.AdminUser)}
	for i := 0; i < 2; i++ {
		if code, out, errOut := runLive(t, adminEnv, "acls", "apply", "-wait", "30s"); code != 0 || !strings.Contains(out, "applied") {
			t.Fatalf("acls apply #%d: exit %d: %s%s", i+1, code, out, errOut)
		}
	}
	// The gateway's principal may not do what the matrix does not grant.
	gwEnv := map[string]string{"KAFKA_BROKERS": brokers, kafkasec.EnvTLSCAFile: filepath.Join(state, "tls", "ca.pem"),
		kafkasec.EnvSASLMechanism: kafkasec.ScramSHA512, kafkasec.EnvSASLUsername: localstack.GatewayUser,
		kafkasec.EnvSASLPasswordFile: pwFile}
	if code, out, errOut := runLive(t, gwEnv, "acls", "apply"); code == 0 {
		t.Errorf("kchat-gateway created ACLs: %s%s", out, errOut)
	}
	if code, _, _ := runLive(t, nil, "kafka-secrets", "-dir", state, "-rotate", "nobody", "-brokers", brokers); code != cli.ExitUsage {
		t.Errorf("-rotate nobody: exit %d, want %d", code, cli.ExitUsage)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
