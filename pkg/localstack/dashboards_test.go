package localstack

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The Grafana dashboards in deploy/grafana, like the Prometheus rules, live in no Go
// module, so they are checked here next to rules_test.go, whose helpers (loadRules,
// metricSource, registeredIn, promtool) they share.

// Only the fields below may appear in a dashboard file (decoded with
// DisallowUnknownFields): a misspelt key such as "expre" would otherwise be dropped by
// Grafana without a word. Panel options and field configs differ per panel type and are
// left to Grafana.
type dashboard struct {
	UID           string                    `json:"uid"`
	Title         string                    `json:"title"`
	Description   string                    `json:"description"`
	Tags          []string                  `json:"tags"`
	Timezone      string                    `json:"timezone"`
	SchemaVersion int                       `json:"schemaVersion"`
	Version       int                       `json:"version"`
	Editable      bool                      `json:"editable"`
	GraphTooltip  int                       `json:"graphTooltip"`
	Refresh       string                    `json:"refresh"`
	Time          struct{ From, To string } `json:"time"`
	Templating    struct {
		List []json.RawMessage `json:"list"`
	} `json:"templating"`
	Annotations struct {
		List []json.RawMessage `json:"list"`
	} `json:"annotations"`
	Links  []json.RawMessage `json:"links"`
	Panels []panel           `json:"panels"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID          int            `json:"id"`
	Type        string         `json:"type"`
	Title       string         `json:"title"`
	Description string         `json:"description"`
	Datasource  *datasourceRef `json:"datasource"`
	GridPos     struct {
		H int `json:"h"`
		W int `json:"w"`
		X int `json:"x"`
		Y int `json:"y"`
	} `json:"gridPos"`
	FieldConfig json.RawMessage `json:"fieldConfig"`
	Options     json.RawMessage `json:"options"`
	Targets     []struct {
		RefID        string         `json:"refId"`
		Datasource   *datasourceRef `json:"datasource"`
		EditorMode   string         `json:"editorMode"`
		Expr         string         `json:"expr"`
		LegendFormat string         `json:"legendFormat"`
		Range        bool           `json:"range"`
		Instant      bool           `json:"instant"`
	} `json:"targets"`
	// Rows only.
	Collapsed bool    `json:"collapsed"`
	Panels    []panel `json:"panels"`
}

func decodeDashboard(b []byte) (dashboard, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var d dashboard
	if err := dec.Decode(&d); err != nil {
		return d, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return d, errors.New("data after the dashboard object")
	}
	return d, nil
}

// grafanaDir returns deploy/grafana and the uid of the provisioned Prometheus datasource,
// after checking the provisioning files against each other and docker-compose.yml.
func grafanaDir(t *testing.T, root string) (dir, dsUID string, dashboardFiles []string) {
	t.Helper()
	dir = filepath.Join(root, "deploy", "grafana")
	var ds struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name, UID, Type, URL, Access string
		} `yaml:"datasources"`
	}
	readYAML(t, filepath.Join(dir, "provisioning", "datasources", "prometheus.yaml"), &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].UID == "" ||
		ds.Datasources[0].URL != "http://prometheus:9090" {
		t.Fatalf("provisioning/datasources/prometheus.yaml: want one prometheus datasource with a uid and url http://prometheus:9090, got %+v", ds.Datasources)
	}
	var prov struct {
		Providers []struct {
			Name, Type string
			Options    struct{ Path string } `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, filepath.Join(dir, "provisioning", "dashboards", "kchat.yaml"), &prov)
	if len(prov.Providers) != 1 || prov.Providers[0].Type != "file" || prov.Providers[0].Options.Path == "" {
		t.Fatalf("provisioning/dashboards/kchat.yaml: want one file provider with a path, got %+v", prov.Providers)
	}
	path := prov.Providers[0].Options.Path

	// Compose must mount what the provisioning files name (composecheck checks that
	// the mount sources exist, not where they land).
	var compose struct {
		Services map[string]struct {
			Volumes     []string          `yaml:"volumes"`
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	readYAML(t, filepath.Join(root, "docker-compose.yml"), &compose)
	g, ok := compose.Services["grafana"]
	if !ok {
		t.Fatal("docker-compose.yml has no grafana service")
	}
	for _, want := range []string{
		"./deploy/grafana/dashboards:" + path + ":ro",
		"./deploy/grafana/provisioning/datasources:/etc/grafana/provisioning/datasources:ro",
		"./deploy/grafana/provisioning/dashboards:/etc/grafana/provisioning/dashboards:ro",
	} {
		if !slices.Contains(g.Volumes, want) {
			t.Errorf("docker-compose.yml: grafana does not mount %s (volumes: %v)", want, g.Volumes)
		}
	}
	dashboardFiles, err := filepath.Glob(filepath.Join(dir, "dashboards", "*.json"))
	if err != nil || len(dashboardFiles) == 0 {
		t.Fatalf("no dashboards in %s/dashboards (%v)", dir, err)
	}
	if home := g.Environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]; home != "" {
		rel, ok := strings.CutPrefix(home, path+"/")
		if _, err := os.Stat(filepath.Join(dir, "dashboards", rel)); !ok || err != nil {
			t.Errorf("docker-compose.yml: the home dashboard %s is not one of deploy/grafana/dashboards mounted at %s", home, path)
		}
	}
	return dir, ds.Datasources[0].UID, dashboardFiles
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestDashboards checks every panel of every dashboard in deploy/grafana/dashboards:
// strict JSON, a title, the provisioned datasource on the panel and on each target, at
// least one query, each query valid PromQL (promtool parses them all) and naming only
// metrics that exist (knownMetric).
func TestDashboards(t *testing.T) {
	root := repoRoot(t)
	dir, dsUID, files := grafanaDir(t, root)
	known := newMetricCatalog(t, root)

	type query struct{ where, expr string }
	var queries []query
	uids := map[string]string{}
	for _, file := range files {
		name := filepath.Base(file)
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		d, err := decodeDashboard(b)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if d.UID == "" || d.Title == "" {
			t.Errorf("%s: needs a uid and a title", name)
		}
		if other, dup := uids[d.UID]; dup {
			t.Errorf("%s: uid %q is also %s's", name, d.UID, other)
		}
		uids[d.UID] = name
		if d.SchemaVersion < 36 || d.SchemaVersion > 41 {
			t.Errorf("%s: schemaVersion %d, want one Grafana 11 reads without migrating (36..41)", name, d.SchemaVersion)
		}
		var all []panel
		for _, p := range d.Panels {
			all = append(all, p)
			all = append(all, p.Panels...) // a collapsed row holds its panels
		}
		ids := map[int]bool{}
		dataPanels := 0
		for _, p := range all {
			where := fmt.Sprintf("%s: panel %d %q", name, p.ID, p.Title)
			if ids[p.ID] || p.ID == 0 {
				t.Errorf("%s: id missing or not unique", where)
			}
			ids[p.ID] = true
			if p.Title == "" {
				t.Errorf("%s: no title", where)
			}
			if p.GridPos.W < 1 || p.GridPos.H < 1 || p.GridPos.X < 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("%s: gridPos %+v outside the 24-column grid", where, p.GridPos)
			}
			if p.Type == "row" {
				if len(p.Targets) > 0 {
					t.Errorf("%s: a row with queries", where)
				}
				continue
			}
			if len(p.Panels) > 0 {
				t.Errorf("%s: only rows hold panels", where)
			}
			dataPanels++
			if p.Datasource == nil || p.Datasource.UID != dsUID || p.Datasource.Type != "prometheus" {
				t.Errorf("%s: datasource %+v, want the provisioned prometheus uid %q", where, p.Datasource, dsUID)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: no query", where)
			}
			refs := map[string]bool{}
			for _, q := range p.Targets {
				where := where + " target " + q.RefID
				if q.RefID == "" || refs[q.RefID] {
					t.Errorf("%s: refId missing or not unique", where)
				}
				refs[q.RefID] = true
				if q.Datasource == nil || q.Datasource.UID != dsUID {
					t.Errorf("%s: datasource %+v, want uid %q", where, q.Datasource, dsUID)
				}
				expr, err := expandGrafanaVariables(q.Expr)
				if err != nil || strings.TrimSpace(expr) == "" {
					t.Errorf("%s: expression %q: %v", where, q.Expr, err)
					continue
				}
				queries = append(queries, query{where, expr})
				names := promqlMetricNames(expr)
				if len(names) == 0 {
					t.Errorf("%s: %q names no metric", where, q.Expr)
				}
				for _, n := range names {
					if why := known.check(n); why != "" {
						t.Errorf("%s: %s %s", where, n, why)
					}
				}
			}
		}
		if dataPanels == 0 {
			t.Errorf("%s: no panel with queries", name)
		}
	}
	if len(queries) == 0 {
		t.Fatal("no queries found")
	}

	// promtool parses every expression as a recording rule: one group per query, so
	// that its message names the panel.
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	type group struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	}
	var rf struct {
		Groups []group `yaml:"groups"`
	}
	for i, q := range queries {
		rf.Groups = append(rf.Groups, group{Name: fmt.Sprintf("%d %s", i, q.where), Rules: []rule{{"dashboard:query", q.expr}}})
	}
	b, err := yaml.Marshal(rf)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	promtool(t, dir, "check", "rules", tmp)
	t.Logf("%d dashboards, %d queries checked", len(files), len(queries))
}

