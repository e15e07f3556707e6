package k8scheck_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"

	"github.com/kchat/kchat/pkg/topics"
	"github.com/kchat/kchat/tools/chatctl/internal/composecheck"
	"github.com/kchat/kchat/tools/chatctl/internal/k8scheck"
)

// builds are the kustomizations `kubectl apply -k` is documented for.
var builds = []string{"base", "overlays/dev", "overlays/production"}

// programs maps each kchat image to the folder of its main package.
var programs = map[string]string{
	"gateway":      "services/gateway",
	"persistence":  "services/persistence",
	"fanout":       "services/fanout",
	"notification": "services/notification",
	"chatctl":      "tools/chatctl",
}

var (
	setupOnce sync.Once
	root      string
	built     map[string][]k8scheck.Object
	setupErr  error
)

// setup builds every kustomization once per test binary (each takes well under a second).
func setup(t *testing.T) (string, map[string][]k8scheck.Object) {
	t.Helper()
	setupOnce.Do(func() {
		if root, setupErr = composecheck.RepoRoot("."); setupErr != nil {
			return
		}
		built = map[string][]k8scheck.Object{}
		for _, b := range builds {
			objs, err := k8scheck.Build(filepath.Join(root, "deploy", "kubernetes", b))
			if err != nil {
				setupErr = err
				return
			}
			built[b] = objs
		}
	})
	if setupErr != nil {
		t.Fatal(setupErr)
	}
	return root, built
}

