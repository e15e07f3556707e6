package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kchat/kchat/tools/chatbench/internal/harness"
	"github.com/kchat/kchat/tools/chatbench/internal/procstat"
	"github.com/kchat/kchat/tools/chatbench/internal/report"
)

// The profile scenario says what one message costs and where: at one rate (1,000 msg/s
// in a full run) through two gateways (send on A, receive on B) and, for comparison, on
// the raw hop with each client, it measures the CPU every process used per delivered
// message, the Kafka requests the brokers served per message and topic, and keeps a pprof
// CPU profile of every Go service (and of chatbench) in the run's results folder.

// Processes in the order the table lists them.
var profileProcs = []string{"kafka-1", "kafka-2", "kafka-3", "postgres", "gateway-a", "gateway-b", "persistence", "fanout",
	"notification", "chatbench", procstat.Other}

var brokerProcs = []string{"kafka-1", "kafka-2", "kafka-3"}

// costWindow measures one profile window.
type costWindow struct {
	b      *Bench
	smp    *procstat.Sampler
	bc     *brokerCounters
	before map[string]float64
	berr   error
	wg     sync.WaitGroup
	mu     sync.Mutex
	files  map[string]string
	errs   []string
	self   *os.File
	usage  procstat.Usage
	kafka  map[string]float64
	reset  []string
	kerr   error
}

// startWindow starts sampling CPU and reading broker counters; with profileDir set it also
// starts a CPU profile of seconds on every Go service and on chatbench itself.
func (b *Bench) startWindow(ctx context.Context, bc *brokerCounters, profileDir string, seconds int) *costWindow {
	w := &costWindow{b: b, bc: bc, files: map[string]string{}}
	w.before, w.berr = bc.snapshot()
	if profileDir != "" {
		for name, base := range b.goServices() {
			w.wg.Add(1)
			go func() {
				defer w.wg.Done()
				path := filepath.Join(profileDir, name+".pprof")
				if err := fetchProfile(ctx, base, seconds, path); err != nil {
					w.fail(fmt.Sprintf("%s profile: %v", name, err))
					return
				}
				w.mu.Lock()
				w.files[name] = path
				w.mu.Unlock()
			}()
		}
		path := filepath.Join(profileDir, "chatbench.pprof")
		if f, err := os.Create(path); err == nil {
			if err := pprof.StartCPUProfile(f); err != nil {
				f.Close()
				w.fail("chatbench profile: " + err.Error())
			} else {
				w.self = f
				w.files["chatbench"] = path
			}
		}
	}
	w.smp = procstat.NewSampler(b.resolvePIDs(), "postgres")
	w.smp.Machine = true
	w.smp.Start()
	return w
}

func (w *costWindow) fail(msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.errs = append(w.errs, msg)
}

// end stops the window (the CPU and counters at once; then it waits for the services'
// profiles, which end on their own clock).
func (w *costWindow) end() {
	w.usage = w.smp.Stop()
	after, err := w.bc.snapshot()
	switch {
	case w.berr != nil:
		w.kerr = w.berr
	case err != nil:
		w.kerr = err
	default:
		w.kafka, w.reset = counterDelta(w.before, after)
	}
	if w.self != nil {
		pprof.StopCPUProfile()
		w.self.Close()
	}
	w.wg.Wait()
}

// costResult is one window's cost per message.
type costResult struct {
	Messages        int64              `json:"messages"`
	WallS           float64            `json:"wall_s"`
	CPUSeconds      map[string]float64 `json:"cpu_seconds"`
	CPUMicrosPerMsg map[string]float64 `json:"cpu_us_per_msg"`
	// Kafka is the brokers' counters over the window (summed over brokers), KafkaPerMsg
	// the same per message; see the scenario's config for what each counts.
	Kafka       map[string]float64 `json:"kafka,omitempty"`
	KafkaPerMsg map[string]float64 `json:"kafka_per_msg,omitempty"`
	KafkaError  string             `json:"kafka_error,omitempty"`
	// KafkaReset are counters that went down during the window (left out, see counterDelta).
	KafkaReset []string `json:"kafka_reset,omitempty"`
	// ClientRequests are the produce requests and fetches the hop's own client counted.
	ClientRequests map[string]float64 `json:"client_requests_per_msg,omitempty"`
	Profiles       map[string]string  `json:"pprof,omitempty"`
	Errors         []string           `json:"errors,omitempty"`
}

