package localstack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// A real Prometheus (Debian's binary) scrapes the JMX exporters of a three-broker
// cluster started by this package and evaluates the repository's Kafka rules: the
// under-replicated alert fires once a broker is SIGKILLed and resolves once it is back.
//
// The cluster is a throwaway one on ports of its own (as in TestDown...), not the shared
// stack: a shared stack may have been started before its brokers carried the agent (make
// test reuses a running one), and killing one of its brokers would disturb whoever uses
// it. The brokers are started by the same code (upKafka, StartBroker) either way.
func TestAlerts_under_replicated_fires_and_resolves(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three Kafka JVMs and Prometheus")
	}
	prometheusBin := needBinary(t, "prometheus")
	root := repoRoot(t)
	began := time.Now()
	st, err := New(throwawayConfig(t, root))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	t.Cleanup(func() { _ = st.Down(context.Background()) })
	if err := os.MkdirAll(st.logDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := st.UpKafka(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster up after %s", time.Since(began).Round(100*time.Millisecond))

	// A replicated topic with a message in it: without partitions nothing can be
	// under-replicated, and the per-topic counters appear with the first message.
	topic := "alerts-test"
	client := &kafka.Client{Addr: kafka.TCP(st.Info().Brokers...), Timeout: 10 * time.Second}
	res, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: 6, ReplicationFactor: 3}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Errors[topic]; err != nil {
		t.Fatal(err)
	}
	w := &kafka.Writer{Addr: kafka.TCP(st.Info().Brokers...), Topic: topic, RequiredAcks: kafka.RequireAll, MaxAttempts: 20}
	defer w.Close()
	if err := waitFor(ctx, time.Minute, "a first message in "+topic, func() error {
		return w.WriteMessages(ctx, kafka.Message{Value: []byte("x")})
	}); err != nil {
		t.Fatal(err)
	}

	prom := startPrometheus(t, prometheusBin, root, st.Info().BrokerMetrics)
	// Rules are evaluated from the start, before the first scrape, so KafkaControllerAbsent
	// (absent(...), for: 2s here) may fire for a moment: the baseline is the state the
	// cluster settles in, polled for, not the first look.
	healthy := func() error {
		if err := prom.expect(ctx, `sum(up{job="kafka"}) == 3 and on() kafka:under_replicated_partitions:sum == 0`); err != nil {
			return err
		}
		if err := prom.expect(ctx, `kafka:active_controllers:sum == 1`); err != nil {
			return fmt.Errorf("%w; per broker: %s", err, prom.raw(ctx, `kafka_controller_kafkacontroller_activecontrollercount`))
		}
		for _, name := range []string{"KafkaUnderReplicatedPartitions", "KafkaControllerAbsent", "KafkaOfflinePartitions", "KafkaBrokerDown"} {
			if state := prom.alertState(ctx, t, name); state != "" {
				return fmt.Errorf("%s is %s", name, state)
			}
		}
		return nil
	}
	if err := waitFor(ctx, time.Minute, "three brokers scraped, one active controller, no alert", healthy); err != nil {
		t.Fatal(err)
	}
	// The rules can only be as good as the names they read: each kafka_* metric they use
	// must be exported by the agent with the repository's config.
	for _, name := range kafkaMetricNames(t, root) {
		if err := waitFor(ctx, 10*time.Second, name+" scraped", func() error {
			return prom.expect(ctx, fmt.Sprintf(`count({__name__=%q})`, name))
		}); err != nil {
			t.Error(err)
		}
	}

	// Kill a broker that is not the quorum leader: the alert is about replicas, and a
	// controller election would only add time.
	cs, err := st.KafkaState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	victim := 1
	if cs.QuorumLeader == victim {
		victim = 2
	}
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_ = st.StartBroker(context.Background(), victim)
		}
	})
	killed := time.Now()
	if err := st.KillBroker(victim); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(ctx, 45*time.Second, "KafkaUnderReplicatedPartitions firing", func() error {
		if s := prom.alertState(ctx, t, "KafkaUnderReplicatedPartitions"); s != "firing" {
			return fmt.Errorf("state %q", s)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("alert fired %s after the kill", time.Since(killed).Round(100*time.Millisecond))

	restartedAt := time.Now()
	if err := st.StartBroker(ctx, victim); err != nil {
		t.Fatal(err)
	}
	restarted = true
	if err := waitFor(ctx, time.Minute, "the alert resolved, the cluster healthy again", healthy); err != nil {
		t.Fatal(err)
	}
	t.Logf("resolved %s after the restart began; test took %s", time.Since(restartedAt).Round(100*time.Millisecond),
		time.Since(began).Round(100*time.Millisecond))
}

// kafkaMetricNames lists the kafka_* metric names the repository's rules read.
func kafkaMetricNames(t *testing.T, root string) []string {
	seen := map[string]bool{}
	var out []string
	for _, rf := range loadRules(t, filepath.Join(root, "deploy", "prometheus")) {
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				for _, n := range regexp.MustCompile(`\bkafka_[a-z_]+\b`).FindAllString(r.Expr, -1) {
					if !seen[n] {
						seen[n] = true
						out = append(out, n)
					}
				}
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("no kafka_* metric in the rules")
	}
	return out
}

type prometheus struct{ base string }

// startPrometheus runs Prometheus on a free port with a 1 s scrape and evaluation
// interval over the brokers' exporters, with the repository's Kafka rules. The rules are
// copied with every "for:" cut to 2 s, so that the test waits seconds instead of the
// minutes an operator wants; the expressions are the repository's, unchanged.
func startPrometheus(t *testing.T, bin, root string, targets []string) *prometheus {
	t.Helper()
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join(root, "deploy", "prometheus", "rules", "kafka.yml"))
	if err != nil {
		t.Fatal(err)
	}
	forLine := regexp.MustCompile(`(?m)^(\s+for:)\s*\S+\s*$`)
	if !forLine.Match(src) {
		t.Fatal("rules/kafka.yml has no for: to shorten; update this test")
	}
	rules := filepath.Join(dir, "kafka.yml")
	if err := os.WriteFile(rules, forLine.ReplaceAll(src, []byte("$1 2s")), 0o644); err != nil {
		t.Fatal(err)
	}
	quoted := make([]string, len(targets))
	for i, tg := range targets {
		quoted[i] = strconv.Quote(tg)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: kafka
    static_configs:
      - targets: [%s]
`, rules, strings.Join(quoted, ", "))
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	logPath := filepath.Join(dir, "prometheus.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				t.Logf("prometheus log (tail):\n%s", lastLines(string(b), 20))
			}
		}
	})
	p := &prometheus{base: "http://" + addr}
	err = waitFor(context.Background(), 30*time.Second, "prometheus ready", func() error {
		resp, err := http.Get(p.base + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *prometheus) get(ctx context.Context, path string, into any) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(into)
}

// expect returns nil when the instant query returns at least one sample.
func (p *prometheus) expect(ctx context.Context, query string) error {
	var r struct {
		Data struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := p.get(ctx, "/api/v1/query?query="+url.QueryEscape(query), &r); err != nil {
		return err
	}
	if len(r.Data.Result) == 0 {
		return fmt.Errorf("no result for %s", query)
	}
	return nil
}

// raw returns the result of an instant query as Prometheus sent it, for messages.
func (p *prometheus) raw(ctx context.Context, query string) string {
	var r struct {
		Data struct {
			Result json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := p.get(ctx, "/api/v1/query?query="+url.QueryEscape(query), &r); err != nil {
		return err.Error()
	}
	return string(r.Data.Result)
}

// alertState is "pending", "firing", or "" when the alert is not active.
func (p *prometheus) alertState(ctx context.Context, t *testing.T, name string) string {
	var r struct {
		Data struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		} `json:"data"`
	}
	if err := p.get(ctx, "/api/v1/alerts", &r); err != nil {
		t.Logf("alerts: %v", err)
		return "unknown"
	}
	state := ""
	for _, a := range r.Data.Alerts {
		if a.Labels["alertname"] == name && (state == "" || a.State == "firing") {
			state = a.State
		}
	}
	return state
}
