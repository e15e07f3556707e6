package composecheck_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"gopkg.in/yaml.v3"

	"github.com/kchat/kchat/pkg/kafkasec"
	"github.com/kchat/kchat/tools/chatctl/internal/composecheck"
)

const reporterClass = "com.linkedin.kafka.cruisecontrol.metricsreporter.CruiseControlMetricsReporter"

var (
	loadOnce  sync.Once
	loaded    *composecheck.Stack
	loadError error
)

// load parses docker-compose.yml once per test binary with the compose-spec
// loader; a file the loader rejects fails every test.
func load(t *testing.T) *composecheck.Stack {
	t.Helper()
	loadOnce.Do(func() {
		root, err := composecheck.RepoRoot(".")
		if err != nil {
			loadError = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		loaded, loadError = composecheck.Load(ctx, root)
	})
	if loadError != nil {
		t.Fatal(loadError)
	}
	return loaded
}

func service(t *testing.T, s *composecheck.Stack, name string) types.ServiceConfig {
	t.Helper()
	svc, ok := s.Service(name)
	if !ok {
		t.Fatalf("docker-compose.yml has no service %q", name)
	}
	return svc
}

func env(t *testing.T, s *composecheck.Stack, name string) map[string]string {
	t.Helper()
	return composecheck.Env(service(t, s, name))
}

// kafkaNodes returns the Kafka services (those with KAFKA_NODE_ID), split
// into the ones a plain `docker compose up` starts and those behind a profile.
func kafkaNodes(s *composecheck.Stack) (always, optional []string) {
	for name, svc := range s.All.Services {
		if _, ok := svc.Environment["KAFKA_NODE_ID"]; !ok {
			continue
		}
		if _, def := s.Default.Services[name]; def {
			always = append(always, name)
		} else {
			optional = append(optional, name)
		}
	}
	sort.Strings(always)
	sort.Strings(optional)
	return always, optional
}

func TestComposeSpecLoaderAcceptsTheFile(t *testing.T) {
	s := load(t)
	if s.All.Name != composecheck.ProjectName {
		t.Errorf("project name %q, want %q", s.All.Name, composecheck.ProjectName)
	}
	wantDefault := []string{"cruise-control", "fanout", "gateway-1", "gateway-2", "kafka-1", "kafka-2", "kafka-3",
		"kafka-secrets", "kafka-ui", "migrate", "notification", "persistence", "postgres", "topics-init"}
	got := s.Default.ServiceNames()
	sort.Strings(got)
	if !slices.Equal(got, wantDefault) {
		t.Errorf("`docker compose up` starts %v, want %v", got, wantDefault)
	}
	profiles := map[string]string{"kafka-4": "scale-out", "prometheus": "monitoring"}
	for name, profile := range profiles {
		svc := service(t, s, name)
		if !slices.Equal(svc.Profiles, []string{profile}) {
			t.Errorf("%s: profiles %v, want [%s]", name, svc.Profiles, profile)
		}
		if _, def := s.Default.Services[name]; def {
			t.Errorf("%s runs without --profile %s", name, profile)
		}
	}
}

func TestBrokersFormOneStaticQuorum(t *testing.T) {
	s := load(t)
	brokers, extra := kafkaNodes(s)
	if !slices.Equal(brokers, []string{"kafka-1", "kafka-2", "kafka-3"}) {
		t.Fatalf("default Kafka nodes = %v, want kafka-1..3", brokers)
	}
	first := env(t, s, brokers[0])
	voters, err := composecheck.ParseVoters(first["KAFKA_CONTROLLER_QUORUM_VOTERS"])
	if err != nil {
		t.Fatal(err)
	}
	voterByID := map[int]composecheck.Voter{}
	for _, v := range voters {
		if _, dup := voterByID[v.ID]; dup {
			t.Errorf("voter id %d listed twice", v.ID)
		}
		voterByID[v.ID] = v
	}
	ids := map[string]string{}
	for _, name := range append(slices.Clone(brokers), extra...) {
		e := env(t, s, name)
		id := e["KAFKA_NODE_ID"]
		if _, err := strconv.Atoi(id); err != nil {
			t.Errorf("%s: KAFKA_NODE_ID %q is not a number", name, id)
		}
		if other, dup := ids[id]; dup {
			t.Errorf("%s and %s share node id %s", name, other, id)
		}
		ids[id] = name
		// One identical voter list and cluster id on every node, optional
		// ones included: a node with another list forms or joins another quorum.
		for _, key := range []string{"KAFKA_CONTROLLER_QUORUM_VOTERS", "CLUSTER_ID", "KAFKA_CONTROLLER_LISTENER_NAMES"} {
			if e[key] != first[key] {
				t.Errorf("%s: %s = %q, %s has %q", name, key, e[key], brokers[0], first[key])
			}
		}
	}
	if first["CLUSTER_ID"] == "" {
		t.Error("CLUSTER_ID is empty")
	}
	if len(voters) != len(brokers) {
		t.Errorf("voters %v, want one per default broker %v", voters, brokers)
	}
	for _, name := range brokers {
		e := env(t, s, name)
		if got := e["KAFKA_PROCESS_ROLES"]; got != "broker,controller" {
			t.Errorf("%s: process roles %q, want broker,controller (combined mode)", name, got)
		}
		id, _ := strconv.Atoi(e["KAFKA_NODE_ID"])
		v, ok := voterByID[id]
		if !ok || v.Host != name {
			t.Errorf("%s (node %d) is not the voter %d@%s", name, id, id, name)
			continue
		}
		listeners, err := composecheck.ParseListeners(e["KAFKA_LISTENERS"])
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		controller := listenerNamed(listeners, e["KAFKA_CONTROLLER_LISTENER_NAMES"])
		if controller == nil || controller.Port != v.Port {
			t.Errorf("%s: voter port %d has no %s listener in %q", name, v.Port, e["KAFKA_CONTROLLER_LISTENER_NAMES"], e["KAFKA_LISTENERS"])
		}
	}
	// Optional nodes join as brokers only: adding or removing them must not
	// change the quorum.
	for _, name := range extra {
		e := env(t, s, name)
		id, _ := strconv.Atoi(e["KAFKA_NODE_ID"])
		if e["KAFKA_PROCESS_ROLES"] != "broker" {
			t.Errorf("%s: optional node must be broker-only, got %q", name, e["KAFKA_PROCESS_ROLES"])
		}
		if _, isVoter := voterByID[id]; isVoter {
			t.Errorf("%s: optional node %d must not be a voter", name, id)
		}
	}
}

func listenerNamed(ls []composecheck.Listener, name string) *composecheck.Listener {
	for i := range ls {
		if ls[i].Name == name {
			return &ls[i]
		}
	}
	return nil
}

// internalAddr is the address containers use for a broker: its advertised
// listener named by KAFKA_INTER_BROKER_LISTENER_NAME.
func internalAddr(t *testing.T, s *composecheck.Stack, name string) string {
	t.Helper()
	e := env(t, s, name)
	adv, err := composecheck.ParseListeners(e["KAFKA_ADVERTISED_LISTENERS"])
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	l := listenerNamed(adv, e["KAFKA_INTER_BROKER_LISTENER_NAME"])
	if l == nil {
		t.Fatalf("%s: no advertised %s listener in %q", name, e["KAFKA_INTER_BROKER_LISTENER_NAME"], e["KAFKA_ADVERTISED_LISTENERS"])
	}
	return l.Addr()
}

// A client that bootstraps from any broker is then sent to the advertised
// listeners, so those must resolve and be reachable where the client runs.
func TestAdvertisedListenersAreReachable(t *testing.T) {
	s := load(t)
	brokers, extra := kafkaNodes(s)
	for _, name := range append(slices.Clone(brokers), extra...) {
		t.Run(name, func(t *testing.T) {
			svc := service(t, s, name)
			e := composecheck.Env(svc)
			listeners, err := composecheck.ParseListeners(e["KAFKA_LISTENERS"])
			if err != nil {
				t.Fatal(err)
			}
			advertised, err := composecheck.ParseListeners(e["KAFKA_ADVERTISED_LISTENERS"])
			if err != nil {
				t.Fatal(err)
			}
			protocols, err := composecheck.ParseProtocolMap(e["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"])
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range listeners {
				if _, ok := protocols[l.Name]; !ok {
					t.Errorf("listener %s has no entry in the protocol map %q", l.Name, e["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"])
				}
			}
			inter := e["KAFKA_INTER_BROKER_LISTENER_NAME"]
			if listenerNamed(advertised, inter) == nil {
				t.Errorf("the inter-broker listener %s is not advertised", inter)
			}
			for _, a := range advertised {
				l := listenerNamed(listeners, a.Name)
				if l == nil {
					t.Errorf("advertised %s has no listener", a.Name)
					continue
				}
				if a.Port != l.Port {
					t.Errorf("%s advertised on port %d but listens on %d", a.Name, a.Port, l.Port)
				}
				if a.Name == e["KAFKA_CONTROLLER_LISTENER_NAMES"] {
					t.Errorf("the controller listener must not be advertised to clients")
				}
				switch a.Host {
				case name:
					// Compose's DNS resolves service names on the project
					// network; the hostname only matters to the node itself.
					if svc.Hostname != "" && svc.Hostname != name {
						t.Errorf("hostname %q differs from the advertised service name %q", svc.Hostname, name)
					}
				case "localhost", "127.0.0.1":
					// For clients on the host: the container port must be
					// published on the same host port, or the address the
					// broker hands out leads nowhere.
					if !publishes(svc, a.Port, a.Port) {
						t.Errorf("%s advertises %s but does not publish %d:%d", name, a.Addr(), a.Port, a.Port)
					}
				default:
					if _, ok := s.All.Services[a.Host]; !ok {
						t.Errorf("advertised host %q (%s) is neither a compose service nor localhost", a.Host, a.Name)
					}
				}
			}
			if svc.NetworkMode != "" {
				t.Errorf("network_mode %q takes the broker off the project network", svc.NetworkMode)
			}
		})
	}
	// Every container reaches every broker on the same network (the project
	// default network, as nothing declares another).
	for name, svc := range s.All.Services {
		if svc.NetworkMode != "" {
			t.Errorf("%s: network_mode %q", name, svc.NetworkMode)
		}
		for n := range svc.Networks {
			if n != "default" {
				t.Errorf("%s joins network %q; the brokers are only on default", name, n)
			}
		}
	}
}

func publishes(svc types.ServiceConfig, host, container int) bool {
	for _, p := range svc.Ports {
		if p.Published == strconv.Itoa(host) && int(p.Target) == container {
			return true
		}
	}
	return false
}

// Every bootstrap list a container uses names the internal address of every
// default broker, so no client depends on one broker being up.
func TestClientsBootstrapFromEveryBroker(t *testing.T) {
	s := load(t)
	brokers, _ := kafkaNodes(s)
	var want []string
	for _, b := range brokers {
		want = append(want, internalAddr(t, s, b))
	}
	props, err := composecheck.ReadProperties(filepath.Join(s.Root, "cruise-control", "cruisecontrol.properties"))
	if err != nil {
		t.Fatal(err)
	}
	lists := map[string]string{
		"kafka-ui KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS": env(t, s, "kafka-ui")["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"],
		"cruisecontrol.properties bootstrap.servers": props["bootstrap.servers"],
		"kafka-1 metrics reporter bootstrap.servers": env(t, s, "kafka-1")["KAFKA_CRUISE_CONTROL_METRICS_REPORTER_BOOTSTRAP_SERVERS"],
		"topics-init KAFKA_BROKERS":                  env(t, s, "topics-init")["KAFKA_BROKERS"],
		"gateway-1 KAFKA_BROKERS":                    env(t, s, "gateway-1")["KAFKA_BROKERS"],
		"gateway-2 KAFKA_BROKERS":                    env(t, s, "gateway-2")["KAFKA_BROKERS"],
		"persistence KAFKA_BROKERS":                  env(t, s, "persistence")["KAFKA_BROKERS"],
		"fanout KAFKA_BROKERS":                       env(t, s, "fanout")["KAFKA_BROKERS"],
		"notification KAFKA_BROKERS":                 env(t, s, "notification")["KAFKA_BROKERS"],
		"kafka-4 metrics reporter bootstrap.servers": env(t, s, "kafka-4")["KAFKA_CRUISE_CONTROL_METRICS_REPORTER_BOOTSTRAP_SERVERS"],
	}
	for what, list := range lists {
		got := strings.Split(list, ",")
		for i := range got {
			got[i] = strings.TrimSpace(got[i])
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s = %q, want exactly the brokers' internal listeners %v", what, list, want)
		}
	}
	if got := props["capacity.config.file"]; got != "/opt/cruise-control/config/capacity.json" {
		t.Errorf("capacity.config.file = %q", got)
	}
	if props["webserver.http.port"] != "9090" {
		t.Errorf("webserver.http.port = %q, want 9090", props["webserver.http.port"])
	}
}

// programEnv is what each kchat binary reads from its environment, kept by
// hand from services/<name>/main.go (service.Env, service.EnvInt,
// service.EnvDuration and os.Getenv calls) and, for chatctl, from
// tools/chatctl/internal/cli. Change it together with main.go: compose setting a name the
// program never reads is a silent no-op, and a typo in compose looks exactly
// like that. Every service also reads the OTEL_* variables pkg/tracing reads (otelEnv).
var programEnv = map[string][]string{
	"gateway": append([]string{"HTTP_ADDR", "GATEWAY_ID", "KAFKA_BROKERS", "DATABASE_URL", "TOPIC_PREFIX", "ALLOWED_ORIGINS",
		"MAX_TEXT_BYTES", "READ_LIMIT", "SEND_QUEUE", "IDLE_TIMEOUT", "PING_INTERVAL", "WRITE_TIMEOUT",
		"SESSION_TTL", "RECONNECT_TTL", "CATCHUP_TIMEOUT", "LOG_LEVEL",
		// The attachments' store (services/gateway/internal/attach/flags.go).
		"ATTACHMENT_STORE", "ATTACHMENT_DIR", "ATTACHMENT_S3_ENDPOINT", "ATTACHMENT_S3_BUCKET", "ATTACHMENT_S3_REGION",
		"ATTACHMENT_S3_ACCESS_KEY", "ATTACHMENT_S3_SECRET_KEY", "ATTACHMENT_S3_PATH_STYLE", "ATTACHMENT_S3_CREATE_BUCKET",
		"ATTACHMENT_MAX_BYTES", "ATTACHMENT_TYPES", "ATTACHMENT_ORPHAN_GRACE", "ATTACHMENT_DELETED_GRACE", "ATTACHMENT_SWEEP_INTERVAL"}, slices.Concat(otelEnv, kafkaSecEnv)...),
	"persistence":  append([]string{"KAFKA_BROKERS", "DATABASE_URL", "HTTP_ADDR", "TOPIC_PREFIX", "CONSUMER_GROUP", "BATCH_SIZE", "LOG_LEVEL"}, slices.Concat(otelEnv, kafkaSecEnv)...),
	"notification": append([]string{"KAFKA_BROKERS", "DATABASE_URL", "HTTP_ADDR", "TOPIC_PREFIX", "CONSUMER_GROUP", "START_OFFSET", "PRESENCE_EXPIRY", "BATCH_SIZE", "LOG_LEVEL"}, slices.Concat(otelEnv, kafkaSecEnv)...),
	"fanout":       append([]string{"KAFKA_BROKERS", "HTTP_ADDR", "TOPIC_PREFIX", "FANOUT_GROUP", "START_OFFSET", "LOG_LEVEL"}, slices.Concat(otelEnv, kafkaSecEnv)...),
	"chatctl":      append([]string{"KAFKA_BROKERS", "CRUISE_CONTROL_URL", "TOPICS_FILE", "DATABASE_URL", "TOPIC_PREFIX", "LOG_LEVEL"}, kafkaSecEnv...),
}

// kafkaSecEnv is what every Kafka client program reads through pkg/kafkasec (FromEnv,
// RegisterFlags): TLS and SASL settings.
var kafkaSecEnv = []string{kafkasec.EnvTLS, kafkasec.EnvTLSCAFile, kafkasec.EnvTLSCertFile, kafkasec.EnvTLSKeyFile,
	kafkasec.EnvTLSServerName, kafkasec.EnvSASLMechanism, kafkasec.EnvSASLUsername, kafkasec.EnvSASLPassword,
	kafkasec.EnvSASLPasswordFile}

// otelEnv is the tracing configuration every service reads through pkg/tracing (and the
// OpenTelemetry SDK): the standard OTEL_* names.
var otelEnv = []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL",
	"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER",
	"OTEL_TRACES_SAMPLER_ARG", "OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED", "OTEL_BSP_SCHEDULE_DELAY"}