func (w *costWindow) result(messages int64, topicFilter func(string) bool) costResult {
	r := costResult{Messages: messages, WallS: harness.Round(w.usage.WallS), CPUSeconds: roundMap(w.usage.CPUSeconds),
		CPUMicrosPerMsg: map[string]float64{}, Profiles: w.files, Errors: w.errs}
	if messages > 0 {
		for name, s := range w.usage.CPUSeconds {
			r.CPUMicrosPerMsg[name] = harness.Round(s * 1e6 / float64(messages))
		}
	}
	if w.kerr != nil {
		r.KafkaError = w.kerr.Error()
		return r
	}
	for _, k := range w.reset {
		if topic, ok := counterTopic(k); !ok || topicFilter(topic) {
			r.KafkaReset = append(r.KafkaReset, k)
		}
	}
	r.Kafka, r.KafkaPerMsg = map[string]float64{}, map[string]float64{}
	for k, v := range w.kafka {
		if topic, ok := counterTopic(k); ok && !topicFilter(topic) {
			continue
		}
		r.Kafka[k] = v
		if messages > 0 {
			r.KafkaPerMsg[k] = harness.Round(v / float64(messages))
		}
	}
	return r
}

// counterTopic is the topic of a "topic/<metric>/<topic>" counter.
func counterTopic(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, "topic/")
	if !ok {
		return "", false
	}
	_, topic, ok := strings.Cut(rest, "/")
	return topic, ok
}

// goServices are the Go services' HTTP bases serving /debug/pprof.
func (b *Bench) goServices() map[string]string {
	out := map[string]string{}
	for i, g := range b.cfg.Gateways[:2] {
		out["gateway-"+string(rune('a'+i))] = strings.TrimSuffix(g, "/")
	}
	for _, name := range []string{"persistence", "fanout", "notification"} {
		if port, ok := b.cfg.Procs[name]; ok {
			out[name] = fmt.Sprintf("http://127.0.0.1:%d", port)
		}
	}
	return out
}

// fetchProfile writes a CPU profile of seconds from base/debug/pprof/profile to path.
func fetchProfile(ctx context.Context, base string, seconds int, path string) error {
	c := http.Client{Timeout: time.Duration(seconds)*time.Second + 30*time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, seconds), nil)
	if err != nil {
		return err
	}
	res, err := c.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		return fmt.Errorf("%s: %s", res.Status, strings.TrimSpace(string(b)))
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, res.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (b *Bench) brokerPIDs() []int {
	pids := b.resolvePIDs()
	var out []int
	for _, n := range brokerProcs {
		if p := pids[n]; p > 0 {
			out = append(out, p)
		}
	}
	return out
}

