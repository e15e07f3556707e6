package composecheck_test

import (
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/kchat/kchat/pkg/kafkasec"
	"github.com/kchat/kchat/pkg/localstack"
	"github.com/kchat/kchat/pkg/topics"
	"github.com/kchat/kchat/tools/chatctl/internal/cli"
	"github.com/kchat/kchat/tools/chatctl/internal/composecheck"
)

// The compose stack's Kafka is secured like the local stack's `make dev`
// (pkg/localstack/secure.go): these tests fail when a broker serves clients on anything
// but SASL_SSL, when a Kafka client lacks its login, or when a service logs in as another
// principal than the ACL matrix's.

// secretsPath is a file of the kafka-secrets volume as the containers see it, laid out
// by chatctl kafka-secrets (the cli constants), so compose and the generator cannot
// disagree on a name.
func secretsPath(elem ...string) string {
	return path.Join(append([]string{cli.DefaultSecretsDir}, elem...)...)
}

var (
	caFile          = secretsPath(cli.SecretsTLSDir, localstack.CAFileName)
	keyStoreFile    = secretsPath(cli.SecretsTLSDir, localstack.KeyStoreFileName)
	adminProperties = secretsPath(cli.SecretsAdminProperties)
)

// programPrincipal is the SCRAM principal of each chat service's program, as in
// localstack.ServiceACLs and deploy/kubernetes/base/kafka-users.yaml.
var programPrincipal = map[string]string{
	"gateway":      localstack.GatewayUser,
	"persistence":  localstack.PersistenceUser,
	"fanout":       localstack.FanoutUser,
	"notification": localstack.NotificationUser,
	// chatctl jobs create topics and ACLs: the super user.
	"chatctl": localstack.AdminUser,
}

// mountsSecrets reports whether svc mounts the kafka-secrets volume at
// cli.DefaultSecretsDir, and whether read-only.
func mountsSecrets(svc types.ServiceConfig) (mounted, readOnly bool) {
	for _, v := range svc.Volumes {
		if v.Type == types.VolumeTypeVolume && v.Source == "kafka-secrets" && v.Target == cli.DefaultSecretsDir {
			return true, v.ReadOnly
		}
	}
	return false, false
}

func requireSecretsRO(t *testing.T, name string, svc types.ServiceConfig) {
	t.Helper()
	mounted, ro := mountsSecrets(svc)
	switch {
	case !mounted:
		t.Errorf("%s does not mount the kafka-secrets volume at %s", name, cli.DefaultSecretsDir)
	case !ro:
		t.Errorf("%s mounts the kafka-secrets volume writable; only the kafka-secrets job may write it", name)
	}
}

