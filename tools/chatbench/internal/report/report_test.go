package report

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kchat/kchat/tools/chatbench/internal/harness"
)

func summary(p99 float64) harness.Summary {
	r := harness.NewRecorder()
	t0 := time.Now()
	for i := range 100 {
		r.Record(t0, t0.Add(time.Duration(float64(i+1)/100*p99*float64(time.Millisecond))))
	}
	return r.Summary()
}

func TestTableJSONAndPlots(t *testing.T) {
	r := &Result{Tool: "chatbench", Mode: "smoke", StartedAt: time.Now(), Machine: MachineInfo(), Git: GitInfo(".")}
	r.Add(
		harness.NewFigure("ingest", "max rate p99<50ms", "msg/s", 3000, "kafka-go direct", harness.F(12000), harness.Target{Kind: harness.RatioAtLeast, Limit: 0.75}),
		harness.NewFigure("connections", "RSS per idle conn", "KiB", 20, "", nil, harness.Target{Kind: harness.ValueAtMost, Limit: 24}),
	)
	sc := r.Scenario("e2e")
	sc.Series = []Series{
		{Name: "e2e", Steps: []harness.Step{{Rate: 500, Latency: summary(20)}, {Rate: 2000, Latency: summary(40)}}},
		{Name: "raw hop", Steps: []harness.Step{{Rate: 500, Latency: summary(5)}, {Rate: 2000, Latency: summary(8)}}},
	}
	var buf bytes.Buffer
	PrintTable(&buf, r.Figures)
	out := buf.String()
	for _, want := range []string{"0.25×", "≥ 0.75×", "NO", "≤ 24 KiB", "yes", "12000 msg/s (kafka-go direct)"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if md := Markdown(r.Figures); !strings.HasPrefix(md, "| scenario |") || strings.Count(md, "\n") < 4 {
		t.Errorf("markdown:\n%s", md)
	}
	if r.Machine.Cores < 1 || r.Machine.GoVersion == "" {
		t.Errorf("machine %+v", r.Machine)
	}
	dir := t.TempDir()
	path, err := r.Write(dir, "x")
	if err != nil {
		t.Fatal(err)
	}
	back, err := Load(path)
	if err != nil || len(back.Figures) != 2 || *back.Figures[0].Ratio != 0.25 {
		t.Fatalf("round trip: %v %+v", err, back)
	}
	files, err := r.Plots(dir, "x")
	if err != nil || len(files) != 4 {
		t.Fatalf("plots: %v %v", files, err)
	}
	for _, f := range files {
		if st, err := os.Stat(f); err != nil || st.Size() < 1000 {
			t.Errorf("%s: %v", f, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "latest.json")); err == nil {
		t.Error("latest.json written: a byte-identical copy of the run's <stamp>.json")
	}
}