// scenarioProfile: see the comment at the top of this file.
func (b *Bench) scenarioProfile(ctx context.Context, sc *report.Scenario) error {
	rate, dur := b.plan.ProfileRate, b.plan.ProfileDur
	dir := filepath.Join(resultsDir(b.cfg), b.stamp)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	bc, err := startBrokerCounters(ctx, b.brokerPIDs())
	if err != nil {
		sc.Warnings = append(sc.Warnings, "no Kafka request counts: "+err.Error())
	}
	defer bc.close()
	seconds := int(math.Ceil(dur.Seconds())) + 1

	// The platform: senders on A, receivers on B.
	a, bb := wsURL(b.cfg.Gateways[0]), wsURL(b.cfg.Gateways[1])
	w, err := b.newWSPath(ctx, a, b.plan.ProfileSenders, b.plan.ProfileRooms)
	if err != nil {
		return err
	}
	var win *costWindow
	series, states, _, err := b.e2eSeries(ctx, sc, w, "profile: e2e A→B", "prof", bb, []float64{rate}, 0, dur, func() func() {
		win = b.startWindow(ctx, bc, dir, seconds)
		return win.end
	})
	w.close()
	if err != nil {
		return err
	}
	sc.Series = append(sc.Series, series)
	st := states[rate]
	if st == nil || win == nil {
		return fmt.Errorf("profile: the %v/s run did not happen", rate)
	}
	platformTopic := func(t string) bool { return strings.HasPrefix(t, b.cfg.TopicPrefix+"chat.") }
	platform := win.result(st.received.Load(), platformTopic)
	sc.Warnings = append(sc.Warnings, platform.Errors...)

	// The raw hop with each client at the same rate, for as long.
	hops := map[string]costResult{}
	bestHop, bestTotal := "", 0.0
	sc.Data["platform"] = platform
	var hopErrs []string
	for _, name := range clientNames {
		// Tests sharing the stack kill and restart brokers; a hop needs all three.
		if !b.waitBrokers(ctx, 2*time.Minute) {
			sc.Warnings = append(sc.Warnings, "raw hop ("+name+"): not every broker was up")
		}
		rig, err := b.newHopRig(ctx, name, b.plan.ProfileRooms)
		if err != nil {
			hopErrs = append(hopErrs, name+": "+err.Error())
			continue
		}
		var hw *costWindow
		var p0, f0 int64
		step := rig.run(ctx, rate, 0, dur, func() func() {
			p0, f0 = rig.client.requests()
			hw = b.startWindow(ctx, bc, "", 0)
			return hw.end
		})
		p1, f1 := rig.client.requests()
		topic := rig.topic
		rig.close()
		logStep(b.log, "profile: raw hop ("+name+")", step)
		sc.Series = append(sc.Series, report.Series{Name: "profile: raw hop (" + name + ")", Steps: []harness.Step{step}})
		r := hw.result(step.Latency.Count, func(t string) bool { return t == topic })
		if n := float64(step.Latency.Count); n > 0 {
			r.ClientRequests = map[string]float64{"fetch": harness.Round(float64(f1-f0) / n)}
			if p0 >= 0 {
				r.ClientRequests["produce"] = harness.Round(float64(p1-p0) / n)
			}
		}
		// Rename the hop's topic so that runs compare.
		for _, m := range []map[string]float64{r.Kafka, r.KafkaPerMsg} {
			for k, v := range m {
				if t, ok := counterTopic(k); ok {
					delete(m, k)
					m[strings.TrimSuffix(k, t)+"hop"] = v
				}
			}
		}
		hops[name] = r
		if total := hopTotal(r); step.Lost == 0 && total > 0 && (bestHop == "" || total < bestTotal) {
			bestHop, bestTotal = name, total
		}
	}

	b.profileFigures(rate, platform, hops, bestHop, bestTotal)
	sc.Data["raw_hop"] = hops
	sc.Config = map[string]any{"rate": rate, "seconds": dur.Seconds(), "senders_on_A": b.plan.ProfileSenders, "rooms": b.plan.ProfileRooms,
		"receivers_on_B": b.plan.ProfileRooms, "pprof_dir": dir, "pprof_seconds": seconds,
		"window":         "from just before the first send until the last message arrived (or the wait for it ended); CPU of every process over that window divided by the messages delivered",
		"platform_total": "every process but chatbench (the WebSocket clients) and other (whatever else ran on the machine)",
		"raw_hop_total":  "chatbench (producer and consumer) and the three brokers",
		"raw_hop_keys":   b.plan.ProfileRooms,
		"kafka_counters": "from the brokers over JMX, summed over the three, over the window. topic/TotalProduceRequestsPerSec/<t>: partitions of <t> written, per produce request; " +
			"topic/TotalFetchRequestsPerSec/<t>: partitions of <t> read, per fetch request, consumers' and followers' (replication) alike; topic/MessagesInPerSec/<t>: records appended (leaders only); " +
			"request/<type>: requests of that type served, all topics and all clients (on a shared stack this includes others' traffic)",
	}
	if len(hopErrs) > 0 {
		return fmt.Errorf("raw hop: %s", strings.Join(hopErrs, "; "))
	}
	return nil
}

// hopTotal is the raw hop's CPU per message: chatbench (producer and consumer) and brokers.
func hopTotal(r costResult) float64 {
	t := r.CPUMicrosPerMsg["chatbench"]
	for _, n := range brokerProcs {
		t += r.CPUMicrosPerMsg[n]
	}
	return t
}

// platformTotal is the platform's CPU per delivered message: every sampled process but
// chatbench and the rest of the machine.
func platformTotal(r costResult) float64 {
	t := 0.0
	for name, v := range r.CPUMicrosPerMsg {
		if name != "chatbench" && name != procstat.Other && name != procstat.Machine {
			t += v
		}
	}
	return t
}

