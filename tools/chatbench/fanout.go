package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kchat/kchat/pkg/localstack"
	"github.com/kchat/kchat/tools/chatbench/internal/harness"
	"github.com/kchat/kchat/tools/chatbench/internal/procstat"
	"github.com/kchat/kchat/tools/chatbench/internal/report"
	"github.com/kchat/kchat/tools/chatbench/internal/wsclient"
)

// centrifugo is the reference, measured with Centrifugo v6.9.1 (memory engine,
// 1,000-member room, HTTP publish) on a machine of this kind: deliveries per CPU-second
// and delivery p99 by publish rate. Used where Centrifugo could not run side by side.
var centrifugo = map[float64]struct{ perCPU, p99 float64 }{100: {139_000, 12}, 400: {341_000, 46}}

// fanCentrifugo runs the room on a Centrifugo server of its own, with the same members,
// one sender and the same schedule.
func (b *Bench) fanCentrifugo(ctx context.Context, members, senders []user, room string) ([]fanResult, error) {
	cf, err := b.startCentrifugo(ctx)
	if err != nil {
		return nil, err
	}
	defer cf.stop()
	return b.fanRun(ctx, "fanout centrifugo", centrifugoWire(), members, senders, []string{cf.url()}, cf.url(), room,
		func() *procstat.Sampler { return procstat.NewSampler(map[string]int{"centrifugo": cf.cmd.Process.Pid}) }, []string{"centrifugo"})
}

type fanStep struct {
	id    int
	sched harness.Schedule
}

type fanResult struct {
	step         harness.Step
	deliveries   int64
	expected     int64
	perS, cpuS   float64
	perCPUSecond float64
	closed       int
	cores        map[string]float64
	// resent: sends written again after a refusal for now; refused: refused for good.
	resent, refused int64
}

