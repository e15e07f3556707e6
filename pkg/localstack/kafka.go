package localstack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/kafkasec"
	"github.com/kchat/kchat/pkg/leaders"
)

// Kafka's own test harness uses these to start fast; durability settings stay production-like
// (RF 3, min ISR 2) because the tests exist to prove durability.
//
// A SIGKILLed node keeps its partitions' leadership until the controller fences it, which
// it does broker.session.timeout.ms (default 9 s) after its last heartbeat; sends to those
// partitions stall that long. As Kafka's own test harness does, the local stack fences
// sooner (3 s, heartbeats every 0.5 s); the price, a broker that is merely slow (a GC pause,
// a starved CPU on a loaded machine) being fenced and its leaders moved, is discussed in
// docs/operations.md. Raft's own timeouts (controller.quorum.fetch.timeout.ms 2 s,
// election 1 s) stay at Kafka's defaults.
var serverProperties = template.Must(template.New("props").Parse(`# Written by localstack; edits are overwritten on the next up.
process.roles=broker,controller
node.id={{.ID}}
controller.quorum.voters={{.Voters}}
{{if .Secure -}}
{{template "secure" .}}
{{- else -}}
listeners=PLAINTEXT://127.0.0.1:{{.Port}},CONTROLLER://127.0.0.1:{{.ControllerPort}}
advertised.listeners=PLAINTEXT://127.0.0.1:{{.Port}}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
{{end -}}
log.dirs={{.DataDir}}
num.partitions=3
default.replication.factor=3
min.insync.replicas=2
auto.create.topics.enable=false
offsets.topic.replication.factor=3
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=3
group.initial.rebalance.delay.ms=0
log.cleaner.dedupe.buffer.size=2097152
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
log.segment.bytes=67108864
delete.topic.enable=true
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=500
` + secureProperties))

func (s *Stack) voters() string {
	parts := make([]string, 3)
	for i := range parts {
		parts[i] = fmt.Sprintf("%d@127.0.0.1:%d", i+1, s.cfg.ControllerPorts[i])
	}
	return strings.Join(parts, ",")
}

// UpKafka starts the Kafka nodes that are not running yet (not PostgreSQL) and waits
// until the cluster is usable; Up is both. Tests that need a cluster of their own, e.g. a
// secured one, start only this.
func (s *Stack) UpKafka(ctx context.Context) error {
	if err := s.checkSecurityMode(); err != nil {
		return err
	}
	if err := os.MkdirAll(s.logDir(), 0o755); err != nil {
		return err
	}
	java, err := needTool("java", "install a JDK 17+ (e.g. apt-get install openjdk-17-jdk-headless), or set KAFKA_BROKERS to use an existing cluster")
	if err != nil {
		return err
	}
	if err := s.fetchKafka(ctx); err != nil {
		return err
	}
	if err := s.writeCertificates(); err != nil {
		return err
	}
	if _, err := s.fetchJMXExporter(ctx); err != nil {
		return err
	}
	clusterID, err := s.clusterID(ctx, java)
	if err != nil {
		return err
	}
	started := false
	for id := 1; id <= 3; id++ {
		if _, ok := s.running(s.kafkaName(id)); ok {
			continue
		}
		if err := s.prepareNode(ctx, java, id, clusterID); err != nil {
			return err
		}
		if err := s.startNode(ctx, java, id); err != nil {
			return err
		}
		started = true
	}
	if err := s.WaitKafka(ctx, 3*time.Minute); err != nil {
		return err
	}
	// Only after starting nodes: a cluster this call found running may be in the middle
	// of another test's fault, whose leaders are not this call's to move.
	if started {
		s.spreadLeaders(ctx)
	}
	return nil
}