func (b *Bench) profileFigures(rate float64, platform costResult, hops map[string]costResult, bestHop string, bestTotal float64) {
	at := fmt.Sprintf(" @ %.0f/s", rate)
	for _, name := range profileProcs {
		v, ok := platform.CPUMicrosPerMsg[name]
		if !ok {
			continue
		}
		f := harness.NewFigure("profile", "CPU per delivered msg, 2 gateways: "+name+at, "µs/msg", v, "", nil)
		if name == procstat.Other {
			f.Note = "CPU the sampled processes do not account for (other work on the machine)"
		}
		b.add(f)
	}
	var base *float64
	baseName := "raw hop"
	if bestHop != "" {
		base, baseName = harness.F(bestTotal), "raw hop ("+bestHop+")"
	}
	f := harness.NewFigure("profile", "CPU per delivered msg, 2 gateways: platform total"+at, "µs/msg", platformTotal(platform), baseName, base,
		harness.Target{Kind: harness.RatioAtMost, Limit: 4})
	f.Note = fmt.Sprintf("%d messages delivered in %.1f s; brokers, PostgreSQL, gateways, persistence, fanout, notification", platform.Messages, platform.WallS)
	if platform.Messages == 0 {
		f.NoData("no message delivered")
	}
	b.add(f)
	for _, name := range clientNames {
		r, ok := hops[name]
		if !ok {
			continue
		}
		brokers := 0.0
		for _, n := range brokerProcs {
			brokers += r.CPUMicrosPerMsg[n]
		}
		g := harness.NewFigure("profile", "CPU per msg, raw hop ("+name+"): total"+at, "µs/msg", hopTotal(r), "", nil)
		g.Note = fmt.Sprintf("chatbench (producer+consumer) %.1f µs, brokers %.1f µs, %d messages", r.CPUMicrosPerMsg["chatbench"], brokers, r.Messages)
		if r.ClientRequests != nil {
			g.Note += fmt.Sprintf("; client-side requests per msg: %v", r.ClientRequests)
		}
		b.add(g)
	}
	// Kafka requests per message: per topic for the topics written, then per request type.
	b.kafkaFigures("2 gateways", b.cfg.TopicPrefix, platform)
	if r, ok := hops[bestHop]; ok {
		b.kafkaFigures("raw hop ("+bestHop+")", "", r)
	}
}

func (b *Bench) kafkaFigures(what, prefix string, r costResult) {
	if r.KafkaError != "" || r.Messages == 0 {
		if r.KafkaError != "" {
			f := harness.NewFigure("profile", "Kafka requests per msg, "+what, "req/msg", 0, "", nil)
			f.NoData(r.KafkaError)
			b.add(f)
		}
		return
	}
	var written []string
	for k := range r.KafkaPerMsg {
		if t, ok := strings.CutPrefix(k, "topic/TotalProduceRequestsPerSec/"); ok {
			written = append(written, t)
		}
	}
	sort.Strings(written)
	for _, t := range written {
		name := strings.TrimPrefix(t, prefix)
		f := harness.NewFigure("profile", fmt.Sprintf("Kafka produce partition-requests per msg, %s: %s", what, name), "req/msg",
			r.KafkaPerMsg["topic/TotalProduceRequestsPerSec/"+t], "", nil)
		f.Note = fmt.Sprintf("records appended %.3g/msg", r.KafkaPerMsg["topic/MessagesInPerSec/"+t])
		g := harness.NewFigure("profile", fmt.Sprintf("Kafka fetch partition-reads per msg, %s: %s", what, name), "req/msg",
			r.KafkaPerMsg["topic/TotalFetchRequestsPerSec/"+t], "", nil)
		g.Note = "consumers' and followers' fetches"
		b.add(f, g)
	}
	for _, typ := range []string{"Produce", "FetchConsumer", "FetchFollower"} {
		if v, ok := r.KafkaPerMsg["request/"+typ]; ok {
			f := harness.NewFigure("profile", fmt.Sprintf("Kafka %s requests per msg, %s (all topics)", typ, what), "req/msg", v, "", nil)
			b.add(f)
		}
	}
}
