package composecheck_test

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/kchat/kchat/services/chatctl/internal/composecheck"
)

const reporterClass = "com.linkedin.kafka.cruisecontrol.metricsreporter.CruiseControlMetricsReporter"

// stack is the parsed docker-compose.yml plus where it lives.
type stack struct {
	root string
	file *composecheck.File
}

func load(t *testing.T) stack {
	t.Helper()
	root, err := composecheck.RepoRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	f, err := composecheck.Load(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	return stack{root: root, file: f}
}

func (s stack) service(t *testing.T, name string) composecheck.Service {
	t.Helper()
	svc, ok := s.file.Services[name]
	if !ok {
		t.Fatalf("docker-compose.yml has no service %q", name)
	}
	return svc
}

// kafkaNodes returns Kafka services by name, split into the default ones and
// those behind a profile.
func (s stack) kafkaNodes() (always, optional []string) {
	for name, svc := range s.file.Services {
		if _, ok := svc.Environment["KAFKA_NODE_ID"]; !ok {
			continue
		}
		if len(svc.Profiles) == 0 {
			always = append(always, name)
		} else {
			optional = append(optional, name)
		}
	}
	sort.Strings(always)
	sort.Strings(optional)
	return always, optional
}

func TestBrokersFormOneStaticQuorum(t *testing.T) {
	s := load(t)
	brokers, extra := s.kafkaNodes()
	if len(brokers) != 3 {
		t.Fatalf("default Kafka nodes = %v, want 3", brokers)
	}
	first := s.service(t, brokers[0]).Environment
	voters, err := composecheck.ParseVoters(first["KAFKA_CONTROLLER_QUORUM_VOTERS"])
	if err != nil {
		t.Fatal(err)
	}
	voterHost := map[int]string{}
	for _, v := range voters {
		voterHost[v.ID] = v.Host
	}
	ids := map[string]string{}
	for _, name := range append(append([]string(nil), brokers...), extra...) {
		env := s.service(t, name).Environment
		id := env["KAFKA_NODE_ID"]
		if other, dup := ids[id]; dup {
			t.Errorf("%s and %s share node id %s", name, other, id)
		}
		ids[id] = name
		checks := []struct{ key, want string }{
			{"KAFKA_CONTROLLER_QUORUM_VOTERS", first["KAFKA_CONTROLLER_QUORUM_VOTERS"]},
			{"CLUSTER_ID", first["CLUSTER_ID"]},
			{"KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER"},
		}
		for _, c := range checks {
			if got := env[c.key]; got != c.want {
				t.Errorf("%s: %s = %q, want %q", name, c.key, got, c.want)
			}
		}
		if !strings.Contains(env["KAFKA_ADVERTISED_LISTENERS"], "PLAINTEXT://"+name+":19092") {
			t.Errorf("%s: advertised listeners %q lack the internal listener %s:19092", name, env["KAFKA_ADVERTISED_LISTENERS"], name)
		}
		if !strings.Contains(env["KAFKA_ADVERTISED_LISTENERS"], "://localhost:") {
			t.Errorf("%s: advertised listeners %q lack a localhost listener for the host", name, env["KAFKA_ADVERTISED_LISTENERS"])
		}
	}
	// The default brokers are exactly the voters, in combined mode.
	if len(voters) != len(brokers) {
		t.Errorf("voters %v, brokers %v", voters, brokers)
	}
	for _, name := range brokers {
		env := s.service(t, name).Environment
		if got := env["KAFKA_PROCESS_ROLES"]; got != "broker,controller" {
			t.Errorf("%s: process roles %q, want broker,controller", name, got)
		}
		id, _ := strconv.Atoi(env["KAFKA_NODE_ID"])
		if host, ok := voterHost[id]; !ok || host != name {
			t.Errorf("%s (node %d) is not the voter %d@%s", name, id, id, host)
		}
		if !strings.Contains(env["KAFKA_LISTENERS"], "CONTROLLER://") {
			t.Errorf("%s: a voter needs a CONTROLLER listener, got %q", name, env["KAFKA_LISTENERS"])
		}
	}
	// Optional nodes join as brokers only: adding or removing them must not
	// change the quorum.
	for _, name := range extra {
		env := s.service(t, name).Environment
		id, _ := strconv.Atoi(env["KAFKA_NODE_ID"])
		if env["KAFKA_PROCESS_ROLES"] != "broker" {
			t.Errorf("%s: optional node must be broker-only, got %q", name, env["KAFKA_PROCESS_ROLES"])
		}
		if _, isVoter := voterHost[id]; isVoter {
			t.Errorf("%s: optional node %d must not be a voter", name, id)
		}
	}
}

func TestBrokerDurabilitySettings(t *testing.T) {
	s := load(t)
	brokers, extra := s.kafkaNodes()
	want := []struct{ key, value string }{
		{"KAFKA_DEFAULT_REPLICATION_FACTOR", "3"},
		{"KAFKA_MIN_INSYNC_REPLICAS", "2"},
		{"KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false"},
		{"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "3"},
		{"KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "3"},
		{"KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "2"},
		{"KAFKA_METRIC_REPORTERS", reporterClass},
		{"KAFKA_CRUISE_CONTROL_METRICS_TOPIC_AUTO_CREATE", "true"},
		{"KAFKA_CRUISE_CONTROL_METRICS_REPORTER_BOOTSTRAP_SERVERS", "kafka-1:19092,kafka-2:19092,kafka-3:19092"},
	}
	for _, name := range append(brokers, extra...) {
		env := s.service(t, name).Environment
		for _, w := range want {
			if got := env[w.key]; got != w.value {
				t.Errorf("%s: %s = %q, want %q", name, w.key, got, w.value)
			}
		}
		if rf, _ := strconv.Atoi(env["KAFKA_CRUISE_CONTROL_METRICS_TOPIC_REPLICATION_FACTOR"]); rf < 1 || rf > len(brokers) {
			t.Errorf("%s: metrics topic RF %d cannot be placed on %d brokers", name, rf, len(brokers))
		}
	}
}

func TestDependenciesExist(t *testing.T) {
	s := load(t)
	valid := []string{"service_started", "service_healthy", "service_completed_successfully"}
	for name, svc := range s.file.Services {
		for dep, cond := range svc.DependsOn {
			target, ok := s.file.Services[dep]
			if !ok {
				t.Errorf("%s depends on unknown service %q", name, dep)
				continue
			}
			if !slices.Contains(valid, cond) {
				t.Errorf("%s -> %s: unknown condition %q", name, dep, cond)
			}
			if cond == "service_healthy" && target.Healthcheck == nil {
				t.Errorf("%s waits for %s to be healthy, but %s has no healthcheck", name, dep, dep)
			}
			if len(target.Profiles) > 0 && len(svc.Profiles) == 0 {
				t.Errorf("%s depends on %s, which only exists in profile %v", name, dep, target.Profiles)
			}
		}
		if svc.Build != nil {
			for ctxName, ref := range svc.Build.AdditionalContexts {
				if dep, ok := strings.CutPrefix(ref, "service:"); ok {
					if _, exists := s.file.Services[dep]; !exists {
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
		{"cruise-control", "kafka-1", "service_healthy"},
	}
	for _, o := range order {
		if got := s.service(t, o.service).DependsOn[o.dep]; got != o.cond {
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
		{"gateway-1", 8081},
		{"gateway-2", 8082},
	}
	for _, w := range want {
		ports, err := s.service(t, w.service).HostPorts()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(ports, w.port) {
			t.Errorf("%s publishes %v, want %d", w.service, ports, w.port)
		}
	}
	owner := map[int]string{}
	for name, svc := range s.file.Services {
		ports, err := svc.HostPorts()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, p := range ports {
			if other, taken := owner[p]; taken {
				t.Errorf("host port %d published by both %s and %s", p, name, other)
			}
			owner[p] = name
		}
	}
}

func TestReferencedDockerfilesExist(t *testing.T) {
	s := load(t)
	builds := 0
	for name, svc := range s.file.Services {
		if svc.Build == nil {
			continue
		}
		builds++
		ctxDir := filepath.Join(s.root, svc.Build.Context)
		if st, err := os.Stat(ctxDir); err != nil || !st.IsDir() {
			t.Errorf("%s: build context %s is not a directory", name, svc.Build.Context)
			continue
		}
		dockerfile := svc.Build.Dockerfile
		if dockerfile == "" {
			dockerfile = "Dockerfile"
		}
		if _, err := os.Stat(filepath.Join(ctxDir, dockerfile)); err != nil {
			t.Errorf("%s: Dockerfile %s missing in %s", name, dockerfile, svc.Build.Context)
		}
		if svc.Build.Args["SERVICE"] != "" {
			if _, err := os.Stat(filepath.Join(s.root, "services", svc.Build.Args["SERVICE"])); err != nil {
				t.Errorf("%s builds SERVICE=%s, which is not under services/", name, svc.Build.Args["SERVICE"])
			}
		}
	}
	if builds == 0 {
		t.Fatal("no service builds an image; the stack cannot contain kchat")
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
	cc := s.service(t, "cruise-control")
	if cc.Build == nil {
		t.Fatal("cruise-control must be built from source (no official image exists)")
	}
	version := cc.Build.Args["CRUISE_CONTROL_VERSION"]
	if !cruiseControlForKafka4(version) {
		t.Fatalf("Cruise Control %q: want 2.5.145 or later on the 2.5 line", version)
	}
	def, err := composecheck.DockerfileArgDefault(filepath.Join(s.root, cc.Build.Context, "Dockerfile"), "CRUISE_CONTROL_VERSION")
	if err != nil {
		t.Fatal(err)
	}
	if def != version {
		t.Errorf("cruise-control/Dockerfile defaults to %s, compose builds %s", def, version)
	}
	brokers, extra := s.kafkaNodes()
	for _, name := range append(brokers, extra...) {
		b := s.service(t, name).Build
		if b == nil {
			t.Errorf("%s: brokers must be built (metrics reporter jar)", name)
			continue
		}
		if got := b.Args["CRUISE_CONTROL_VERSION"]; got != version {
			t.Errorf("%s: metrics reporter %q differs from Cruise Control %q", name, got, version)
		}
		if got := b.AdditionalContexts["cruise-control"]; got != "service:cruise-control" {
			t.Errorf("%s: the reporter jar must come from the cruise-control service image, context is %q", name, got)
		}
		if got := b.Args["KAFKA_IMAGE"]; got != "apache/kafka:4.0.2" {
			t.Errorf("%s: base image %q, want apache/kafka:4.0.2", name, got)
		}
		def, err := composecheck.DockerfileArgDefault(filepath.Join(s.root, b.Context, b.Dockerfile), "KAFKA_IMAGE")
		if err != nil || def != "apache/kafka:4.0.2" {
			t.Errorf("%s: Dockerfile default KAFKA_IMAGE %q (%v)", name, def, err)
		}
	}
	props, err := os.ReadFile(filepath.Join(s.root, "cruise-control", "cruisecontrol.properties"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"webserver.http.port=9090", "sample.store.topic.replication.factor=3",
		"capacity.config.file=", "ReplicaDistributionGoal", "LeaderReplicaDistributionGoal", "DiskUsageDistributionGoal"} {
		if !strings.Contains(string(props), want) {
			t.Errorf("cruisecontrol.properties lacks %q", want)
		}
	}
}

func TestKafkaUI(t *testing.T) {
	s := load(t)
	ui := s.service(t, "kafka-ui")
	name, tag := composecheck.ImageTag(ui.Image)
	if name != "ghcr.io/kafbat/kafka-ui" {
		t.Errorf("Kafka UI image %q, want ghcr.io/kafbat/kafka-ui", name)
	}
	if !kafkaUIAtLeast150(tag) {
		t.Errorf("Kafka UI tag %q, want v1.5.0 or later (Kafka 4 / KRaft support)", tag)
	}
	bootstrap := strings.Split(ui.Environment["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"], ",")
	brokers, _ := s.kafkaNodes()
	for _, b := range brokers {
		if !slices.Contains(bootstrap, b+":19092") {
			t.Errorf("Kafka UI bootstrap %v lacks %s:19092", bootstrap, b)
		}
	}
	if ui.Environment["DYNAMIC_CONFIG_ENABLED"] != "true" {
		t.Error("Kafka UI: DYNAMIC_CONFIG_ENABLED must be true")
	}
}

func TestChatServices(t *testing.T) {
	s := load(t)
	gatewayIDs := map[string]string{}
	for _, name := range []string{"gateway-1", "gateway-2", "persistence", "fanout", "notification"} {
		t.Run(name, func(t *testing.T) {
			svc := s.service(t, name)
			if svc.Build == nil || svc.Build.Args["SERVICE"] == "" {
				t.Fatalf("%s: must build from deploy/docker/service.Dockerfile with a SERVICE arg", name)
			}
			binary := svc.Build.Args["SERVICE"]
			if svc.Healthcheck == nil || !slices.Equal(svc.Healthcheck.Test, []string{"CMD", "/app/" + binary, "-healthcheck"}) {
				t.Errorf("healthcheck %+v, want [CMD /app/%s -healthcheck]", svc.Healthcheck, binary)
			}
			if svc.Restart != "unless-stopped" {
				t.Errorf("restart %q, want unless-stopped", svc.Restart)
			}
			for _, key := range []string{"KAFKA_BROKERS", "DATABASE_URL", "HTTP_ADDR", "LOG_LEVEL"} {
				if svc.Environment[key] == "" {
					t.Errorf("environment lacks %s", key)
				}
			}
			if binary == "gateway" {
				id := svc.Environment["GATEWAY_ID"]
				if id == "" {
					t.Error("gateway without GATEWAY_ID")
				}
				if other, dup := gatewayIDs[id]; dup {
					t.Errorf("GATEWAY_ID %q also used by %s", id, other)
				}
				gatewayIDs[id] = name
			}
		})
	}
	if got := s.service(t, "postgres").Image; got != "postgres:16.4" {
		t.Errorf("postgres image %q, want the pinned postgres:16.4", got)
	}
}

func TestPrometheusScrapesEveryService(t *testing.T) {
	s := load(t)
	prom := s.service(t, "prometheus")
	if !slices.Contains(prom.Profiles, "monitoring") {
		t.Errorf("prometheus profiles %v, want monitoring", prom.Profiles)
	}
	data, err := os.ReadFile(filepath.Join(s.root, "deploy", "prometheus", "prometheus.yml"))
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
	for name, svc := range s.file.Services {
		addr := svc.Environment["HTTP_ADDR"]
		if addr == "" || len(svc.Profiles) > 0 {
			continue
		}
		want := name + addr // HTTP_ADDR is ":port"
		if !targets[want] {
			t.Errorf("prometheus.yml does not scrape %s (%s)", name, want)
		}
	}
}