// spreadLeaders hands every partition back to its preferred replica. Nodes start one after
// another, so the topics of a stack that existed before end up led by whichever node came
// up first, and Kafka spreads them again only at its next imbalance check (5 minutes): a
// benchmark or test in between measured one broker doing all the work. A partition whose
// preferred replica is still catching up stays where it is after a minute; that costs
// speed, not correctness, so it is logged, not returned.
func (s *Stack) spreadLeaders(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(s.Info().Brokers...), Timeout: 10 * time.Second, Transport: s.adminSecurity().RoundTripper()}
	moved, left, err := leaders.Balance(ctx, client, nil, 250*time.Millisecond)
	if err != nil {
		s.log.Warn("partition leaders are not all on their preferred brokers", "moved", moved, "left", len(left), "error", err)
		return
	}
	if moved > 0 {
		s.log.Info("moved partition leaders back to their preferred brokers", "partitions", moved)
	}
}

// fetchKafka resolves the broker jars with Maven once; the marker file makes a
// half-finished download retry instead of running with missing jars.
func (s *Stack) fetchKafka(ctx context.Context) error {
	done := filepath.Join(s.kafkaLibDir(), ".complete")
	if _, err := os.Stat(done); err == nil {
		return nil
	}
	if err := s.mavenCopy(ctx, "kafka-pom.xml", s.kafkaLibDir(), "copy-dependencies", "-DincludeScope=runtime"); err != nil {
		return err
	}
	return os.WriteFile(done, nil, 0o644)
}

// fetchJMXExporter resolves the Prometheus JMX exporter agent with Maven once, like the
// Kafka jars, and returns the jar's path. It is not optional: the alert rules need the
// brokers' metrics, so a failed download stops the stack with the same clear error as a
// missing Kafka jar rather than starting brokers that cannot be watched.
func (s *Stack) fetchJMXExporter(ctx context.Context) (string, error) {
	dir := s.jmxExporterDir()
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err != nil {
		if err := s.mavenCopy(ctx, "jmx-exporter-pom.xml", dir, "copy-dependencies", "-DexcludeTransitive=true"); err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(dir, ".complete"), nil, 0o644); err != nil {
			return "", err
		}
	}
	// The version is the pom's business; take whichever agent jar it resolved.
	jars, _ := filepath.Glob(filepath.Join(dir, "jmx_prometheus_javaagent-*.jar"))
	if len(jars) != 1 {
		return "", fmt.Errorf("%w: want one jmx_prometheus_javaagent jar in %s, found %d; delete the folder to fetch it again",
			ErrPrerequisite, dir, len(jars))
	}
	return jars[0], nil
}

func (s *Stack) mavenCopy(ctx context.Context, pom, outDir string, goal string, extra ...string) error {
	mvn, err := needTool("mvn", "install Maven (e.g. apt-get install maven); it fetches the Kafka and PostgreSQL artifacts")
	if err != nil {
		return err
	}
	s.log.Info("fetching artifacts with Maven (first run only)", "pom", pom, "into", outDir)
	args := append([]string{"-q", "-B", "-f", s.pomPath(pom), "dependency:" + goal, "-DoutputDirectory=" + outDir}, extra...)
	cmd := exec.CommandContext(ctx, mvn, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%w: Maven could not fetch %s (%v); check network access to Maven Central, then run again:\n%s",
			ErrPrerequisite, pom, err, lastLines(out.String(), 15))
	}
	return nil
}

func (s *Stack) classpath() string { return filepath.Join(s.kafkaLibDir(), "*") }

func (s *Stack) clusterID(ctx context.Context, java string) (string, error) {
	if b, err := os.ReadFile(s.clusterIDFile()); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if err := os.MkdirAll(s.cfg.StateDir, 0o755); err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, java, "-cp", s.classpath(), "kafka.tools.StorageTool", "random-uuid").Output()
	if err != nil {
		return "", fmt.Errorf("cannot generate a Kafka cluster id: %w", err)
	}
	id := strings.TrimSpace(lastLines(string(out), 1))
	return id, os.WriteFile(s.clusterIDFile(), []byte(id), 0o644)
}

