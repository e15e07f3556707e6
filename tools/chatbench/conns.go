package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/kchat/kchat/tools/chatbench/internal/harness"
	"github.com/kchat/kchat/tools/chatbench/internal/procstat"
	"github.com/kchat/kchat/tools/chatbench/internal/report"
)

// fdLimit is the soft open-file limit of pid.
func fdLimit(pid int) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Max open files"); ok {
			fs := strings.Fields(rest)
			if len(fs) > 0 {
				n, _ := strconv.Atoi(fs[0])
				return n
			}
		}
	}
	return 0
}

type connMeasure struct {
	n                      int
	rssBefore, rssAfter    int64
	gorBefore, gorAfter    float64
	kibPerConn, gorPerConn float64
	dialSeconds            float64
}

// measureConns opens n idle connections to url and reports the server's RSS and
// goroutine growth per connection.
func (b *Bench) measureConns(ctx context.Context, pid int, url string, users []user, goroutines func() (float64, error)) (connMeasure, error) {
	m := connMeasure{n: len(users)}
	settle := 3 * time.Second
	if b.plan.Mode == "smoke" {
		settle = 500 * time.Millisecond
	}
	var err error
	if m.rssBefore, err = procstat.RSS(pid); err != nil {
		return m, err
	}
	if m.gorBefore, err = goroutines(); err != nil {
		return m, err
	}
	t0 := time.Now()
	p, err := dial(ctx, []string{url}, users, 100)
	if err != nil {
		return m, err
	}
	defer p.close()
	m.dialSeconds = harness.Round(time.Since(t0).Seconds())
	sleepCtx(ctx, settle)
	if alive := p.alive(); alive < len(users) {
		return m, fmt.Errorf("%d of %d connections were closed while idle", len(users)-alive, len(users))
	}
	if m.rssAfter, err = procstat.RSS(pid); err != nil {
		return m, err
	}
	if m.gorAfter, err = goroutines(); err != nil {
		return m, err
	}
	m.kibPerConn = harness.Round(float64(m.rssAfter-m.rssBefore) / 1024 / float64(m.n))
	m.gorPerConn = harness.Round((m.gorAfter - m.gorBefore) / float64(m.n))
	return m, nil
}

// scenarioConnections: 10,000 idle WebSocket connections on gateway A: RSS growth and
// goroutines per connection (from the gateway's go_goroutines), against the raw
// coder/websocket server holding the same connections.
func (b *Bench) scenarioConnections(ctx context.Context, sc *report.Scenario) error {
	pid := b.pids["gateway-a"]
	if pid == 0 {
		return fmt.Errorf("gateway A's process not found (is it listening on %s?)", b.cfg.Gateways[0])
	}
	n := b.plan.Conns
	limit := raiseFileLimit()
	if gl := fdLimit(pid); gl > 0 && gl-200 < n {
		sc.Warnings = append(sc.Warnings, fmt.Sprintf("gateway A's open-file limit is %d: measuring %d connections", gl, gl-200))
		n = gl - 200
	}
	if int(limit)-500 < n {
		sc.Warnings = append(sc.Warnings, fmt.Sprintf("chatbench's open-file limit is %d: measuring %d connections", limit, limit-500))
		n = int(limit) - 500
	}
	users, err := b.users(ctx, "bench-c", n)
	if err != nil {
		return err
	}
	metrics := strings.TrimSuffix(b.cfg.Gateways[0], "/") + "/metrics"
	gw, err := b.measureConns(ctx, pid, wsURL(b.cfg.Gateways[0]), users, func() (float64, error) { return metricValue(metrics, "go_goroutines") })
	if err != nil {
		return err
	}
	sleepCtx(ctx, 2*time.Second) // let the gateway notice the closes before the next run
	raw, err := startRaw()
	if err != nil {
		return err
	}
	rm, rerr := b.measureConns(ctx, raw.cmd.Process.Pid, raw.url(), users, func() (float64, error) {
		s, err := raw.stats()
		return float64(s["goroutines"]), err
	})
	raw.stop()
	if rerr != nil {
		sc.Warnings = append(sc.Warnings, "raw baseline: "+rerr.Error())
	}
	asMap := func(m connMeasure) map[string]any {
		return map[string]any{"connections": m.n, "rss_before_mib": harness.Round(float64(m.rssBefore) / (1 << 20)),
			"rss_after_mib": harness.Round(float64(m.rssAfter) / (1 << 20)), "goroutines_before": m.gorBefore, "goroutines_after": m.gorAfter,
			"kib_per_conn": m.kibPerConn, "goroutines_per_conn": m.gorPerConn, "dial_seconds": m.dialSeconds}
	}
	sc.Data["gateway"] = asMap(gw)
	sc.Data["raw"] = asMap(rm)
	sc.Config = map[string]any{"connections": n, "note": "RSS from /proc/<pid>/status VmRSS after a settle; the Go heap may not have returned garbage yet"}
	var rawKiB, rawGor *float64
	if rerr == nil {
		rawKiB, rawGor = harness.F(rm.kibPerConn), harness.F(rm.gorPerConn)
	}
	f := harness.NewFigure("connections", fmt.Sprintf("RSS per idle conn (%d on gateway A)", n), "KiB", gw.kibPerConn,
		"raw coder/websocket", rawKiB, harness.Target{Kind: harness.ValueAtMost, Limit: 24})
	f.Note = "Centrifugo v6.9.1 reference: 34 KiB"
	b.add(f)
	g := harness.NewFigure("connections", "goroutines per idle conn", "goroutines", gw.gorPerConn, "raw coder/websocket", rawGor)
	g.Note = "Centrifugo v6.9.1 reference: 2"
	b.add(g)
	return nil
}
