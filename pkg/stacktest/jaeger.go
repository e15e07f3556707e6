package stacktest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/kchat/kchat/pkg/localstack"
)

// Jaeger is a trace backend started for one test: Jaeger all-in-one (memory storage) on
// free ports, as a real process.
type Jaeger struct {
	Ports    localstack.JaegerPorts
	QueryURL string // http://127.0.0.1:<query port>
	// Env points a service at it (OTEL_EXPORTER_OTLP_ENDPOINT, a short export delay).
	Env []string
}

// StartJaeger builds Jaeger on first use (pkg/localstack.InstallJaeger: minutes, once per
// machine, cached in .cache/bin), starts it and waits until its query API answers. A
// Jaeger that cannot be built or started fails the test with the reason; it never skips.
func (e *Env) StartJaeger(t testing.TB) *Jaeger {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	bin, err := localstack.InstallJaeger(ctx, e.Root, filepath.Join(e.Root, ".cache"), nil)
	if err != nil {
		t.Fatalf("stacktest: the trace backend is needed and could not be installed: %v", err)
	}
	p := localstack.JaegerPorts{OTLPHTTP: FreePort(t), Query: FreePort(t), QueryGRPC: FreePort(t)}
	cfg := filepath.Join(t.TempDir(), "jaeger.yaml")
	if err := localstack.WriteJaegerConfig(cfg, p, 10000); err != nil {
		t.Fatal(err)
	}
	cmd := localstack.JaegerCommand(bin, cfg)
	e.Start(t, "jaeger", cmd.Path, nil, cmd.Args[1:]...)
	j := &Jaeger{Ports: p, QueryURL: fmt.Sprintf("http://127.0.0.1:%d", p.Query), Env: localstack.JaegerEnv(p, 100*time.Millisecond)}
	WaitHTTP(t, j.QueryURL+"/api/services", time.Minute)
	return j
}

// JaegerTrace is a trace as Jaeger's query API returns it (/api/traces).
type JaegerTrace struct {
	TraceID   string                   `json:"traceID"`
	Spans     []JaegerSpan             `json:"spans"`
	Processes map[string]JaegerProcess `json:"processes"`
}

// JaegerSpan is one span of a JaegerTrace; times are in microseconds.
type JaegerSpan struct {
	TraceID       string `json:"traceID"`
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	References    []struct {
		RefType string `json:"refType"`
		TraceID string `json:"traceID"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	StartTime int64       `json:"startTime"`
	Duration  int64       `json:"duration"`
	Tags      []JaegerTag `json:"tags"`
	ProcessID string      `json:"processID"`
}

// JaegerProcess is the process (service and resource attributes) that recorded spans.
type JaegerProcess struct {
	ServiceName string      `json:"serviceName"`
	Tags        []JaegerTag `json:"tags"`
}

// JaegerTag is a span or process attribute.
type JaegerTag struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Value any    `json:"value"`
}

// Tag returns the value of key among tags as text ("" if absent).
func Tag(tags []JaegerTag, key string) string {
	for _, tg := range tags {
		if tg.Key == key {
			return fmt.Sprint(tg.Value)
		}
	}
	return ""
}

// Parent returns the span id s is a child of ("" for a root).
func (s JaegerSpan) Parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

// FindTraces asks Jaeger for the traces of service that have a span with every tag in
// tags, within the last hour.
func (j *Jaeger) FindTraces(ctx context.Context, service string, tags map[string]string) ([]JaegerTrace, error) {
	tj, err := json.Marshal(tags)
	if err != nil {
		return nil, err
	}
	q := url.Values{"service": {service}, "tags": {string(tj)}, "lookback": {"1h"}, "limit": {"20"}}
	return j.get(ctx, "/api/traces?"+q.Encode())
}

// Trace fetches one trace by id.
func (j *Jaeger) Trace(ctx context.Context, traceID string) (JaegerTrace, error) {
	ts, err := j.get(ctx, "/api/traces/"+traceID)
	if err != nil {
		return JaegerTrace{}, err
	}
	if len(ts) != 1 {
		return JaegerTrace{}, fmt.Errorf("jaeger: %d traces with id %s", len(ts), traceID)
	}
	return ts[0], nil
}

func (j *Jaeger) get(ctx context.Context, path string) ([]JaegerTrace, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.QueryURL+path, nil)
	if err != nil {
		return nil, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusNotFound {
		return nil, nil
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jaeger: GET %s: %s", path, res.Status)
	}
	var body struct {
		Data []JaegerTrace `json:"data"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("jaeger: GET %s: %w", path, err)
	}
	return body.Data, nil
}