// programRequired is what compose must set for a program to work in the
// stack: the built-in defaults point at the non-Docker local stack
// (127.0.0.1:9092, Postgres on 5433), and HTTP_ADDR must match the published
// port, the healthcheck and Prometheus' target.
var programRequired = map[string][]string{
	"gateway":      {"KAFKA_BROKERS", "DATABASE_URL", "HTTP_ADDR", "GATEWAY_ID"},
	"persistence":  {"KAFKA_BROKERS", "DATABASE_URL", "HTTP_ADDR"},
	"notification": {"KAFKA_BROKERS", "DATABASE_URL", "HTTP_ADDR"},
	"fanout":       {"KAFKA_BROKERS", "HTTP_ADDR"},
}

// chatctlRequired is per chatctl command (the compose service's command[0]).
var chatctlRequired = map[string][]string{
	"topics":        {"KAFKA_BROKERS"},
	"migrate":       {"DATABASE_URL"},
	"kafka-secrets": {},
}

// thirdPartyEnv is what the other images read, from their documentation:
// apache/kafka (CLUSTER_ID plus KAFKA_* mapped to server.properties, checked
// in TestBrokerConfigAgreesWithLocalStack), kafbat/kafka-ui (Spring relaxed
// binding of kafka.clusters[0].*), postgres, and Cruise Control's entrypoint
// (cruise-control/Dockerfile expands JAVA_OPTS).
var thirdPartyEnv = map[string][]string{
	"kafka-ui": {"KAFKA_CLUSTERS_0_NAME", "KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS", "DYNAMIC_CONFIG_ENABLED",
		"KAFKA_CLUSTERS_0_SERDE_0_NAME", "KAFKA_CLUSTERS_0_SERDE_0_TOPICKEYSPATTERN", "KAFKA_CLUSTERS_0_SERDE_0_TOPICVALUESPATTERN",
		"KAFKA_CLUSTERS_0_DEFAULTKEYSERDE", "KAFKA_CLUSTERS_0_DEFAULTVALUESERDE",
		// kafka.clusters[0].properties.* are handed to Kafka's clients as they are; Spring
		// Boot's spring.config.import adds the config tree holding the JAAS line.
		"KAFKA_CLUSTERS_0_PROPERTIES_SECURITY_PROTOCOL", "KAFKA_CLUSTERS_0_PROPERTIES_SASL_MECHANISM",
		"KAFKA_CLUSTERS_0_PROPERTIES_SSL_TRUSTSTORE_TYPE", "KAFKA_CLUSTERS_0_PROPERTIES_SSL_TRUSTSTORE_LOCATION",
		"SPRING_CONFIG_IMPORT"},
	"postgres": {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"},
	// cruise-control/Dockerfile's entrypoint: JAVA_OPTS, and the client properties file
	// it appends to cruisecontrol.properties.
	"cruise-control": {"JAVA_OPTS", "CRUISE_CONTROL_CLIENT_PROPERTIES"},
	"prometheus":     {},
	"jaeger":         {}, // all-in-one's defaults: OTLP on 4317/4318, memory storage
	// Grafana's GF_<SECTION>_<KEY> overrides of grafana.ini ([auth.anonymous], [users],
	// [dashboards], [analytics]).
	"grafana": {"GF_AUTH_ANONYMOUS_ENABLED", "GF_AUTH_ANONYMOUS_ORG_ROLE", "GF_USERS_ALLOW_SIGN_UP",
		"GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH", "GF_ANALYTICS_REPORTING_ENABLED", "GF_ANALYTICS_CHECK_FOR_UPDATES"},
}

func TestServiceEnvMatchesWhatProgramsRead(t *testing.T) {
	s := load(t)
	brokers, extra := kafkaNodes(s)
	checked := map[string]bool{}
	for _, b := range append(slices.Clone(brokers), extra...) {
		checked[b] = true // TestBrokerConfigAgreesWithLocalStack
	}
	for name, svc := range s.All.Services {
		e := composecheck.Env(svc)
		if known, ok := thirdPartyEnv[name]; ok {
			checked[name] = true
			for k := range e {
				if !slices.Contains(known, k) {
					t.Errorf("%s: %s is not read by its image (known: %v)", name, k, known)
				}
			}
			continue
		}
		program := composecheck.BuildArg(svc, "SERVICE")
		if program == "" {
			continue
		}
		checked[name] = true
		known, ok := programEnv[program]
		if !ok {
			t.Errorf("%s builds %s, which has no entry in programEnv", name, program)
			continue
		}
		for k := range e {
			if !slices.Contains(known, k) {
				t.Errorf("%s: %s sets %s, which %s never reads (it reads %v)", name, program, k, program, known)
			}
		}
		required := programRequired[program]
		if program == "chatctl" {
			if len(svc.Command) == 0 {
				t.Errorf("%s: chatctl without a command", name)
				continue
			}
			required = chatctlRequired[svc.Command[0]]
		}
		for _, k := range required {
			if e[k] == "" {
				t.Errorf("%s: %s needs %s in compose (its default points at the non-Docker stack)", name, program, k)
			}
		}
		if addr := e["HTTP_ADDR"]; addr != "" {
			_, portStr, _ := strings.Cut(addr, ":")
			port, _ := strconv.Atoi(portStr)
			if !publishes(svc, port, port) {
				t.Errorf("%s: HTTP_ADDR %s is not published as %d:%d", name, addr, port, port)
			}
		}
	}
	for name := range s.All.Services {
		if !checked[name] {
			t.Errorf("%s: no env check covers this service; add it to programEnv or thirdPartyEnv", name)
		}
	}
	// The table's own sanity: required names are known ones.
	for program, req := range programRequired {
		for _, k := range req {
			if !slices.Contains(programEnv[program], k) {
				t.Errorf("programRequired[%s] has %s, which is not in programEnv", program, k)
			}
		}
	}
}

func TestBrokerPropertyNames(t *testing.T) {
	tests := []struct {
		env, key string
		ok       bool
	}{
		{"KAFKA_MIN_INSYNC_REPLICAS", "min.insync.replicas", true},
		{"KAFKA_ABC___DEF", "abc-def", true},
		{"KAFKA_ABC__DEF", "abc_def", true},
		{"KAFKA_CRUISE_CONTROL_METRICS_TOPIC", "cruise.control.metrics.topic", true},
		{"KAFKA_HEAP_OPTS", "", false},
		{"CLUSTER_ID", "", false},
		{"KAFKA_", "", false},
	}
	for _, tt := range tests {
		key, ok := composecheck.BrokerProperty(tt.env)
		if key != tt.key || ok != tt.ok {
			t.Errorf("BrokerProperty(%q) = %q, %v; want %q, %v", tt.env, key, ok, tt.key, tt.ok)
		}
	}
}

// The broker settings of the two ways to run Kafka (compose, and the local
// stack the tests use) must not drift: a durability setting that only the
// tested stack has is a guarantee the compose stack silently lacks.
func TestBrokerConfigAgreesWithLocalStack(t *testing.T) {
	s := load(t)
	local, err := composecheck.LocalStackProperties(s.Root)
	if err != nil {
		t.Fatal(err)
	}
	// The secured local stack's settings (make dev) replace its PLAINTEXT
	// listener lines; compose is always secured, so it is compared with those.
	secure, err := composecheck.LocalStackSecureProperties(s.Root)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range secure {
		local[k] = v
	}
	// Must be present in both with the same value.
	durability := []string{
		"default.replication.factor", "min.insync.replicas", "auto.create.topics.enable",
		"offsets.topic.replication.factor", "transaction.state.log.replication.factor",
		"transaction.state.log.min.isr", "num.partitions",
		// Security: the same authorizer, the same mechanism, the same super users.
		"sasl.enabled.mechanisms", "sasl.mechanism.inter.broker.protocol", "ssl.keystore.type",
		"ssl.truststore.type", "ssl.client.auth", "authorizer.class.name", "allow.everyone.if.no.acl.found",
		"super.users",
	}
	// Per node by nature (ids, addresses, paths).
	perNode := map[string]bool{
		"node.id": true, "process.roles": true, "listeners": true, "advertised.listeners": true,
		"controller.quorum.voters": true, "listener.security.protocol.map": true, "log.dirs": true,
		// Listener names (compose's INTERNAL and HOST, the local stack's SASL_SSL) and file
		// paths; TestKafkaSecurityBrokers checks what they mean.
		"inter.broker.listener.name": true, "ssl.keystore.location": true, "ssl.truststore.location": true,
	}
	// Per listener: listener.name.<listener>.scram-sha-512.sasl.jaas.config.
	listenerJAAS := func(key string) bool {
		return strings.HasPrefix(key, "listener.name.") && strings.HasSuffix(key, ".sasl.jaas.config")
	}
	// Set in both on purpose with different values.
	differ := map[string]string{
		"offsets.topic.num.partitions": "the local stack uses 6 so tests start fast; compose keeps Kafka's usual spread",
		"num.io.threads":               "the local stack shares two cores among three JVMs",
	}
	// Only in the local stack: test-harness speed-ups, irrelevant to durability.
	localOnly := map[string]string{
		"transaction.state.log.num.partitions": "fast start in tests",
		"log.cleaner.dedupe.buffer.size":       "small heap in tests",
		"num.recovery.threads.per.data.dir":    "fast start in tests",
		"log.segment.bytes":                    "small segments in tests",
		"delete.topic.enable":                  "Kafka's default anyway",
	}
	// Only in compose: Cruise Control's metrics reporter (the local stack has
	// no Cruise Control).
	composeOnly := func(key string) bool {
		return key == "metric.reporters" || strings.HasPrefix(key, "cruise.control.metrics.")
	}

	brokers, extra := kafkaNodes(s)
	for _, name := range append(slices.Clone(brokers), extra...) {
		t.Run(name, func(t *testing.T) {
			e := env(t, s, name)
			for k := range e {
				_, isProp := composecheck.BrokerProperty(k)
				if !isProp && k != "CLUSTER_ID" && !composecheck.ImageWrapperEnv[k] {
					t.Errorf("%s is neither a broker property nor read by the apache/kafka image", k)
				}
			}
			props := composecheck.BrokerProperties(e)
			for _, k := range durability {
				if props[k] == "" || props[k] != local[k] {
					t.Errorf("%s: compose %q, local stack %q; they must agree", k, props[k], local[k])
				}
			}
			for k, v := range props {
				_, known := local[k]
				switch {
				case perNode[k], composeOnly(k), listenerJAAS(k), slices.Contains(durability, k):
				case !known:
					t.Errorf("compose sets %s=%s, which the local stack does not; add it to pkg/localstack/kafka.go or explain it here", k, v)
				case differ[k] == "" && v != local[k]:
					t.Errorf("%s: compose %q, local stack %q", k, v, local[k])
				}
			}
			for k := range local {
				if _, ok := props[k]; !ok && localOnly[k] == "" && !listenerJAAS(k) {
					t.Errorf("the local stack sets %s=%s, compose does not", k, local[k])
				}
			}
			if props["metric.reporters"] != reporterClass {
				t.Errorf("metric.reporters = %q, want %s", props["metric.reporters"], reporterClass)
			}
			if rf, _ := strconv.Atoi(props["cruise.control.metrics.topic.replication.factor"]); rf < 1 || rf > len(brokers) {
				t.Errorf("metrics topic RF %d cannot be placed on %d brokers", rf, len(brokers))
			}
		})
	}
	for k := range differ {
		if _, ok := local[k]; !ok {
			t.Errorf("differ lists %s, which the local stack no longer sets", k)
		}
	}
}

func TestDependenciesExist(t *testing.T) {
	s := load(t)
	valid := []string{"service_started", "service_healthy", "service_completed_successfully"}
	for name, svc := range s.All.Services {
		for dep, d := range svc.DependsOn {
			target, ok := s.All.Services[dep]
			if !ok {
				t.Errorf("%s depends on unknown service %q", name, dep)
				continue
			}
			if !slices.Contains(valid, d.Condition) {
				t.Errorf("%s -> %s: unknown condition %q", name, dep, d.Condition)
			}
			if d.Condition == "service_healthy" && (target.HealthCheck == nil || len(target.HealthCheck.Test) == 0) {
				t.Errorf("%s waits for %s to be healthy, but %s has no healthcheck", name, dep, dep)
			}
		}
		if svc.Build != nil {
			for ctxName, ref := range svc.Build.AdditionalContexts {
				if dep, ok := strings.CutPrefix(ref, "service:"); ok {
					if _, exists := s.All.Services[dep]; !exists {
						t.Errorf("%s: build context %s refers to unknown service %q", name, ctxName, dep)
					}
				}
			}
		}
	}
	// The start-up order the chat services rely on.
	order := []struct{ service, dep, cond string }{
		{"topics-init", "kafka-1", "service_healthy"},
		{"topics-init", "kafka-2", "service_healthy"},
		{"topics-init", "kafka-3", "service_healthy"},
		{"migrate", "postgres", "service_healthy"},
		{"gateway-1", "topics-init", "service_completed_successfully"},
		{"gateway-1", "migrate", "service_completed_successfully"},
		{"gateway-2", "topics-init", "service_completed_successfully"},
		{"persistence", "migrate", "service_completed_successfully"},
		{"fanout", "topics-init", "service_completed_successfully"},
		{"notification", "topics-init", "service_completed_successfully"},
		{"notification", "migrate", "service_completed_successfully"},
		{"cruise-control", "kafka-1", "service_healthy"},
		{"kafka-1", "kafka-secrets", "service_completed_successfully"},
		{"kafka-2", "kafka-secrets", "service_completed_successfully"},
		{"kafka-3", "kafka-secrets", "service_completed_successfully"},
		{"kafka-4", "kafka-secrets", "service_completed_successfully"},
		{"kafka-ui", "kafka-1", "service_healthy"},
	}
	for _, o := range order {
		if got := service(t, s, o.service).DependsOn[o.dep].Condition; got != o.cond {
			t.Errorf("%s -> %s: condition %q, want %q", o.service, o.dep, got, o.cond)
		}
	}
}

func TestPublishedPorts(t *testing.T) {
	s := load(t)
	want := []struct {
		service string
		port    int
	}{
		{"kafka-ui", 8080},
		{"cruise-control", 9090},
		{"kafka-1", 9092},
		{"kafka-2", 9093},
		{"kafka-3", 9094},
		{"kafka-4", 9095},
		{"gateway-1", 8081},
		{"gateway-2", 8082},
		{"postgres", 5432},
		{"prometheus", 9091},
	}
	for _, w := range want {
		ports, err := composecheck.HostPorts(service(t, s, w.service))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(ports, w.port) {
			t.Errorf("%s publishes %v, want %d", w.service, ports, w.port)
		}
	}
	owner := map[int]string{}
	for name, svc := range s.All.Services {
		ports, err := composecheck.HostPorts(svc)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, p := range svc.Ports {
			if p.HostIP != "127.0.0.1" {
				t.Errorf("%s publishes %s on %q; bind to 127.0.0.1, a laptop stack has no passwords", name, p.Published, p.HostIP)
			}
		}
		for _, p := range ports {
			if other, taken := owner[p]; taken {
				t.Errorf("host port %d published by both %s and %s", p, name, other)
			}
			owner[p] = name
		}
	}
}

func TestBuildFilesAndMountsExist(t *testing.T) {
	s := load(t)
	builds := 0
	for name, svc := range s.All.Services {
		for _, v := range svc.Volumes {
			// A missing bind source is silently created as an empty
			// directory by Docker, and the service then reads nothing.
			if v.Type == types.VolumeTypeBind {
				if _, err := os.Stat(v.Source); err != nil {
					t.Errorf("%s: bind mount source %s does not exist", name, v.Source)
				}
			}
			if v.Type == types.VolumeTypeVolume {
				if _, ok := s.All.Volumes[v.Source]; !ok {
					t.Errorf("%s: named volume %q is not declared", name, v.Source)
				}
			}
		}
		if svc.Build == nil {
			continue
		}
		builds++
		ctxDir := svc.Build.Context
		if !filepath.IsAbs(ctxDir) {
			ctxDir = filepath.Join(s.Root, ctxDir)
		}
		if st, err := os.Stat(ctxDir); err != nil || !st.IsDir() {
			t.Errorf("%s: build context %s is not a directory", name, svc.Build.Context)
			continue
		}
		dockerfile := svc.Build.Dockerfile
		if !filepath.IsAbs(dockerfile) {
			dockerfile = filepath.Join(ctxDir, dockerfile)
		}
		if _, err := os.Stat(dockerfile); err != nil {
			t.Errorf("%s: Dockerfile %s missing", name, dockerfile)
		}
		if program := composecheck.BuildArg(svc, "SERVICE"); program != "" {
			// service.Dockerfile builds services/<SERVICE>, else tools/<SERVICE> (chatctl).
			_, errService := os.Stat(filepath.Join(s.Root, "services", program, "main.go"))
			_, errTool := os.Stat(filepath.Join(s.Root, "tools", program, "main.go"))
			if errService != nil && errTool != nil {
				t.Errorf("%s builds SERVICE=%s, which has no services/%s/main.go nor tools/%s/main.go", name, program, program, program)
			}
		}
	}
	if builds == 0 {
		t.Fatal("no service builds an image; the stack cannot contain kchat")
	}
}

func TestImagesArePinned(t *testing.T) {
	s := load(t)
	for name, svc := range s.All.Services {
		image, tag, _ := composecheck.ImageTag(svc.Image)
		switch {
		case image == "":
			t.Errorf("%s: no image", name)
		case tag == "" || tag == "latest":
			t.Errorf("%s: image %q is not pinned to a tag", name, svc.Image)
		case svc.Build == nil && !strings.ContainsAny(tag, "0123456789"):
			t.Errorf("%s: pulled image %q has no version in its tag", name, svc.Image)
		}
		if svc.Build == nil {
			continue
		}
		args := map[string]string{}
		for k, v := range svc.Build.Args {
			if v != nil {
				args[k] = *v
			}
		}
		ctxDir := svc.Build.Context
		if !filepath.IsAbs(ctxDir) {
			ctxDir = filepath.Join(s.Root, ctxDir)
		}
		dockerfile := svc.Build.Dockerfile
		if !filepath.IsAbs(dockerfile) {
			dockerfile = filepath.Join(ctxDir, dockerfile)
		}
		bases, err := composecheck.DockerfileBaseImages(dockerfile, args, svc.Build.AdditionalContexts)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		for _, b := range bases {
			if b.Stage {
				continue
			}
			if _, tag, _ := composecheck.ImageTag(b.Ref); tag == "" || tag == "latest" || strings.Contains(b.Ref, "$") {
				t.Errorf("%s: %s builds FROM %q, which is not pinned", name, filepath.Base(dockerfile), b.Ref)
			}
		}
	}
}

func TestVersionPredicates(t *testing.T) {
	cc := []struct {
		version string
		ok      bool
	}{
		{"2.5.145", true},
		{"2.5.146", true},
		{"2.5.200", true},
		{"2.5.144", false},
		{"2.4.9", false},
		{"3.0.3", false},
		{"main", false},
	}
	for _, c := range cc {
		if got := cruiseControlForKafka4(c.version); got != c.ok {
			t.Errorf("cruiseControlForKafka4(%q) = %v, want %v", c.version, got, c.ok)
		}
	}
	ui := []struct {
		tag string
		ok  bool
	}{
		{"v1.5.0", true},
		{"v1.10.0", true},
		{"v2.0.1", true},
		{"v1.4.9", false},
		{"latest", false},
		{"", false},
	}
	for _, c := range ui {
		if got := kafkaUIAtLeast150(c.tag); got != c.ok {
			t.Errorf("kafkaUIAtLeast150(%q) = %v, want %v", c.tag, got, c.ok)
		}
	}
	images := []struct{ in, name, tag, digest string }{
		{"postgres:16.4", "postgres", "16.4", ""},
		{"ghcr.io/kafbat/kafka-ui:v1.5.0", "ghcr.io/kafbat/kafka-ui", "v1.5.0", ""},
		{"localhost:5000/x", "localhost:5000/x", "", ""},
		{"apache/kafka:4.0.2@sha256:ab", "apache/kafka", "4.0.2", "sha256:ab"},
	}
	for _, c := range images {
		name, tag, digest := composecheck.ImageTag(c.in)
		if name != c.name || tag != c.tag || digest != c.digest {
			t.Errorf("ImageTag(%q) = %q %q %q", c.in, name, tag, digest)
		}
	}
}

// cruiseControlForKafka4: 2.5.145+ supports Kafka 4; the 3.x tags are a
// Kafka 3.5 branch despite the bigger number.
func cruiseControlForKafka4(v string) bool {
	parsed, err := composecheck.ParseVersion(v)
	return err == nil && parsed[0] == 2 && parsed.AtLeast(composecheck.Version{2, 5, 145})
}

func kafkaUIAtLeast150(tag string) bool {
	parsed, err := composecheck.ParseVersion(tag)
	return err == nil && parsed.AtLeast(composecheck.Version{1, 5, 0})
}

func TestCruiseControlVersion(t *testing.T) {
	s := load(t)
	cc := service(t, s, "cruise-control")
	if cc.Build == nil {
		t.Fatal("cruise-control must be built from source (no official image exists)")
	}
	version := composecheck.BuildArg(cc, "CRUISE_CONTROL_VERSION")
	if !cruiseControlForKafka4(version) {
		t.Fatalf("Cruise Control %q: want 2.5.145 or later on the 2.5 line", version)
	}
	def, err := composecheck.DockerfileArgDefault(filepath.Join(cc.Build.Context, cc.Build.Dockerfile), "CRUISE_CONTROL_VERSION")
	if err != nil {
		t.Fatal(err)
	}
	if def != version {
		t.Errorf("cruise-control/Dockerfile defaults to %s, compose builds %s", def, version)
	}
	brokers, extra := kafkaNodes(s)
	for _, name := range append(slices.Clone(brokers), extra...) {
		svc := service(t, s, name)
		if svc.Build == nil {
			t.Errorf("%s: brokers must be built (metrics reporter jar)", name)
			continue
		}
		if got := composecheck.BuildArg(svc, "CRUISE_CONTROL_VERSION"); got != version {
			t.Errorf("%s: metrics reporter %q differs from Cruise Control %q", name, got, version)
		}
		if got := svc.Build.AdditionalContexts["cruise-control"]; got != "service:cruise-control" {
			t.Errorf("%s: the reporter jar must come from the cruise-control service image, context is %q", name, got)
		}
		if got := composecheck.BuildArg(svc, "KAFKA_IMAGE"); got != "apache/kafka:4.0.2" {
			t.Errorf("%s: base image %q, want apache/kafka:4.0.2 (the local stack's Kafka version)", name, got)
		}
		def, err := composecheck.DockerfileArgDefault(filepath.Join(svc.Build.Context, svc.Build.Dockerfile), "KAFKA_IMAGE")
		if err != nil || def != "apache/kafka:4.0.2" {
			t.Errorf("%s: Dockerfile default KAFKA_IMAGE %q (%v)", name, def, err)
		}
	}
	props, err := composecheck.ReadProperties(filepath.Join(s.Root, "cruise-control", "cruisecontrol.properties"))
	if err != nil {
		t.Fatal(err)
	}
	if props["sample.store.topic.replication.factor"] != "3" {
		t.Errorf("sample.store.topic.replication.factor = %q, want 3", props["sample.store.topic.replication.factor"])
	}
	for _, goal := range []string{"ReplicaDistributionGoal", "LeaderReplicaDistributionGoal", "DiskUsageDistributionGoal"} {
		if !strings.Contains(props["default.goals"], goal) {
			t.Errorf("default.goals lacks %s", goal)
		}
	}
	for _, hard := range strings.Split(props["hard.goals"], ",") {
		if !strings.Contains(props["goals"], hard) {
			t.Errorf("hard goal %s is not in goals", hard)
		}
	}
}

func TestKafkaUI(t *testing.T) {
	s := load(t)
	ui := service(t, s, "kafka-ui")
	name, tag, _ := composecheck.ImageTag(ui.Image)
	if name != "ghcr.io/kafbat/kafka-ui" {
		t.Errorf("Kafka UI image %q, want ghcr.io/kafbat/kafka-ui", name)
	}
	if !kafkaUIAtLeast150(tag) {
		t.Errorf("Kafka UI tag %q, want v1.5.0 or later (Kafka 4 / KRaft support)", tag)
	}
	e := composecheck.Env(ui)
	if e["DYNAMIC_CONFIG_ENABLED"] != "true" {
		t.Error("Kafka UI: DYNAMIC_CONFIG_ENABLED must be true")
	}
	if e["KAFKA_CLUSTERS_0_DEFAULTVALUESERDE"] != "String" {
		t.Errorf("Kafka UI must show chat events (UTF-8 JSON) as text, default value serde is %q", e["KAFKA_CLUSTERS_0_DEFAULTVALUESERDE"])
	}
}

func TestChatServices(t *testing.T) {
	s := load(t)
	gatewayIDs := map[string]string{}
	for _, name := range []string{"gateway-1", "gateway-2", "persistence", "fanout", "notification"} {
		t.Run(name, func(t *testing.T) {
			svc := service(t, s, name)
			binary := composecheck.BuildArg(svc, "SERVICE")
			if binary == "" {
				t.Fatalf("%s: must build from deploy/docker/service.Dockerfile with a SERVICE arg", name)
			}
			if svc.HealthCheck == nil || !slices.Equal([]string(svc.HealthCheck.Test), []string{"CMD", "/app/" + binary, "-healthcheck"}) {
				t.Errorf("healthcheck %+v, want [CMD /app/%s -healthcheck]", svc.HealthCheck, binary)
			}
			if svc.Restart != "unless-stopped" {
				t.Errorf("restart %q, want unless-stopped", svc.Restart)
			}
			if binary == "gateway" {
				id := composecheck.Env(svc)["GATEWAY_ID"]
				if other, dup := gatewayIDs[id]; dup {
					t.Errorf("GATEWAY_ID %q also used by %s", id, other)
				}
				gatewayIDs[id] = name
			}
		})
	}
	if got := service(t, s, "postgres").Image; got != "postgres:16.4" {
		t.Errorf("postgres image %q, want the pinned postgres:16.4", got)
	}
}

func TestPrometheusScrapesEveryService(t *testing.T) {
	s := load(t)
	data, err := os.ReadFile(filepath.Join(s.Root, "deploy", "prometheus", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	targets := map[string]bool{}
	for _, sc := range cfg.ScrapeConfigs {
		if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
			t.Errorf("job %s scrapes %s, services serve /metrics", sc.JobName, sc.MetricsPath)
		}
		for _, st := range sc.StaticConfigs {
			for _, tg := range st.Targets {
				targets[tg] = true
			}
		}
	}
	for name, svc := range s.Default.Services {
		addr := composecheck.Env(svc)["HTTP_ADDR"]
		if addr == "" {
			continue
		}
		want := name + addr // HTTP_ADDR is ":port"
		if !targets[want] {
			t.Errorf("prometheus.yml does not scrape %s (%s)", name, want)
		}
	}
}