func ofKind(objs []k8scheck.Object, kind string) []k8scheck.Object {
	var out []k8scheck.Object
	for _, o := range objs {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

// strictTypes are the built-in kinds the manifests may use, each decoded into its
// k8s.io/api type. A kind outside this list fails: add its type here first.
var strictTypes = map[string]func() any{
	"v1 Namespace":                           func() any { return &corev1.Namespace{} },
	"v1 ConfigMap":                           func() any { return &corev1.ConfigMap{} },
	"v1 Secret":                              func() any { return &corev1.Secret{} },
	"v1 Service":                             func() any { return &corev1.Service{} },
	"apps/v1 Deployment":                     func() any { return &appsv1.Deployment{} },
	"batch/v1 Job":                           func() any { return &batchv1.Job{} },
	"policy/v1 PodDisruptionBudget":          func() any { return &policyv1.PodDisruptionBudget{} },
	"autoscaling/v2 HorizontalPodAutoscaler": func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
}

func TestKustomizeBuilds(t *testing.T) {
	_, b := setup(t)
	for _, name := range builds {
		if len(b[name]) == 0 {
			t.Errorf("%s builds to nothing", name)
		}
		for _, o := range b[name] {
			if o.Kind != "Namespace" && o.Namespace != "kchat" {
				t.Errorf("%s: %s is in namespace %q, want kchat (Strimzi's entity operator watches the Kafka's namespace)", name, o.ID(), o.Namespace)
			}
		}
	}
}

// Every built-in object decodes into its Go type with unknown fields refused, so a
// misspelled or misplaced field fails here instead of being dropped by the API server.
func TestBuiltinObjectsDecodeStrictly(t *testing.T) {
	_, b := setup(t)
	for _, name := range builds {
		for _, o := range b[name] {
			if strings.Contains(o.APIVersion, ".") && !strings.HasSuffix(o.APIVersion, ".k8s.io/v1") {
				continue // a custom resource: TestCustomResourcesMatchCRDSchemas
			}
			newT, ok := strictTypes[o.APIVersion+" "+o.Kind]
			if !ok {
				t.Errorf("%s: %s has no strict type in strictTypes", name, o.ID())
				continue
			}
			if err := yaml.UnmarshalStrict(o.YAML, newT()); err != nil {
				t.Errorf("%s: %s: %v", name, o.ID(), err)
			}
		}
	}
}

var crdFiles = regexp.MustCompile(`(?m)^\| ` + "`" + `([^` + "`" + `]+)` + "`" + ` \|.*\| ([0-9a-f]{64}) \|$`)

// The CRD files are verbatim copies of the operators' releases; their checksums are in
// testdata/crds/README.md, so an edit that would make a manifest pass shows up here.
func TestCRDFilesAreTheReleasedOnes(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("testdata", "crds", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]string{}
	for _, m := range crdFiles.FindAllStringSubmatch(string(readme), -1) {
		listed[m[1]] = m[2]
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "crds", "*.yaml"))
	if len(files) == 0 {
		t.Fatal("no CRD files in testdata/crds")
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		base := filepath.Base(f)
		if want, ok := listed[base]; !ok {
			t.Errorf("%s is not listed in testdata/crds/README.md", base)
		} else if got := hex.EncodeToString(sum[:]); got != want {
			t.Errorf("%s: sha256 %s, README says %s", base, got, want)
		}
		delete(listed, base)
	}
	for f := range listed {
		t.Errorf("README lists %s, which is missing", f)
	}
}

var (
	crdOnce   sync.Once
	crds      map[string]k8scheck.CRDSchema
	crdLoadEr error
)

func loadCRDs(t *testing.T) map[string]k8scheck.CRDSchema {
	t.Helper()
	crdOnce.Do(func() { crds, crdLoadEr = k8scheck.LoadCRDs(filepath.Join("testdata", "crds")) })
	if crdLoadEr != nil {
		t.Fatal(crdLoadEr)
	}
	return crds
}

// Every Strimzi and CloudNativePG resource validates against its CRD's schema, with
// unknown fields refused wherever the API server would refuse them.
func TestCustomResourcesMatchCRDSchemas(t *testing.T) {
	_, b := setup(t)
	schemas := loadCRDs(t)
	seen := map[string]bool{}
	for _, name := range builds {
		for _, o := range b[name] {
			if !strings.Contains(o.APIVersion, ".") || strings.HasSuffix(o.APIVersion, ".k8s.io/v1") {
				continue
			}
			s, ok := schemas[o.APIVersion+" "+o.Kind]
			if !ok {
				t.Errorf("%s: no CRD in testdata/crds serves %s %s", name, o.APIVersion, o.Kind)
				continue
			}
			if s.Deprecated {
				t.Errorf("%s: %s uses a deprecated API version", name, o.ID())
			}
			if err := s.Schema.Validate(o.Value); err != nil {
				// %#v: every failing keyword with its instance location, not only the first line.
				t.Errorf("%s: %s: %#v", name, o.ID(), err)
			}
			seen[o.APIVersion+" "+o.Kind] = true
		}
	}
	for _, k := range []string{"kafka.strimzi.io/v1 Kafka", "kafka.strimzi.io/v1 KafkaNodePool", "kafka.strimzi.io/v1 KafkaTopic",
		"kafka.strimzi.io/v1 KafkaUser", "kafka.strimzi.io/v1 KafkaRebalance", "postgresql.cnpg.io/v1 Cluster"} {
		if !seen[k] {
			t.Errorf("no %s in the builds", k)
		}
	}
}

// The schema conversion itself: an unknown field fails, a preserved map does not.
func TestStrictSchemaRefusesUnknownFields(t *testing.T) {
	schemas := loadCRDs(t)
	s := schemas["kafka.strimzi.io/v1 KafkaTopic"]
	if s.Schema == nil {
		t.Fatal("no KafkaTopic schema")
	}
	good := map[string]any{"apiVersion": "kafka.strimzi.io/v1", "kind": "KafkaTopic", "metadata": map[string]any{"name": "x"},
		"spec": map[string]any{"partitions": 3, "config": map[string]any{"any.key": "1"}}}
	if err := s.Schema.Validate(good); err != nil {
		t.Errorf("valid topic refused: %v", err)
	}
	bad := map[string]any{"apiVersion": "kafka.strimzi.io/v1", "kind": "KafkaTopic", "metadata": map[string]any{"name": "x"},
		"spec": map[string]any{"partition": 3}}
	if err := s.Schema.Validate(bad); err == nil {
		t.Error("spec.partition (misspelled) accepted")
	}
}

func spec(o k8scheck.Object) map[string]any {
	s, _ := o.Value["spec"].(map[string]any)
	return s
}

func num(v any) (int, bool) {
	switch n := v.(type) {
	case interface{ String() string }: // json.Number
		i, err := strconv.Atoi(n.String())
		return i, err == nil
	case int:
		return n, true
	}
	return 0, false
}

// The KafkaTopics are deploy/topics.yaml (read with the parser chatctl topics uses),
// exactly: the same names, partitions, replication factors and configs, no more, no less.
func TestKafkaTopicsMatchTopicsFile(t *testing.T) {
	root, b := setup(t)
	file, err := topics.Load(filepath.Join(root, "deploy", "topics.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range builds {
		got := map[string]k8scheck.Object{}
		for _, o := range ofKind(b[name], "KafkaTopic") {
			s := spec(o)
			tn, _ := s["topicName"].(string)
			if tn == "" {
				t.Errorf("%s: %s has no spec.topicName", name, o.ID())
				continue
			}
			if _, dup := got[tn]; dup {
				t.Errorf("%s: topic %s declared twice", name, tn)
			}
			got[tn] = o
			labels, _ := o.Value["metadata"].(map[string]any)["labels"].(map[string]any)
			if labels["strimzi.io/cluster"] != "kchat" {
				t.Errorf("%s: %s is not labelled strimzi.io/cluster: kchat; the topic operator ignores it", name, o.ID())
			}
		}
		for _, want := range file.Topics {
			o, ok := got[want.Name]
			if !ok {
				t.Errorf("%s: no KafkaTopic for %s", name, want.Name)
				continue
			}
			delete(got, want.Name)
			s := spec(o)
			if p, _ := num(s["partitions"]); p != want.Partitions {
				t.Errorf("%s: %s partitions %v, topics.yaml %d", name, want.Name, s["partitions"], want.Partitions)
			}
			if r, _ := num(s["replicas"]); r != want.ReplicationFactor {
				t.Errorf("%s: %s replicas %v, topics.yaml %d", name, want.Name, s["replicas"], want.ReplicationFactor)
			}
			cfg, _ := s["config"].(map[string]any)
			gotCfg := map[string]string{}
			for k, v := range cfg {
				gotCfg[k] = fmt.Sprint(v)
			}
			for k, v := range want.Configs {
				if gotCfg[k] != v {
					t.Errorf("%s: %s config %s = %q, topics.yaml %q", name, want.Name, k, gotCfg[k], v)
				}
				delete(gotCfg, k)
			}
			for k, v := range gotCfg {
				t.Errorf("%s: %s config %s = %q is not in topics.yaml", name, want.Name, k, v)
			}
		}
		for tn := range got {
			t.Errorf("%s: KafkaTopic %s is not in topics.yaml", name, tn)
		}
	}
}

// The broker metrics ConfigMap is built from a copy of deploy/prometheus/jmx-exporter.yaml
// (kustomize cannot read outside the base); the two must not drift.
func TestJMXExporterConfigIsTheSharedOne(t *testing.T) {
	root, b := setup(t)
	want, err := os.ReadFile(filepath.Join(root, "deploy", "prometheus", "jmx-exporter.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	copyData, err := os.ReadFile(filepath.Join(root, "deploy", "kubernetes", "base", "jmx-exporter.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(copyData, want) {
		t.Error("deploy/kubernetes/base/jmx-exporter.yaml differs from deploy/prometheus/jmx-exporter.yaml; copy it again")
	}
	for _, name := range builds {
		kafka := ofKind(b[name], "Kafka")
		if len(kafka) != 1 {
			t.Fatalf("%s: %d Kafka resources, want 1", name, len(kafka))
		}
		ref := get(spec(kafka[0]), "kafka", "metricsConfig", "valueFrom", "configMapKeyRef")
		cmName, _ := ref["name"].(string)
		key, _ := ref["key"].(string)
		var found bool
		for _, cm := range ofKind(b[name], "ConfigMap") {
			if cm.Name != cmName {
				continue
			}
			data, _ := cm.Value["data"].(map[string]any)
			found = true
			if data[key] != string(want) {
				t.Errorf("%s: ConfigMap %s key %s is not jmx-exporter.yaml", name, cmName, key)
			}
		}
		if !found {
			t.Errorf("%s: the Kafka's metricsConfig names ConfigMap %q, which the build lacks", name, cmName)
		}
	}
}

func get(m map[string]any, path ...string) map[string]any {
	for _, p := range path {
		m, _ = m[p].(map[string]any)
	}
	return m
}

// The Kafka cluster keeps the durability settings of the local stack and compose.
func TestKafkaCluster(t *testing.T) {
	_, b := setup(t)
	for _, name := range builds {
		k := ofKind(b[name], "Kafka")[0]
		ann, _ := k.Value["metadata"].(map[string]any)["annotations"].(map[string]any)
		if ann["strimzi.io/kraft"] != "enabled" || ann["strimzi.io/node-pools"] != "enabled" {
			t.Errorf("%s: Kafka annotations %v, want strimzi.io/kraft and strimzi.io/node-pools enabled", name, ann)
		}
		kafka := get(spec(k), "kafka")
		if v, _ := kafka["version"].(string); !strings.HasPrefix(v, "4.0.") {
			t.Errorf("%s: Kafka version %q, want 4.0.x as the local stack", name, v)
		}
		cfg := get(kafka, "config")
		for key, want := range map[string]string{"min.insync.replicas": "2", "default.replication.factor": "3", "auto.create.topics.enable": "false"} {
			if got := fmt.Sprint(cfg[key]); got != want {
				t.Errorf("%s: %s = %s, want %s", name, key, got, want)
			}
		}
		if get(kafka, "authorization")["type"] != "simple" {
			t.Errorf("%s: authorization %v, want simple", name, kafka["authorization"])
		}
		listeners, _ := kafka["listeners"].([]any)
		var tls bool
		for _, l := range listeners {
			lm := l.(map[string]any)
			if p, _ := num(lm["port"]); p == 9093 && lm["tls"] == true && get(lm, "authentication")["type"] == "scram-sha-512" {
				tls = true
			}
		}
		if !tls {
			t.Errorf("%s: no TLS listener on 9093 with scram-sha-512", name)
		}
		if _, ok := spec(k)["cruiseControl"]; !ok {
			t.Errorf("%s: Cruise Control is not enabled", name)
		}
		eo := get(spec(k), "entityOperator")
		if _, ok := eo["topicOperator"]; !ok {
			t.Errorf("%s: no topic operator", name)
		}
		if _, ok := eo["userOperator"]; !ok {
			t.Errorf("%s: no user operator", name)
		}
		var voters int
		for _, p := range ofKind(b[name], "KafkaNodePool") {
			roles, _ := spec(p)["roles"].([]any)
			if slices.Contains(roles, any("controller")) {
				r, _ := num(spec(p)["replicas"])
				voters += r
			}
		}
		if voters != 3 {
			t.Errorf("%s: %d KRaft controllers, want 3", name, voters)
		}
	}
}

// acl is one allowed operation on a resource, "Write topic chat.stored".
func acls(o k8scheck.Object) []string {
	var out []string
	list, _ := get(spec(o), "authorization")["acls"].([]any)
	for _, a := range list {
		am := a.(map[string]any)
		r := get(am, "resource")
		if t, _ := am["type"].(string); t == "deny" {
			continue
		}
		pt, _ := r["patternType"].(string)
		ops, _ := am["operations"].([]any)
		for _, op := range ops {
			s := fmt.Sprintf("%v %v %v", op, r["type"], r["name"])
			if pt == "prefix" {
				s += "*"
			}
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

// aclMatrix is what each service's code does with Kafka (docs/operations.md
// "Kubernetes" has the table and kafka-users.yaml the reasons); the KafkaUsers must
// grant exactly this. Change it together with the code.
var aclMatrix = map[string][]string{
	"kchat-gateway": {"Read topic chat.deliveries", "Read topic chat.presence", "Read topic chat.stored",
		"Write topic chat.ephemeral", "Write topic chat.presence", "Write topic chat.submitted", "Write topic chat.subscriptions"},
	"kchat-persistence": {"Read group persistence", "Read topic chat.submitted", "Write topic chat.dlq",
		"Write topic chat.notifications", "Write topic chat.stored", "Write topic chat.submitted"},
	"kchat-fanout": {"Read group fanout", "Read topic chat.ephemeral", "Read topic chat.notifications", "Read topic chat.presence",
		"Read topic chat.subscriptions", "Write topic chat.deliveries", "Write topic chat.dlq", "Write topic chat.subscriptions"},
	"kchat-notification": {"Read group notification", "Read topic chat.presence", "Read topic chat.stored", "Write topic chat.dlq"},
}

func TestACLMatrix(t *testing.T) {
	root, b := setup(t)
	file, err := topics.Load(filepath.Join(root, "deploy", "topics.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, tp := range file.Topics {
		known[tp.Name] = true
	}
	for _, name := range builds {
		users := ofKind(b[name], "KafkaUser")
		writers := map[string][]string{}
		groups := map[string][]string{}
		seen := map[string]bool{}
		for _, u := range users {
			seen[u.Name] = true
			if get(spec(u), "authentication")["type"] != "scram-sha-512" {
				t.Errorf("%s: %s does not authenticate with scram-sha-512", name, u.Name)
			}
			got := acls(u)
			if want, ok := aclMatrix[u.Name]; !ok {
				t.Errorf("%s: KafkaUser %s is not in the ACL matrix", name, u.Name)
			} else if !slices.Equal(got, want) {
				t.Errorf("%s: %s grants %v, the matrix says %v", name, u.Name, got, want)
			}
			for _, a := range got {
				f := strings.Fields(a)
				if strings.HasSuffix(a, "*") || f[0] == "All" {
					t.Errorf("%s: %s: %q is wider than one resource and operation", name, u.Name, a)
				}
				if f[1] == "topic" && !known[f[2]] {
					t.Errorf("%s: %s: topic %s is not in topics.yaml", name, u.Name, f[2])
				}
				if f[0] == "Write" && f[1] == "topic" {
					writers[f[2]] = append(writers[f[2]], u.Name)
				}
				if f[1] == "group" {
					groups[f[2]] = append(groups[f[2]], u.Name)
				}
			}
		}
		for u := range aclMatrix {
			if !seen[u] {
				t.Errorf("%s: no KafkaUser %s", name, u)
			}
		}
		// The rules, stated on their own so that a matrix edit cannot quietly
		// drop them.
		if !slices.Equal(writers["chat.stored"], []string{"kchat-persistence"}) {
			t.Errorf("%s: chat.stored writers %v, want persistence only", name, writers["chat.stored"])
		}
		for g, us := range groups {
			if !slices.Equal(us, []string{"kchat-" + g}) {
				t.Errorf("%s: group %s is granted to %v, want only kchat-%s", name, g, us, g)
			}
		}
		// Each Deployment runs with its default consumer group (the service's name), which
		// is the group its user may use: setting CONSUMER_GROUP or FANOUT_GROUP would need
		// a matching ACL.
		for _, d := range ofKind(b[name], "Deployment") {
			for _, c := range containers(t, d) {
				for _, e := range c.Env {
					if e.Name == "CONSUMER_GROUP" || e.Name == "FANOUT_GROUP" {
						t.Errorf("%s: %s sets %s; the KafkaUser ACL allows only group %s", name, d.Name, e.Name, d.Name)
					}
				}
			}
		}
	}
}

func containers(t *testing.T, o k8scheck.Object) []corev1.Container {
	t.Helper()
	switch o.Kind {
	case "Deployment":
		var d appsv1.Deployment
		if err := yaml.Unmarshal(o.YAML, &d); err != nil {
			t.Fatal(err)
		}
		return d.Spec.Template.Spec.Containers
	case "Job":
		var j batchv1.Job
		if err := yaml.Unmarshal(o.YAML, &j); err != nil {
			t.Fatal(err)
		}
		return j.Spec.Template.Spec.Containers
	}
	return nil
}

// program names the kchat program an image runs: kchat/<program>[:tag].
func program(image string) string {
	name, _, _ := strings.Cut(strings.TrimPrefix(image, "kchat/"), ":")
	if !strings.HasPrefix(image, "kchat/") {
		return ""
	}
	return name
}

var (
	progOnce sync.Once
	progs    map[string]k8scheck.Program
	progErr  error
)

func readPrograms(t *testing.T, root string) map[string]k8scheck.Program {
	t.Helper()
	progOnce.Do(func() {
		progs = map[string]k8scheck.Program{}
		for p, dir := range programs {
			var pr k8scheck.Program
			if pr, progErr = k8scheck.ReadProgram(root, filepath.Join(root, dir)); progErr != nil {
				return
			}
			progs[p] = pr
		}
	})
	if progErr != nil {
		t.Fatal(progErr)
	}
	return progs
}

// The reader itself, on names the services are known to read.
func TestReadProgramFindsServiceEnv(t *testing.T) {
	root, _ := setup(t)
	p := readPrograms(t, root)
	for prog, want := range map[string][]string{
		"gateway":      {"HTTP_ADDR", "GATEWAY_ID", "KAFKA_BROKERS", "DATABASE_URL", "RATE_CONN", "PGSSLMODE"},
		"persistence":  {"KAFKA_BROKERS", "DATABASE_URL", "HTTP_ADDR", "CONSUMER_GROUP", "OUTBOX_RETENTION", "PGSSLROOTCERT"},
		"fanout":       {"KAFKA_BROKERS", "HTTP_ADDR", "FANOUT_GROUP", "START_OFFSET", "PRESENCE_EXPIRY"},
		"notification": {"KAFKA_BROKERS", "DATABASE_URL", "HTTP_ADDR", "CONSUMER_GROUP", "SMTP_HOST", "PGSSLMODE"},
		"chatctl":      {"DATABASE_URL", "LOG_LEVEL", "TOPIC_PREFIX", "PGSSLMODE"},
	} {
		// Every Kafka client reads kafkasec's variables: the gateway and persistence
		// through service.KafkaSecurityFlags, fanout and notification through
		// service.NewConsumerFlags, chatctl through kafkasec.FromEnv.
		want = append(want, "KAFKA_TLS_CA_FILE", "KAFKA_TLS", "KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME",
			"KAFKA_SASL_PASSWORD", "KAFKA_SASL_PASSWORD_FILE")
		// Every service reads pkg/tracing's OTEL_* variables: the gateway and persistence
		// through service.StartTracing, fanout and notification through service.Main.
		if prog != "chatctl" {
			want = append(want, "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME", "OTEL_TRACES_SAMPLER")
		}
		for _, k := range want {
			if !p[prog].Env[k] {
				t.Errorf("%s: %s not found in its source (found %v)", prog, k, k8scheck.SortedKeys(p[prog].Env))
			}
		}
	}
	if p["fanout"].Env["DATABASE_URL"] || p["fanout"].Env["PGSSLMODE"] {
		t.Error("fanout reads DATABASE_URL or PGSSLMODE?")
	}
	if p["chatctl"].Env["OTEL_EXPORTER_OTLP_ENDPOINT"] {
		t.Error("chatctl does not trace, yet reads OTEL_EXPORTER_OTLP_ENDPOINT?")
	}
	if p["fanout"].Defaults["HTTP_ADDR"] != ":8091" || p["gateway"].Defaults["HTTP_ADDR"] != ":8081" {
		t.Errorf("HTTP_ADDR defaults fanout %q gateway %q", p["fanout"].Defaults["HTTP_ADDR"], p["gateway"].Defaults["HTTP_ADDR"])
	}
}

// mustSet are names whose built-in defaults point at the non-Docker local stack
// (127.0.0.1:9092, PostgreSQL on 5433): in a cluster a program that reads one needs it.
var mustSet = []string{"KAFKA_BROKERS", "DATABASE_URL"}

// Every env name a Deployment or Job sets is one its program reads (a typo is otherwise a
// silent no-op), every reference resolves, and what a program needs is set.
func TestEnvIsWhatProgramsRead(t *testing.T) {
	root, b := setup(t)
	p := readPrograms(t, root)
	for _, name := range builds {
		configMaps := map[string]map[string]any{}
		for _, cm := range ofKind(b[name], "ConfigMap") {
			data, _ := cm.Value["data"].(map[string]any)
			configMaps[cm.Name] = data
		}
		// Secrets the operators create: CloudNativePG's "<cluster>-app" (key uri and others).
		secrets := map[string][]string{}
		for _, c := range ofKind(b[name], "Cluster") {
			secrets[c.Name+"-app"] = []string{"uri", "username", "password", "host", "port", "dbname"}
		}
		for _, o := range append(ofKind(b[name], "Deployment"), ofKind(b[name], "Job")...) {
			for _, c := range containers(t, o) {
				prog := program(c.Image)
				pr, ok := p[prog]
				if !ok {
					t.Errorf("%s: %s container %s runs %q, not a kchat program", name, o.ID(), c.Name, c.Image)
					continue
				}
				if len(c.EnvFrom) > 0 {
					t.Errorf("%s: %s uses envFrom; list names explicitly so they can be checked", name, o.ID())
				}
				set := map[string]bool{}
				for _, e := range c.Env {
					set[e.Name] = true
					if !pr.Env[e.Name] {
						t.Errorf("%s: %s sets %s, which %s never reads (it reads %v)", name, o.ID(), e.Name, prog, k8scheck.SortedKeys(pr.Env))
					}
					if e.ValueFrom == nil {
						continue
					}
					if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
						data, ok := configMaps[r.Name]
						if _, has := data[r.Key]; !ok || !has {
							t.Errorf("%s: %s %s: ConfigMap %s key %s is not in the build", name, o.ID(), e.Name, r.Name, r.Key)
						}
					}
					// An optional Secret is one the operator creates to turn a feature on
					// (Web Push keys, object-store keys); the program runs without it.
					if r := e.ValueFrom.SecretKeyRef; r != nil && (r.Optional == nil || !*r.Optional) && !slices.Contains(secrets[r.Name], r.Key) {
						t.Errorf("%s: %s %s: Secret %s key %s is neither in the build nor made by an operator in it", name, o.ID(), e.Name, r.Name, r.Key)
					}
				}
				for _, k := range mustSet {
					if pr.Env[k] && !set[k] && (prog != "chatctl" || k == "DATABASE_URL") {
						t.Errorf("%s: %s does not set %s, and %s's default is the local stack's", name, o.ID(), k, prog)
					}
				}
			}
		}
	}
}

// httpPort is where the program listens: HTTP_ADDR as set, else its source's default.
func httpPort(t *testing.T, c corev1.Container, pr k8scheck.Program) int {
	t.Helper()
	addr := pr.Defaults["HTTP_ADDR"]
	for _, e := range c.Env {
		if e.Name == "HTTP_ADDR" {
			if e.ValueFrom != nil {
				t.Errorf("%s: HTTP_ADDR from a reference cannot be checked; set its value", c.Name)
			}
			addr = e.Value
		}
	}
	port, err := k8scheck.ListenPort(addr)
	if err != nil {
		t.Errorf("%s: %v", c.Name, err)
	}
	return port
}

func containerPort(c corev1.Container, p corev1.ContainerPort, want string) (int, bool) {
	if n, err := strconv.Atoi(want); err == nil {
		return n, true
	}
	for _, cp := range c.Ports {
		if cp.Name == want {
			return int(cp.ContainerPort), true
		}
	}
	return 0, false
}

// The probes and the Services reach the port the program listens on, at the paths it
// serves; the grace period outlasts the shutdown.
func TestProbesAndServicesReachTheProgram(t *testing.T) {
	root, b := setup(t)
	p := readPrograms(t, root)
	// The longest clean stop: the gateway's 10 s (services/gateway/internal/app, shutdown),
	// then its hub and presence flush; consumers need their batch plus 5 s for the admin
	// server (pkg/service/runner.go).
	const longestShutdownSeconds = 15
	for _, name := range builds {
		podPorts := map[string]map[int]bool{} // app name -> ports its pods listen on
		podLabels := map[string]map[string]string{}
		for _, o := range ofKind(b[name], "Deployment") {
			var d appsv1.Deployment
			if err := yaml.Unmarshal(o.YAML, &d); err != nil {
				t.Fatal(err)
			}
			if g := d.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g <= longestShutdownSeconds {
				got := "unset (30)"
				if g != nil {
					got = strconv.FormatInt(*g, 10)
				}
				t.Errorf("%s: %s terminationGracePeriodSeconds %s, want > %d", name, o.Name, got, longestShutdownSeconds)
			}
			podLabels[o.Name] = d.Spec.Template.Labels
			ports := map[int]bool{}
			for _, c := range d.Spec.Template.Spec.Containers {
				pr := p[program(c.Image)]
				listen := httpPort(t, c, pr)
				ports[listen] = true
				for _, cp := range c.Ports {
					if cp.Name == "http" && int(cp.ContainerPort) != listen {
						t.Errorf("%s: %s port http is %d, the program listens on %d", name, o.Name, cp.ContainerPort, listen)
					}
				}
				for what, pr := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
					wantPath := map[string]string{"liveness": "/healthz", "readiness": "/readyz"}[what]
					if pr == nil || pr.HTTPGet == nil {
						t.Errorf("%s: %s has no HTTP %s probe", name, o.Name, what)
						continue
					}
					if pr.HTTPGet.Path != wantPath {
						t.Errorf("%s: %s %s probe path %s, want %s", name, o.Name, what, pr.HTTPGet.Path, wantPath)
					}
					got, ok := containerPort(c, corev1.ContainerPort{}, pr.HTTPGet.Port.String())
					if !ok || got != listen {
						t.Errorf("%s: %s %s probe port %s (%d), the program listens on %d", name, o.Name, what, pr.HTTPGet.Port.String(), got, listen)
					}
				}
				if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
					t.Errorf("%s: %s needs cpu and memory requests and a memory limit", name, o.Name)
				}
			}
			podPorts[o.Name] = ports
		}
		matches := func(sel map[string]string) []string {
			var out []string
			for app, l := range podLabels {
				ok := len(sel) > 0
				for k, v := range sel {
					if l[k] != v {
						ok = false
					}
				}
				if ok {
					out = append(out, app)
				}
			}
			return out
		}
		for _, o := range ofKind(b[name], "Service") {
			var s corev1.Service
			if err := yaml.Unmarshal(o.YAML, &s); err != nil {
				t.Fatal(err)
			}
			apps := matches(s.Spec.Selector)
			if len(apps) != 1 {
				t.Errorf("%s: Service %s selects %v, want one Deployment", name, o.Name, apps)
				continue
			}
			var d appsv1.Deployment
			for _, dep := range ofKind(b[name], "Deployment") {
				if dep.Name == apps[0] {
					_ = yaml.Unmarshal(dep.YAML, &d)
				}
			}
			for _, sp := range s.Spec.Ports {
				var ok bool
				for _, c := range d.Spec.Template.Spec.Containers {
					if got, found := containerPort(c, corev1.ContainerPort{}, sp.TargetPort.String()); found && podPorts[apps[0]][got] {
						ok = true
					}
				}
				if !ok {
					t.Errorf("%s: Service %s port %d targets %s, where %s does not listen", name, o.Name, sp.Port, sp.TargetPort.String(), apps[0])
				}
			}
			if o.Name == "gateway" && s.Spec.SessionAffinity != corev1.ServiceAffinityNone {
				t.Errorf("%s: gateway Service sessionAffinity %q; any gateway can resume any client, so None", name, s.Spec.SessionAffinity)
			}
		}
		pdbs := map[string]bool{}
		for _, o := range ofKind(b[name], "PodDisruptionBudget") {
			var pdb policyv1.PodDisruptionBudget
			if err := yaml.Unmarshal(o.YAML, &pdb); err != nil {
				t.Fatal(err)
			}
			for _, app := range matches(pdb.Spec.Selector.MatchLabels) {
				pdbs[app] = true
			}
		}
		for app := range podLabels {
			if !pdbs[app] {
				t.Errorf("%s: Deployment %s has no PodDisruptionBudget", name, app)
			}
		}
	}
}

func replicas(t *testing.T, objs []k8scheck.Object, name string) (int32, bool) {
	t.Helper()
	for _, o := range ofKind(objs, "Deployment") {
		if o.Name == name {
			var d appsv1.Deployment
			if err := yaml.Unmarshal(o.YAML, &d); err != nil {
				t.Fatal(err)
			}
			if d.Spec.Replicas == nil {
				return 0, false
			}
			return *d.Spec.Replicas, true
		}
	}
	t.Fatalf("no Deployment %s", name)
	return 0, false
}

// What each overlay promises in docs/operations.md.
func TestOverlays(t *testing.T) {
	_, b := setup(t)
	for _, app := range []string{"gateway", "persistence", "fanout", "notification"} {
		if n, ok := replicas(t, b["overlays/dev"], app); !ok || n != 1 {
			t.Errorf("dev: %s replicas %d, want 1", app, n)
		}
	}
	for app, want := range map[string]int32{"persistence": 2, "fanout": 2, "notification": 2} {
		if n, _ := replicas(t, b["overlays/production"], app); n != want {
			t.Errorf("production: %s replicas %d, want %d", app, n, want)
		}
	}
	if n, ok := replicas(t, b["overlays/production"], "gateway"); ok {
		t.Errorf("production: gateway replicas %d set; the HPA owns it", n)
	}
	hpas := ofKind(b["overlays/production"], "HorizontalPodAutoscaler")
	if len(hpas) != 1 {
		t.Fatalf("production: %d HPAs, want 1 for the gateway", len(hpas))
	}
	var h autoscalingv2.HorizontalPodAutoscaler
	if err := yaml.Unmarshal(hpas[0].YAML, &h); err != nil {
		t.Fatal(err)
	}
	if h.Spec.ScaleTargetRef.Kind != "Deployment" || h.Spec.ScaleTargetRef.Name != "gateway" || h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 3 {
		t.Errorf("production HPA targets %s %s from %v replicas, want Deployment gateway from 3", h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name, h.Spec.MinReplicas)
	}
	for _, c := range ofKind(b["overlays/production"], "Cluster") {
		if n, _ := num(spec(c)["instances"]); n != 3 {
			t.Errorf("production: PostgreSQL instances %d, want 3", n)
		}
	}
}