// prepareNode writes the node's properties and formats its storage if that was never done.
func (s *Stack) prepareNode(ctx context.Context, java string, id int, clusterID string) error {
	if err := checkPortFree(s.kafkaPort(id), s.kafkaName(id)); err != nil {
		return err
	}
	if err := checkPortFree(s.controllerPort(id), s.kafkaName(id)+" controller"); err != nil {
		return err
	}
	if err := checkPortFree(s.metricsPort(id), s.kafkaName(id)+" JMX exporter"); err != nil {
		return err
	}
	if err := os.MkdirAll(s.kafkaDataDir(id), 0o755); err != nil {
		return err
	}
	var buf bytes.Buffer
	err := serverProperties.Execute(&buf, map[string]any{
		"ID": id, "Voters": s.voters(), "Port": s.kafkaPort(id), "ControllerPort": s.controllerPort(id), "DataDir": s.kafkaDataDir(id),
		"Secure": s.cfg.Secure != nil, "KeyStore": s.keyStoreFile(), "TrustStore": s.caFile(), "AdminJAAS": s.adminJAAS(),
	})
	if err != nil {
		return err
	}
	if err := os.WriteFile(s.kafkaProps(id), buf.Bytes(), 0o644); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(s.kafkaDataDir(id), "meta.properties")); err == nil {
		return nil
	}
	args := []string{"-cp", s.classpath(), "-Dlog4j2.configurationFile=" + s.log4jConfig(),
		"kafka.tools.StorageTool", "format", "-t", clusterID, "-c", s.kafkaProps(id), "-g"}
	cmd := exec.CommandContext(ctx, java, append(args, s.scramFormatArgs()...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("cannot format storage of %s: %w\n%s", s.kafkaName(id), err, lastLines(string(out), 10))
	}
	return nil
}

// startNode starts one broker JVM with the JMX exporter agent serving its metrics on
// 127.0.0.1 only (agent argument "host:port:config"). The agent's HTTP server starts
// before Kafka's main class, so the metrics port answers a moment before the broker does.
func (s *Stack) startNode(ctx context.Context, java string, id int) error {
	agent, err := s.fetchJMXExporter(ctx)
	if err != nil {
		return err
	}
	s.log.Info("starting", "process", s.kafkaName(id), "port", s.kafkaPort(id), "metrics_port", s.metricsPort(id))
	heap := fmt.Sprintf("%dm", s.cfg.KafkaHeapMB)
	cmd := exec.Command(java,
		"-Xms256m", "-Xmx"+heap, "-XX:+UseSerialGC", "-Xshare:auto",
		fmt.Sprintf("-javaagent:%s=127.0.0.1:%d:%s", agent, s.metricsPort(id), s.jmxExporterConfig()),
		"-Djava.awt.headless=true",
		"-Dlog4j2.configurationFile="+s.log4jConfig(),
		"-Dkafka.logs.dir="+s.logDir(),
		"-cp", s.classpath(), "kafka.Kafka", s.kafkaProps(id))
	return s.spawn(s.kafkaName(id), cmd, s.cfg.StateDir)
}

// KillBroker SIGKILLs one node (1..3), as a crash would.
func (s *Stack) KillBroker(id int) error {
	pid, ok := s.running(s.kafkaName(id))
	if !ok {
		return fmt.Errorf("%s is not running", s.kafkaName(id))
	}
	if err := syscallKill(pid); err != nil {
		return err
	}
	if !s.waitGone(context.Background(), s.kafkaName(id), 10*time.Second) {
		return fmt.Errorf("%s survived SIGKILL", s.kafkaName(id))
	}
	return nil
}

// StartBroker starts one node again and waits for the whole cluster to be healthy.
func (s *Stack) StartBroker(ctx context.Context, id int) error {
	if _, ok := s.running(s.kafkaName(id)); ok {
		// Someone else (another test binary's Up) may have started it a moment ago: it
		// runs but may not serve yet. Returning at once let a fault test kill a second
		// broker while this one was still starting (found by the chaos suite).
		return s.WaitKafka(ctx, 2*time.Minute)
	}
	java, err := needTool("java", "install a JDK 17+")
	if err != nil {
		return err
	}
	if err := s.startNode(ctx, java, id); err != nil {
		return err
	}
	return s.WaitKafka(ctx, 2*time.Minute)
}