func TestKafkaSecurityBrokers(t *testing.T) {
	s := load(t)
	entrypoint, err := os.ReadFile(filepath.Join(s.Root, "deploy", "docker", "kafka-secure-entrypoint.sh"))
	if err != nil {
		t.Fatal(err)
	}
	dockerfile, err := os.ReadFile(filepath.Join(s.Root, "deploy", "docker", "kafka-broker.Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(dockerfile), `ENTRYPOINT ["/opt/kchat/kafka-secure-entrypoint.sh"]`) {
		t.Error("kafka-broker.Dockerfile must start /opt/kchat/kafka-secure-entrypoint.sh (SCRAM users at format time, the admin login)")
	}
	// What the entrypoint exports, as the KAFKA_* names the image turns into properties.
	exported := map[string]bool{}
	for _, line := range strings.Split(string(entrypoint), "\n") {
		if name, ok := strings.CutPrefix(strings.TrimSpace(line), "export "); ok {
			name, _, _ = strings.Cut(name, "=")
			exported[name] = true
		}
	}
	if !strings.Contains(string(entrypoint), "--add-scram") {
		t.Error("kafka-secure-entrypoint.sh formats without --add-scram: the inter-broker user would not exist")
	}

	brokers, extra := kafkaNodes(s)
	for _, name := range append(slices.Clone(brokers), extra...) {
		t.Run(name, func(t *testing.T) {
			svc := service(t, s, name)
			e := composecheck.Env(svc)
			props := composecheck.BrokerProperties(e)
			protocols, err := composecheck.ParseProtocolMap(props["listener.security.protocol.map"])
			if err != nil {
				t.Fatal(err)
			}
			listeners, err := composecheck.ParseListeners(props["listeners"])
			if err != nil {
				t.Fatal(err)
			}
			advertised, err := composecheck.ParseListeners(props["advertised.listeners"])
			if err != nil {
				t.Fatal(err)
			}
			controller := props["controller.listener.names"]
			// A PLAINTEXT controller listener (the map is the same on every node; kafka-4
			// dials the controllers' too) logs in as User:ANONYMOUS, which then must be a
			// super user, as in pkg/localstack/secure.go.
			anonymousNeeded := protocols[controller] == "PLAINTEXT"
			for _, l := range listeners {
				proto := protocols[l.Name]
				if l.Name == controller {
					// KRaft's own listener: PLAINTEXT as in the local stack, then only if
					// no client is sent there nor can reach it from the host.
					if proto != "PLAINTEXT" && proto != "SASL_SSL" && proto != "SSL" {
						t.Errorf("controller listener %s: protocol %q", l.Name, proto)
					}
					if proto == "PLAINTEXT" {
						if listenerNamed(advertised, l.Name) != nil {
							t.Errorf("the PLAINTEXT controller listener %s is advertised to clients", l.Name)
						}
						for _, p := range svc.Ports {
							if int(p.Target) == l.Port {
								t.Errorf("the PLAINTEXT controller listener %s (port %d) is published", l.Name, l.Port)
							}
						}
					}
					continue
				}
				if proto != "SASL_SSL" {
					t.Errorf("client listener %s is %q, want SASL_SSL", l.Name, proto)
				}
				if strings.HasSuffix(l.Name, "SSL") {
					t.Errorf("listener name %s: a name ending in SSL makes the apache/kafka image's configure script demand JKS password files", l.Name)
				}
				// Each SASL listener has its server login: in compose (no secret in it) or
				// exported by the entrypoint (the inter-broker one, with the admin password).
				jaasEnv := "KAFKA_LISTENER_NAME_" + l.Name + "_SCRAM___SHA___512_SASL_JAAS_CONFIG"
				if e[jaasEnv] == "" && !exported[jaasEnv] {
					t.Errorf("listener %s has no SCRAM login: set %s (or export it in kafka-secure-entrypoint.sh)", l.Name, jaasEnv)
				}
				if strings.Contains(e[jaasEnv], "password=") {
					t.Errorf("%s holds a password in docker-compose.yml; the entrypoint exports it from the secrets volume", jaasEnv)
				}
			}
			for _, p := range svc.Ports {
				for _, l := range listeners {
					if int(p.Target) == l.Port && protocols[l.Name] != "SASL_SSL" {
						t.Errorf("published port %d is listener %s (%s), not SASL_SSL", p.Target, l.Name, protocols[l.Name])
					}
				}
			}
			inter := props["inter.broker.listener.name"]
			if protocols[inter] != "SASL_SSL" || !exported["KAFKA_LISTENER_NAME_"+inter+"_SCRAM___SHA___512_SASL_JAAS_CONFIG"] {
				t.Errorf("inter-broker listener %s must be SASL_SSL with the admin login exported by the entrypoint", inter)
			}
			want := map[string]string{
				"sasl.enabled.mechanisms":              kafkasec.ScramSHA512,
				"sasl.mechanism.inter.broker.protocol": kafkasec.ScramSHA512,
				"authorizer.class.name":                "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
				"allow.everyone.if.no.acl.found":       "false",
				"ssl.keystore.type":                    "PEM",
				"ssl.keystore.location":                keyStoreFile,
				"ssl.truststore.type":                  "PEM",
				"ssl.truststore.location":              caFile,
				// The metrics reporter's producer is a client like any other.
				"cruise.control.metrics.reporter.security.protocol":       "SASL_SSL",
				"cruise.control.metrics.reporter.sasl.mechanism":          kafkasec.ScramSHA512,
				"cruise.control.metrics.reporter.ssl.truststore.type":     "PEM",
				"cruise.control.metrics.reporter.ssl.truststore.location": caFile,
			}
			for k, v := range want {
				if props[k] != v {
					t.Errorf("%s = %q, want %q", k, props[k], v)
				}
			}
			if !exported["KAFKA_CRUISE_CONTROL_METRICS_REPORTER_SASL_JAAS_CONFIG"] {
				t.Error("kafka-secure-entrypoint.sh does not export the metrics reporter's login")
			}
			wantSuper := []string{"User:" + localstack.AdminUser}
			if anonymousNeeded {
				wantSuper = append(wantSuper, "User:ANONYMOUS")
			}
			if got := strings.Split(props["super.users"], ";"); !slices.Equal(got, wantSuper) {
				t.Errorf("super.users = %q, want %q", props["super.users"], strings.Join(wantSuper, ";"))
			}
			requireSecretsRO(t, name, svc)
			if got := svc.DependsOn["kafka-secrets"].Condition; got != "service_completed_successfully" {
				t.Errorf("depends on kafka-secrets with %q, want service_completed_successfully", got)
			}
			// A healthcheck that calls a Kafka tool logs in with the admin client config.
			if hc := svc.HealthCheck; hc != nil {
				test := strings.Join(hc.Test, " ")
				if strings.Contains(test, "/opt/kafka/bin/") && !strings.Contains(test, adminProperties) {
					t.Errorf("healthcheck %q calls a Kafka tool without the client config %s", test, adminProperties)
				}
			}
		})
	}
}

// kafkaClients are the containers that talk to Kafka: any service that names a broker's
// internal address, other than the brokers themselves.
func kafkaClients(t *testing.T, s *composecheck.Stack) []string {
	brokers, extra := kafkaNodes(s)
	nodes := append(slices.Clone(brokers), extra...)
	var out []string
	for name, svc := range s.All.Services {
		if slices.Contains(nodes, name) {
			continue
		}
		for _, v := range composecheck.Env(svc) {
			if strings.Contains(v, ":19092") {
				out = append(out, name)
				break
			}
		}
	}
	if name := "cruise-control"; !slices.Contains(out, name) {
		out = append(out, name) // its bootstrap list is in cruisecontrol.properties
	}
	slices.Sort(out)
	return out
}

func TestKafkaClientsLogIn(t *testing.T) {
	s := load(t)
	clients := kafkaClients(t, s)
	for _, want := range []string{"cruise-control", "fanout", "gateway-1", "gateway-2", "kafka-ui", "notification", "persistence", "topics-init"} {
		if !slices.Contains(clients, want) {
			t.Errorf("%s is not recognised as a Kafka client (clients: %v)", want, clients)
		}
	}
	matrix := map[string]bool{}
	for _, acl := range localstack.ServiceACLs(topics.Names{}) {
		matrix[acl.Principal] = true
	}
	used := map[string]bool{}
	for _, name := range clients {
		t.Run(name, func(t *testing.T) {
			svc := service(t, s, name)
			requireSecretsRO(t, name, svc)
			program := composecheck.BuildArg(svc, "SERVICE")
			if program == "" {
				return // Kafka UI, Cruise Control: TestKafkaUIAndCruiseControlLogIn
			}
			e := composecheck.Env(svc)
			principal, ok := programPrincipal[program]
			if !ok {
				t.Fatalf("program %s has no principal in programPrincipal", program)
			}
			want := map[string]string{
				kafkasec.EnvTLSCAFile:        caFile,
				kafkasec.EnvSASLMechanism:    kafkasec.ScramSHA512,
				kafkasec.EnvSASLUsername:     principal,
				kafkasec.EnvSASLPasswordFile: secretsPath(cli.SecretsSCRAMDir, principal),
			}
			for k, v := range want {
				if e[k] != v {
					t.Errorf("%s = %q, want %q", k, e[k], v)
				}
			}
			if e[kafkasec.EnvSASLPassword] != "" {
				t.Errorf("%s is set: passwords come from the secrets volume (%s)", kafkasec.EnvSASLPassword, kafkasec.EnvSASLPasswordFile)
			}
			if principal != localstack.AdminUser && !matrix[principal] {
				t.Errorf("principal %s has no rights in localstack.ServiceACLs", principal)
			}
			used[principal] = true
		})
	}
	// Every principal of the matrix is some service's: a service whose principal was
	// renamed in one place only would fail here or above.
	for p := range matrix {
		if !used[p] {
			t.Errorf("ACL principal %s is used by no compose service", p)
		}
	}
	// The users the secrets job creates passwords for are the ones compose uses.
	for p := range used {
		if p != localstack.AdminUser && !slices.Contains(localstack.ServiceUsers, p) {
			t.Errorf("principal %s gets no password from chatctl kafka-secrets (localstack.ServiceUsers)", p)
		}
	}
	// topics-init creates the ACLs.
	if cmd := service(t, s, "topics-init").Command; !slices.Contains(cmd, "-acls") {
		t.Errorf("topics-init runs %v, without -acls: nothing would create the ACL matrix", cmd)
	}
}

func TestKafkaUIAndCruiseControlLogIn(t *testing.T) {
	s := load(t)

	ui := env(t, s, "kafka-ui")
	wantUI := map[string]string{
		"KAFKA_CLUSTERS_0_PROPERTIES_SECURITY_PROTOCOL":       "SASL_SSL",
		"KAFKA_CLUSTERS_0_PROPERTIES_SASL_MECHANISM":          kafkasec.ScramSHA512,
		"KAFKA_CLUSTERS_0_PROPERTIES_SSL_TRUSTSTORE_TYPE":     "PEM",
		"KAFKA_CLUSTERS_0_PROPERTIES_SSL_TRUSTSTORE_LOCATION": caFile,
		"SPRING_CONFIG_IMPORT":                                "configtree:" + secretsPath(cli.SecretsKafkaUIDir) + "/",
	}
	for k, v := range wantUI {
		if ui[k] != v {
			t.Errorf("kafka-ui: %s = %q, want %q", k, ui[k], v)
		}
	}
	for k, v := range ui {
		if strings.Contains(v, "password=") {
			t.Errorf("kafka-ui: %s holds a password in docker-compose.yml", k)
		}
	}
	requireSecretsRO(t, "kafka-ui", service(t, s, "kafka-ui"))

	cc := service(t, s, "cruise-control")
	requireSecretsRO(t, "cruise-control", cc)
	if got := composecheck.Env(cc)["CRUISE_CONTROL_CLIENT_PROPERTIES"]; got != adminProperties {
		t.Errorf("cruise-control: CRUISE_CONTROL_CLIENT_PROPERTIES = %q, want %s (the admin login)", got, adminProperties)
	}
	dockerfile, err := os.ReadFile(filepath.Join(s.Root, "cruise-control", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(dockerfile), "CRUISE_CONTROL_CLIENT_PROPERTIES") {
		t.Error("cruise-control/Dockerfile's entrypoint does not read CRUISE_CONTROL_CLIENT_PROPERTIES")
	}
	props, err := composecheck.ReadProperties(filepath.Join(s.Root, "cruise-control", "cruisecontrol.properties"))
	if err != nil {
		t.Fatal(err)
	}
	wantCC := map[string]string{
		"security.protocol":       "SASL_SSL",
		"sasl.mechanism":          kafkasec.ScramSHA512,
		"ssl.truststore.type":     "PEM",
		"ssl.truststore.location": caFile,
	}
	for k, v := range wantCC {
		if props[k] != v {
			t.Errorf("cruisecontrol.properties: %s = %q, want %q", k, props[k], v)
		}
	}
	if v := props["sasl.jaas.config"]; v != "" {
		t.Errorf("cruisecontrol.properties holds sasl.jaas.config %q; the password comes from the secrets volume", v)
	}
}

func TestKafkaSecretsJob(t *testing.T) {
	s := load(t)
	job := service(t, s, "kafka-secrets")
	if composecheck.BuildArg(job, "SERVICE") != "chatctl" || len(job.Command) == 0 || job.Command[0] != "kafka-secrets" {
		t.Fatalf("kafka-secrets must run `chatctl kafka-secrets`, runs %v", job.Command)
	}
	mounted, ro := mountsSecrets(job)
	if !mounted || ro {
		t.Errorf("kafka-secrets must mount the volume writable at %s", cli.DefaultSecretsDir)
	}
	cmd := strings.Join(job.Command, " ")
	if !strings.Contains(cmd, "-dir "+cli.DefaultSecretsDir) {
		t.Errorf("kafka-secrets %q does not write to %s", cmd, cli.DefaultSecretsDir)
	}
	brokers, extra := kafkaNodes(s)
	for _, b := range append(slices.Clone(brokers), extra...) {
		if !strings.Contains(cmd, b) {
			t.Errorf("the broker certificate is not issued for %s (%q)", b, cmd)
		}
	}
	if !strings.Contains(cmd, "localhost") {
		t.Errorf("the broker certificate is not issued for localhost, the host listener's advertised name (%q)", cmd)
	}
	if job.User != "0:0" || !strings.Contains(cmd, "-broker-owner 1000:1000") {
		t.Errorf("kafka-secrets must run as root and hand the key to the broker image's 1000:1000 (user %q, %q)", job.User, cmd)
	}
	if job.Restart != "no" {
		t.Errorf("kafka-secrets restart %q, want no (one-shot)", job.Restart)
	}
}