// fanRun drives one room of members (conns) with messages from senders at each rate.
// urls: where members connect, alternating.
func (b *Bench) fanRun(ctx context.Context, name string, wire fanWire, members, senders []user, memberURLs []string, senderURL, room string,
	cpuOf func() *procstat.Sampler, cpuNames []string) ([]fanResult, error) {
	M := len(members)
	mp, err := dialWith(ctx, memberURLs, members, 100, wire.open)
	if err != nil {
		return nil, err
	}
	defer mp.close()
	mp.startWriters(4)
	sp, err := dialWith(ctx, []string{senderURL}, senders, 10, wire.open)
	if err != nil {
		return nil, err
	}
	defer sp.close()
	sp.startWriters(4096)
	sender := newFanSender(sp, wire.answer)
	defer sender.close()

	recs := make([]*harness.Recorder, M)
	counts := make([]atomic.Int64, M)
	last := make([]atomic.Int64, M)
	warm := make([]atomic.Bool, M)
	var synced, seen atomic.Int64 // seen: every bench message frame, of any step
	ready := make([]atomic.Bool, M)
	var cur atomic.Pointer[fanStep]
	prefix := b.run + "."
	mp.setHandler(func(k int, frame []byte, at time.Time) {
		wire.read(frame, func(kind fanKind, msg []byte) {
			switch kind {
			case fanSubscribed:
				if !ready[k].Swap(true) {
					synced.Add(1)
				}
				return
			case fanMessage:
			default:
				return
			}
			cid, err := wsclient.StringField(msg, "client_msg_id")
			if err != nil || !strings.HasPrefix(string(cid), prefix) {
				return
			}
			seen.Add(1)
			rest := string(cid[len(prefix):])
			sid, idx, ok := strings.Cut(rest, ".")
			if !ok {
				return
			}
			if sid == "w" {
				warm[k].Store(true)
				return
			}
			st := cur.Load()
			if st == nil || sid != strconv.Itoa(st.id) {
				return
			}
			i, err := strconv.Atoi(idx)
			if err != nil || i < 0 || i >= st.sched.Count {
				return
			}
			recs[k].Record(st.sched.Intended(i), at)

			counts[k].Add(1)
			last[k].Store(at.UnixNano())
		})
	})
	if wire.subscribe != nil {
		for k := range M {
			mp.send(k, wire.subscribe(room))
		}
		if !waitFor(ctx, 90*time.Second, func() bool { return synced.Load() >= int64(M) }) {
			return nil, fmt.Errorf("%s: %d of %d members synced", name, synced.Load(), M)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for n := 0; ; n++ {
		got := 0
		for k := range M {
			if warm[k].Load() {
				got++
			}
		}
		if got == M {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("%s: warm-up reached %d of %d members within 60s", name, got, M)
		}
		cid := fmt.Sprintf("%sw.%d", prefix, n)
		sender.send(ctx, 0, cid, wire.send("w", room, cid, "warm-up"))
		waitFor(ctx, 3*time.Second, func() bool {
			for k := range M {
				if !warm[k].Load() {
					return false
				}
			}
			return true
		})
	}
	text := strings.Repeat("x", b.plan.TextBytes)
	var out []fanResult
	for n, rate := range b.plan.FanRates {
		for k := range M {
			recs[k] = harness.NewRecorder()
			counts[k].Store(0)
			last[k].Store(0)
		}
		// The sampler first: finding the processes by their ports takes a few hundred
		// milliseconds, which must not delay sends already due.
		smp := cpuOf()
		smp.Start()
		count := int(rate * b.plan.FanDur.Seconds())
		st := &fanStep{id: n + 1, sched: harness.NewSchedule(time.Now().Add(50*time.Millisecond), rate, count)}
		cur.Store(st)
		expected := int64(count) * int64(M)
		total := func() int64 {
			var s int64
			for k := range M {
				s += counts[k].Load()
			}
			return s
		}
		resent0, refused0 := sender.resent.Load(), sender.refused.Load()
		runStats := st.sched.Run(ctx, func(i int, _ time.Time) {
			cid := fmt.Sprintf("%s%d.%d", prefix, st.id, i)
			sender.send(ctx, i, cid, wire.send(stepRef(st.id, i), room, cid, text))
		})
		waitFor(ctx, 20*time.Second, func() bool { return total() >= expected })
		usage := smp.Stop()
		b.warnLateStart(name, rate, runStats)

		cur.Store(nil)
		all := harness.NewRecorder()
		var lastNs int64
		for k := range M {
			all.Merge(recs[k])
			lastNs = max(lastNs, last[k].Load())
		}
		got := total()
		r := fanResult{deliveries: got, expected: expected, closed: M - mp.alive(), cores: roundMap(usage.Cores),
			resent: sender.resent.Load() - resent0, refused: sender.refused.Load() - refused0}
		if lastNs > 0 {
			r.perS = float64(got) / time.Unix(0, lastNs).Sub(st.sched.Start).Seconds()
		}
		for _, n := range cpuNames {
			r.cpuS += usage.CPUSeconds[n]
		}
		if r.cpuS > 0 {
			r.perCPUSecond = float64(got) / r.cpuS
		}
		r.step = harness.Step{Rate: rate, Throughput: harness.Round(r.perS), Latency: all.Summary(), Lost: expected - got}
		b.log.Info(name, "rate", rate, "deliveries", got, "expected", expected, "per_s", int(r.perS), "cpu_s", harness.Round(r.cpuS),
			"per_cpu_s", int(r.perCPUSecond), "p99_ms", r.step.Latency.P99Ms, "closed", r.closed, "resent", r.resent, "refused", r.refused)
		out = append(out, r)
		// Before the next rate, wait until late deliveries of this one stop arriving.
		prev := int64(-1)
		waitFor(ctx, 30*time.Second, func() bool {
			n := seen.Load()
			quiet := n == prev
			prev = n
			if !quiet {
				time.Sleep(2 * time.Second)
			}
			return quiet
		})
	}
	return out, nil
}

// scenarioFanout: one room of FanMembers members spread over both gateways, messages at
// FanRates: deliveries/s, delivery p99 and deliveries per gateway CPU-second, against
// the Centrifugo reference (target) and the raw coder/websocket broadcaster measured now.
func (b *Bench) scenarioFanout(ctx context.Context, sc *report.Scenario) error {
	M := b.plan.FanMembers
	members, err := b.users(ctx, "bench-f", M)
	if err != nil {
		return err
	}
	senders, err := b.users(ctx, "bench-u", b.plan.FanSenders)
	if err != nil {
		return err
	}
	room := fmt.Sprintf("bench-%s-fan", b.run)
	ids := make([]string, 0, M+len(senders))
	for _, u := range append(append([]user{}, members...), senders...) {
		ids = append(ids, u.id)
	}
	if err := b.rooms(ctx, map[string][]string{room: ids}); err != nil {
		return err
	}
	a, bb := wsURL(b.cfg.Gateways[0]), wsURL(b.cfg.Gateways[1])
	gw, err := b.fanRun(ctx, "fanout gateways", kchatWire, members, senders, []string{a, bb}, a, room,
		b.sampler, []string{"gateway-a", "gateway-b"})
	if err != nil {
		return err
	}
	raw, err := startRaw()
	if err != nil {
		return err
	}
	rawWire := kchatWire
	rawWire.subscribe = nil // every connection gets every message
	rawRes, rerr := b.fanRun(ctx, "fanout raw", rawWire, members, senders[:1], []string{raw.url()}, raw.url()+"?role=sender", room,
		func() *procstat.Sampler { return procstat.NewSampler(map[string]int{"raw": raw.cmd.Process.Pid}) }, []string{"raw"})
	raw.stop()
	if rerr != nil {
		sc.Warnings = append(sc.Warnings, "raw baseline: "+rerr.Error())
	}
	var cfRes []fanResult
	if b.plan.FanCentrifugo {
		cfRes, err = b.fanCentrifugo(ctx, members, senders[:1], room)
		if err != nil {
			sc.Warnings = append(sc.Warnings, "Centrifugo side by side: "+err.Error()+"; compared with the issue's reference figures")
		}
	}
	gs, rs, cs := report.Series{Name: "fanout 1000 members (gateways)"}, report.Series{Name: "fanout raw broadcaster"}, report.Series{Name: "fanout Centrifugo " + localstack.CentrifugoVersion}
	detail := map[string]any{}
	for i, r := range gw {
		rate := r.step.Rate
		gs.Steps = append(gs.Steps, r.step)
		d := map[string]any{"deliveries": r.deliveries, "expected": r.expected, "deliveries_per_s": harness.Round(r.perS),
			"gateway_cpu_s": harness.Round(r.cpuS), "per_gateway_cpu_s": harness.Round(r.perCPUSecond), "closed_conns": r.closed, "cpu_cores": r.cores,
			"sends_resent_after_refusal": r.resent, "sends_refused": r.refused}
		var rawPer *float64
		if i < len(rawRes) {
			rr := rawRes[i]
			rs.Steps = append(rs.Steps, rr.step)
			d["raw"] = map[string]any{"deliveries": rr.deliveries, "per_cpu_s": harness.Round(rr.perCPUSecond), "p99_ms": rr.step.Latency.P99Ms, "cpu_s": harness.Round(rr.cpuS)}
			if rr.perCPUSecond > 0 {
				rawPer = harness.F(harness.Round(rr.perCPUSecond))
			}
		}
		// The reference is Centrifugo measured now when it ran and delivered everything
		// at this rate, otherwise the figures.
		ref, hasRef := centrifugo[rate]
		refName := "Centrifugo " + localstack.CentrifugoVersion + " reference (issue 13)"
		if i < len(cfRes) {
			cr := cfRes[i]
			cs.Steps = append(cs.Steps, cr.step)
			d["centrifugo"] = map[string]any{"deliveries": cr.deliveries, "expected": cr.expected, "per_cpu_s": harness.Round(cr.perCPUSecond),
				"p99_ms": cr.step.Latency.P99Ms, "cpu_s": harness.Round(cr.cpuS), "closed_conns": cr.closed}
			if cr.deliveries == cr.expected && cr.perCPUSecond > 0 {
				refName, hasRef = "Centrifugo "+localstack.CentrifugoVersion+", same run", true
				ref.perCPU, ref.p99 = harness.Round(cr.perCPUSecond), cr.step.Latency.P99Ms
			}
		}
		detail[fmt.Sprint(rate)] = d
		note := fmt.Sprintf("%.0f deliveries/s, p99 %.1f ms, dropped %d, gateway CPU %.2f s", r.perS, r.step.Latency.P99Ms, r.expected-r.deliveries, r.cpuS)
		if hasRef {
			f := harness.NewFigure("fanout", fmt.Sprintf("deliveries per gateway CPU-s @ %.0f msg/s", rate), "/CPU-s", harness.Round(r.perCPUSecond),
				refName, harness.F(ref.perCPU), harness.Target{Kind: harness.RatioAtLeast, Limit: 1.5})
			f.Note = note
			p := harness.NewFigure("fanout", fmt.Sprintf("delivery p99 @ %.0f msg/s", rate), "ms", r.step.Latency.P99Ms,
				refName, harness.F(ref.p99), harness.Target{Kind: harness.RatioAtMost, Limit: 5})
			if r.deliveries < r.expected {
				m := false
				f.Met, p.Met = &m, &m // "every delivery made within the run"
			}
			if r.deliveries == 0 {
				f.NoData("nothing delivered within the wait")
				p.NoData("nothing delivered within the wait")
			}
			b.add(f, p)
		} else {
			f := harness.NewFigure("fanout", fmt.Sprintf("deliveries per gateway CPU-s @ %.0f msg/s", rate), "/CPU-s", harness.Round(r.perCPUSecond), "", nil)
			f.Note = note
			b.add(f)
		}
		if rawPer != nil && r.deliveries > 0 {
			b.add(harness.NewFigure("fanout", fmt.Sprintf("per CPU-s vs raw broadcaster @ %.0f msg/s", rate), "/CPU-s", harness.Round(r.perCPUSecond),
				"raw coder/websocket", rawPer))
		}
	}
	if len(cs.Steps) > 0 {
		sc.Series = append(sc.Series, cs)
	}
	sc.Series = append(sc.Series, gs, rs)
	sc.Data["by_rate"] = detail
	sc.Config = map[string]any{"members": M, "members_per_gateway": M / 2, "senders": len(senders), "text_bytes": b.plan.TextBytes,
		"seconds_per_rate": b.plan.FanDur.Seconds(), "latency": "intended send time → frame read by each member"}
	return nil
}