// ClusterState is what WaitKafka checks.
type ClusterState struct {
	Brokers      []int
	QuorumLeader int // -1 when no node knows a leader
}

// KafkaState reads broker registrations from the cluster and the Raft leader from the
// nodes' quorum-state files (kafka-go cannot DescribeQuorum; Metadata's controller id
// under KRaft is a random broker, not the active controller).
func (s *Stack) KafkaState(ctx context.Context) (ClusterState, error) {
	st := ClusterState{QuorumLeader: -1}
	client := &kafka.Client{Addr: kafka.TCP(s.Info().Brokers...), Timeout: 5 * time.Second, Transport: s.adminSecurity().RoundTripper()}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{}})
	if err != nil {
		return st, err
	}
	for _, b := range md.Brokers {
		st.Brokers = append(st.Brokers, b.ID)
	}
	// The quorum-state file of a node that lost touch keeps an old leader, so trust the
	// newest epoch among running nodes and only a leader that is itself running.
	bestEpoch := -1
	for id := 1; id <= 3; id++ {
		if _, ok := s.running(s.kafkaName(id)); !ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.kafkaDataDir(id), "__cluster_metadata-0", "quorum-state"))
		if err != nil {
			continue
		}
		var q struct {
			LeaderID    int `json:"leaderId"`
			LeaderEpoch int `json:"leaderEpoch"`
		}
		if json.Unmarshal(b, &q) == nil && q.LeaderEpoch > bestEpoch {
			bestEpoch = q.LeaderEpoch
			st.QuorumLeader = -1
			if _, ok := s.running(s.kafkaName(q.LeaderID)); q.LeaderID > 0 && ok {
				st.QuorumLeader = q.LeaderID
			}
		}
	}
	return st, nil
}

// WaitKafka waits until all three brokers are registered and the quorum has a leader.
func (s *Stack) WaitKafka(ctx context.Context, d time.Duration) error {
	return waitFor(ctx, d, "3 Kafka brokers and a controller leader", func() error {
		for id := 1; id <= 3; id++ {
			if _, ok := s.running(s.kafkaName(id)); !ok {
				return fmt.Errorf("%s is not running; see %s", s.kafkaName(id), s.logFile(s.kafkaName(id)))
			}
		}
		st, err := s.KafkaState(ctx)
		if err != nil {
			return err
		}
		if len(st.Brokers) != 3 {
			return fmt.Errorf("%d of 3 brokers registered", len(st.Brokers))
		}
		if st.QuorumLeader < 0 {
			return errors.New("no controller leader yet")
		}
		// A broker killed moments ago is still registered until the controller fences it
		// (broker.session.timeout.ms, 9 s), and a restarted one is "running" before its
		// JVM listens: ask each broker itself (found by the chaos suite, which otherwise
		// killed the next broker while the last one was still starting). Each must also
		// list all three itself: one whose metadata lags refuses a replication factor of
		// 3 ("2 brokers") to whoever asks it first.
		for _, addr := range s.Info().Brokers {
			if err := knowsAll(ctx, s.adminSecurity(), addr, 3); err != nil {
				return fmt.Errorf("broker %s: %w", addr, err)
			}
		}
		return nil
	})
}

// knowsAll asks the broker at addr, on a connection of its own (kafka-go's Client would
// answer from its cache), which brokers it knows, and wants n.
func knowsAll(ctx context.Context, sec kafkasec.Security, addr string, n int) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	d := &kafka.Dialer{Timeout: 3 * time.Second, TLS: sec.TLS, SASLMechanism: sec.SASL}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("does not answer: %w", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	brokers, err := conn.Brokers()
	if err != nil {
		return fmt.Errorf("does not answer: %w", err)
	}
	if len(brokers) != n {
		return fmt.Errorf("knows %d of %d brokers", len(brokers), n)
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