var grafanaVariable = regexp.MustCompile(`\$\{?(\w+)\}?`)

// expandGrafanaVariables replaces Grafana's interval variables by a duration so that the
// expression is PromQL; the dashboards use no other variable, and an unknown one is an
// error rather than something to guess.
func expandGrafanaVariables(expr string) (string, error) {
	var err error
	out := grafanaVariable.ReplaceAllStringFunc(expr, func(v string) string {
		switch grafanaVariable.FindStringSubmatch(v)[1] {
		case "__rate_interval", "__interval", "__range":
			return "5m"
		}
		err = fmt.Errorf("unknown variable %s", v)
		return v
	})
	return out, err
}

// promqlMetricNames returns the metric names a PromQL expression selects, sorted and
// without duplicates.
//
// It is a careful regexp scan, not the PromQL parser: no module here depends on
// github.com/prometheus/prometheus, and its parser would pull in much of Prometheus for
// this one test (promtool, which TestDashboards also runs, parses the expressions for
// validity). The scan removes, in order: string literals (label values, regexps),
// label matchers {...}, ranges and subqueries [...], and the label lists of
// by/without/on/ignoring/group_left/group_right; then it drops numbers and durations,
// identifiers followed by "(" (functions and aggregations) and PromQL's keywords. What
// remains are metric names. A name given only as {__name__="..."} is not seen.
func promqlMetricNames(expr string) []string {
	s := promqlStrings.ReplaceAllString(expr, `""`)
	s = promqlBraces.ReplaceAllString(s, " ")
	s = promqlBrackets.ReplaceAllString(s, " ")
	s = promqlLabelLists.ReplaceAllString(s, " ")
	seen := map[string]bool{}
	for _, m := range promqlTokens.FindAllStringSubmatchIndex(s, -1) {
		if m[2] < 0 { // a number or a duration
			continue
		}
		id := s[m[2]:m[3]]
		if promqlKeywords[strings.ToLower(id)] || strings.HasPrefix(strings.TrimLeft(s[m[3]:], " \t\n"), "(") {
			continue
		}
		seen[id] = true
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

var (
	promqlStrings    = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	promqlBraces     = regexp.MustCompile(`\{[^}]*\}`)
	promqlBrackets   = regexp.MustCompile(`\[[^\]]*\]`)
	promqlLabelLists = regexp.MustCompile(`(?i)\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	// A number (with exponent, hex, or duration units such as 1h30m) or an identifier.
	promqlTokens   = regexp.MustCompile(`(?i)\b0x[0-9a-f]+|(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?[a-z]*(?:\d+[a-z]+)*|([a-zA-Z_:][a-zA-Z0-9_:]*)`)
	promqlKeywords = map[string]bool{"and": true, "or": true, "unless": true, "by": true, "without": true, "on": true,
		"ignoring": true, "group_left": true, "group_right": true, "offset": true, "bool": true, "inf": true, "nan": true,
		"atan2": true}
)

// metricCatalog knows which metric names exist: registered by the services' Go code
// (kchat_*), recorded by a rule in deploy/prometheus/rules, exported by the brokers' JMX
// exporter (kafka_*), or Prometheus's own up.
type metricCatalog struct {
	source   string          // the services' Go source (metricSource)
	recorded map[string]bool // recording rules
	kafka    []exporterRule
}

// exporterRule is one rule of jmx-exporter.yaml, as a regexp over the names it can emit
// with its "$n" replaced by the pattern's groups. open is set when a group is not a
// fixed list of names (such as (\w+)): the name is then accepted only for the MBeans
// in kafkaMBeans.
type exporterRule struct {
	name *regexp.Regexp
	open bool
}

// kafkaMBeans are the MBean names behind the exporter rules whose pattern takes any
// name, lowercased as the exporter's lowercaseOutputName does: the BrokerTopicMetrics
// meters (without "PerSec") and the KafkaController gauges of Kafka 4.0.2, as found in
// its jars (kafka-server-common, kafka-metadata). Kafka has no messages-out meter. The
// names the alert rules read are also checked against a running exporter by
// TestAlerts_under_replicated_fires_and_resolves.
var kafkaMBeans = map[string]bool{
	"messagesin": true, "bytesin": true, "bytesout": true, "bytesrejected": true,
	"replicationbytesin": true, "replicationbytesout": true, "reassignmentbytesin": true, "reassignmentbytesout": true,
	"failedproducerequests": true, "failedfetchrequests": true, "totalproducerequests": true, "totalfetchrequests": true,
	"activecontrollercount": true, "offlinepartitionscount": true, "globalpartitioncount": true, "globaltopiccount": true,
	"activebrokercount": true, "fencedbrokercount": true,
}

var (
	groupRef    = regexp.MustCompile(`\$(\d)`)
	closedGroup = regexp.MustCompile(`^[A-Za-z0-9_|]+$`) // a fixed list of names
)

func newMetricCatalog(t *testing.T, root string) *metricCatalog {
	t.Helper()
	c := &metricCatalog{source: metricSource(t, root), recorded: map[string]bool{}}
	for _, rf := range loadRules(t, filepath.Join(root, "deploy", "prometheus")) {
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				if r.Record != "" {
					c.recorded[r.Record] = true
				}
			}
		}
	}
	var cfg struct {
		LowercaseOutputName bool `yaml:"lowercaseOutputName"`
		Rules               []struct {
			Pattern string `yaml:"pattern"`
			Name    string `yaml:"name"`
		} `yaml:"rules"`
	}
	readYAML(t, filepath.Join(root, "deploy", "prometheus", "jmx-exporter.yaml"), &cfg)
	if !cfg.LowercaseOutputName {
		t.Fatal("jmx-exporter.yaml: this check assumes lowercaseOutputName: true")
	}
	for _, r := range cfg.Rules {
		groups := captureGroups(r.Pattern)
		open := false
		var name strings.Builder
		rest := r.Name
		for {
			m := groupRef.FindStringSubmatchIndex(rest)
			if m == nil {
				name.WriteString(regexp.QuoteMeta(rest))
				break
			}
			name.WriteString(regexp.QuoteMeta(rest[:m[0]]))
			i := int(rest[m[2]] - '0')
			if i < 1 || i > len(groups) {
				t.Fatalf("jmx-exporter.yaml: %s refers to group %d of %s", r.Name, i, r.Pattern)
			}
			if closedGroup.MatchString(groups[i-1]) {
				name.WriteString("(?:" + strings.ToLower(groups[i-1]) + ")")
			} else {
				open = true
				name.WriteString(`(\w+)`)
			}
			rest = rest[m[1]:]
		}
		c.kafka = append(c.kafka, exporterRule{regexp.MustCompile("^" + name.String() + "$"), open})
	}
	if len(c.kafka) == 0 || len(c.recorded) == 0 {
		t.Fatal("no exporter rules or no recording rules found")
	}
	return c
}

// captureGroups returns the text of each capturing group of a regexp, in order.
func captureGroups(pattern string) []string {
	type open struct{ group, start int } // group -1: not capturing
	var out []string
	var stack []open
	escaped, class := false, false
	for i, r := range pattern {
		switch {
		case escaped:
			escaped = false
		case r == '\\':
			escaped = true
		case class:
			class = r != ']'
		case r == '[':
			class = true
		case r == '(' && strings.HasPrefix(pattern[i:], "(?"):
			stack = append(stack, open{-1, i})
		case r == '(':
			stack = append(stack, open{len(out), i + 1})
			out = append(out, "")
		case r == ')' && len(stack) > 0:
			o := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if o.group >= 0 {
				out[o.group] = pattern[o.start:i]
			}
		}
	}
	return out
}

// check returns "" when the metric exists, else why not.
func (c *metricCatalog) check(n string) string {
	switch {
	case n == "up":
		return ""
	case c.recorded[n]:
		return ""
	case strings.Contains(n, ":"):
		return "is no recording rule in deploy/prometheus/rules"
	case strings.HasPrefix(n, "kchat_"):
		if registeredIn(c.source, n) {
			return ""
		}
		return "is registered by no code under pkg/ or services/"
	case strings.HasPrefix(n, "kafka_"):
		for _, r := range c.kafka {
			m := r.name.FindStringSubmatch(n)
			if m == nil {
				continue
			}
			if !r.open || kafkaMBeans[m[1]] {
				return ""
			}
			return fmt.Sprintf("matches an exporter rule, but %q is not a Kafka MBean this check knows (kafkaMBeans)", m[1])
		}
		return "is exported by no rule of deploy/prometheus/jmx-exporter.yaml"
	}
	return "is neither a kchat_*, kafka_* nor recorded metric, nor up"
}

func TestDashboards_metric_names_in_promql(t *testing.T) {
	cases := []struct {
		expr string
		want []string
	}{
		{`up`, []string{"up"}},
		{`kchat:consumer_lag:sum`, []string{"kchat:consumer_lag:sum"}},
		{`sum by (consumer, outcome) (rate(kchat_consumer_messages_total{outcome="ok", topic=~"a|b"}[5m]))`, []string{"kchat_consumer_messages_total"}},
		{`histogram_quantile(0.99, sum by (le) (rate(kchat_gateway_publish_seconds_bucket{topic="chat.submitted"}[1h30m])))`, []string{"kchat_gateway_publish_seconds_bucket"}},
		{`sum(rate(a_total[5m])) without (instance) / on (job) group_left (x) b offset 5m > bool 1e3`, []string{"a_total", "b"}},
		{`max_over_time(g[10m:1m]) and ignoring(le) h{l='}{('} unless Inf < NaN`, []string{"g", "h"}},
		{`sum(increase(kafka_server_brokertopicmetrics_messagesin_total{topic=~"(.+)?chat\\.dlq"}[1h]))`, []string{"kafka_server_brokertopicmetrics_messagesin_total"}},
		{`count(x) by (job) + 0x1F * .5`, []string{"x"}},
	}
	for _, c := range cases {
		if got := promqlMetricNames(c.expr); !slices.Equal(got, c.want) {
			t.Errorf("promqlMetricNames(%q) = %v, want %v", c.expr, got, c.want)
		}
	}
}

// The check must be able to fail: misspelt and made-up names of every kind are refused.
func TestDashboards_unknown_metrics_are_refused(t *testing.T) {
	c := newMetricCatalog(t, repoRoot(t))
	for _, n := range []string{"up", "kchat_gateway_connections", "kchat_gateway_publish_seconds_bucket", "kchat:consumer_lag:sum",
		"kafka_server_replicamanager_underreplicatedpartitions", "kafka_server_brokertopicmetrics_bytesout_total",
		"kafka_controller_kafkacontroller_activecontrollercount", "kafka_network_requestmetrics_requests_total"} {
		if why := c.check(n); why != "" {
			t.Errorf("%s: %s, want it known", n, why)
		}
	}
	for _, n := range []string{"kchat_gateway_conections", "kchat_gateway_connections_bucket", "kchat:consumer_lag:max",
		"kafka_server_replicamanager_underreplicated", "kafka_server_brokertopicmetrics_messagesout_total",
		"kafka_server_brokertopicmetrics_messagesin", "kafka_log_size", "jvm_memory_used_bytes"} {
		if c.check(n) == "" {
			t.Errorf("%s is accepted, want it refused", n)
		}
	}
}
