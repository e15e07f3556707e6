package localstack

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The Prometheus rules in deploy/prometheus live in no Go module, so their checks run
// here, next to the code that starts the brokers whose metrics they read.

// needBinary returns the path of a Prometheus binary or fails: these checks are part of
// make test, and CI installs the package (.ci/run), so a missing binary is an error to
// fix, not a reason to skip.
func needBinary(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found on PATH: install Debian's prometheus package (apt-get install prometheus; .ci/run does) to check the alert rules", name)
	}
	return path
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func loadRules(t *testing.T, dir string) map[string]ruleFile {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "rules", "*.yml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no rule files in %s/rules (%v)", dir, err)
	}
	out := map[string]ruleFile{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var rf ruleFile
		if err := yaml.Unmarshal(b, &rf); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		out[p] = rf
	}
	return out
}

func promtool(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command(needBinary(t, "promtool"), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestPrometheusRules runs promtool over the configuration, the rules and their unit
// tests (deploy/prometheus/tests), and checks what promtool does not: every alert has a
// severity, a summary and a description, and a unit test that names it.
func TestPrometheusRules(t *testing.T) {
	dir := filepath.Join(repoRoot(t), "deploy", "prometheus")
	rules, _ := filepath.Glob(filepath.Join(dir, "rules", "*.yml"))
	tests, _ := filepath.Glob(filepath.Join(dir, "tests", "*.yml"))
	if len(rules) == 0 || len(tests) == 0 {
		t.Fatalf("want rule files and promtool tests under %s, found %d and %d", dir, len(rules), len(tests))
	}
	promtool(t, dir, "check", "config", "prometheus.yml")
	promtool(t, dir, append([]string{"check", "rules"}, rules...)...)
	promtool(t, dir, append([]string{"test", "rules"}, tests...)...)

	var tested []string
	for _, p := range tests {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`(?m)^\s*alertname:\s*(\S+)\s*$`).FindAllStringSubmatch(string(b), -1) {
			tested = append(tested, m[1])
		}
	}
	alerts := 0
	for path, rf := range loadRules(t, dir) {
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				if r.Alert == "" {
					continue
				}
				alerts++
				where := filepath.Base(path) + ": " + r.Alert
				if s := r.Labels["severity"]; s != "warning" && s != "critical" {
					t.Errorf("%s: severity %q, want warning or critical", where, s)
				}
				if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
					t.Errorf("%s: needs both a summary and a description annotation", where)
				}
				if !slices.Contains(tested, r.Alert) {
					t.Errorf("%s: no promtool test case names it (deploy/prometheus/tests)", where)
				}
			}
		}
	}
	if alerts == 0 {
		t.Fatal("no alerting rules found")
	}
}

// TestPrometheusRules_name_service_metrics_that_exist: a rule over a metric that no
// service exports (a typo, a renamed metric) never fires and promtool cannot tell, since
// its unit tests make up their input series. Every kchat_* name in a rule must therefore
// be registered by Go code of the platform. The brokers' kafka_* names are checked
// against a live exporter by TestAlerts_under_replicated_fires_and_resolves.
func TestPrometheusRules_name_service_metrics_that_exist(t *testing.T) {
	root := repoRoot(t)
	source := metricSource(t, root)
	names := map[string]bool{}
	for _, rf := range loadRules(t, filepath.Join(root, "deploy", "prometheus")) {
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				for _, n := range regexp.MustCompile(`\bkchat_[a-z_]+\b`).FindAllString(r.Expr, -1) {
					names[n] = true
				}
			}
		}
	}
	if len(names) == 0 {
		t.Fatal("no kchat_* metric in the rules")
	}
	for n := range names {
		if !registeredIn(source, n) {
			t.Errorf("the rules use %s, which no code under pkg/ or services/ registers", n)
		}
	}
}

// metricSource returns the non-test Go source under pkg/ and services/, where every
// kchat_* metric is registered.
func metricSource(t *testing.T, root string) string {
	t.Helper()
	var source strings.Builder
	for _, top := range []string{"pkg", "services"} {
		err := filepath.WalkDir(filepath.Join(root, top), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			b, err := os.ReadFile(p)
			source.Write(b)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return source.String()
}

// registeredIn reports whether source names the metric n as a string literal. A
// histogram's series carry suffixes (_bucket, _count, _sum) its registered name does
// not; those are accepted only for a name registered with HistogramOpts (or
// SummaryOpts for _count and _sum).
func registeredIn(source, n string) bool {
	if strings.Contains(source, `"`+n+`"`) {
		return true
	}
	for suffix, kinds := range map[string]string{"_bucket": "Histogram", "_count": "Histogram|Summary", "_sum": "Histogram|Summary"} {
		if b, ok := strings.CutSuffix(n, suffix); ok &&
			regexp.MustCompile(`(?:`+kinds+`)Opts\{\s*Name:\s*"`+regexp.QuoteMeta(b)+`"`).MatchString(source) {
			return true
		}
	}
	return false
}
