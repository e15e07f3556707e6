package main

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/tools/chatbench/internal/harness"
	"github.com/kchat/kchat/tools/chatbench/internal/report"
	"github.com/kchat/kchat/tools/chatbench/internal/wsclient"
)

// ackState is one fixed-rate step of sends that are answered by ack frames.
type ackState struct {
	id     int
	sched  harness.Schedule
	rec    *harness.Recorder
	acked  atomic.Int64
	failed atomic.Int64
	mu     sync.Mutex
	codes  map[string]int
}

func newAckState(id int, sched harness.Schedule) *ackState {
	return &ackState{id: id, sched: sched, rec: harness.NewRecorder(), codes: map[string]int{}}
}

// onFrame handles a sender connection's frame: ack or error with ref "<step>:<i>".
func (st *ackState) onFrame(data []byte, at time.Time) {
	typ, err := wsclient.StringField(data, "type")
	if err != nil {
		return
	}
	ref, err := wsclient.StringField(data, "ref")
	if err != nil {
		return
	}
	sid, idx, ok := bytes.Cut(ref, []byte{':'})
	if !ok || string(sid) != strconv.Itoa(st.id) {
		return
	}
	i, err := strconv.Atoi(string(idx))
	if err != nil || i < 0 || i >= st.sched.Count {
		return
	}
	switch string(typ) {
	case protocol.TypeAck:
		st.rec.Record(st.sched.Intended(i), at)
		st.acked.Add(1)
	case protocol.TypeError:
		st.rec.Error()
		st.failed.Add(1)
		code, _ := wsclient.StringField(data, "code")
		st.mu.Lock()
		st.codes[string(code)]++
		st.mu.Unlock()
	}
}

// sendFrame encodes a send frame (pkg/protocol's Send).
func sendFrame(ref, room, clientID, text string) []byte {
	return protocol.Encode(&protocol.Send{Base: protocol.Base{Type: protocol.TypeSend, Ref: ref}, Room: room, ClientMsgID: clientID, Text: text})
}

// stepRef is the ref of send i of a step: the ack's ref says which send it answers.
func stepRef(step, i int) string { return strconv.Itoa(step) + ":" + strconv.Itoa(i) }

// subscribeFrame encodes a live-only subscribe frame.
func subscribeFrame(room string) []byte {
	return protocol.Encode(&protocol.Subscribe{Base: protocol.Base{Type: protocol.TypeSubscribe, Ref: "s"}, Room: room})
}

// scenarioIngest finds the highest rate the gateways take in over WebSocket (acked after
// Kafka acks=all) with p99 < 50 ms, with senders spread over both gateways, then over one
// gateway only (scale-out).
func (b *Bench) scenarioIngest(ctx context.Context, sc *report.Scenario) error {
	S, R := b.plan.Senders, b.plan.Rooms
	users, err := b.users(ctx, "bench-u", S)
	if err != nil {
		return err
	}
	roomPrefix := fmt.Sprintf("bench-%s-in-", b.run)
	room := func(k int) string { return fmt.Sprintf("%s%02d", roomPrefix, k) }
	members := map[string][]string{}
	for j, u := range users {
		members[room(j%R)] = append(members[room(j%R)], u.id)
	}
	if err := b.rooms(ctx, members); err != nil {
		return err
	}
	text := strings.Repeat("x", b.plan.TextBytes)
	var submitted atomic.Int64 // acked so far, for the drain between steps
	stepID := 0
	cpu := map[string]any{}
	errCodes := map[string]map[string]int{}

	series := func(name string, urls []string) (report.Series, error) {
		p, err := dial(ctx, urls, users, 50)
		if err != nil {
			return report.Series{}, err
		}
		defer p.close()
		p.startWriters(4096)
		var cur atomic.Pointer[ackState]
		p.setHandler(func(_ int, data []byte, at time.Time) {
			if st := cur.Load(); st != nil {
				st.onFrame(data, at)
			}
		})
		perRate := map[string]any{}
		run := func(sched harness.Schedule) harness.Step {
			stepID++
			// The sampler first, and the schedule started after it: finding the processes
			// by their ports takes a few hundred milliseconds, which must not delay sends
			// already due (it made every step's first sends late by that much).
			smp := b.sampler()
			smp.Start()
			sched = harness.NewSchedule(time.Now().Add(20*time.Millisecond), sched.Rate, sched.Count)
			st := newAckState(stepID, sched)
			cur.Store(st)
			runStats := sched.Run(ctx, func(i int, _ time.Time) {
				c := i % S
				p.send(c, sendFrame(stepRef(st.id, i), room(c%R), fmt.Sprintf("%s.%d.%d", b.run, st.id, i), text))
			})
			waitFor(ctx, 15*time.Second, func() bool { return st.acked.Load()+st.failed.Load() >= int64(sched.Count) })
			u := smp.Stop()
			b.warnLateStart(name, sched.Rate, runStats)
			perRate[fmt.Sprint(sched.Rate)] = roundMap(u.Cores)
			submitted.Add(st.acked.Load())
			st.mu.Lock()
			if len(st.codes) > 0 {
				errCodes[fmt.Sprintf("%s@%v", name, sched.Rate)] = st.codes
			}
			st.mu.Unlock()
			return harness.Step{Rate: sched.Rate, Throughput: harness.Round(st.rec.Throughput()), Latency: st.rec.Summary(),
				Lost: int64(sched.Count) - st.acked.Load() - st.failed.Load()}
		}
		between := func() {
			d, ok := b.drain(ctx, roomPrefix, submitted.Load())
			if !ok {
				sc.Warnings = append(sc.Warnings, fmt.Sprintf("persistence had not stored everything %s after a step", d.Round(time.Second)))
			}
		}
		// Warm-up: every connection sends once, outside the measurement.
		b.rateSearch(ctx, "warm-up", []float64{float64(S)}, b.plan.StepDur, func(s harness.Schedule) harness.Step {
			return run(harness.NewSchedule(s.Start, float64(S)*2, S))
		}, between)
		se := b.rateSearch(ctx, name, b.plan.IngestRates, b.plan.StepDur, run, between)
		cpu[name] = perRate
		return se, nil
	}
	a, bb := wsURL(b.cfg.Gateways[0]), wsURL(b.cfg.Gateways[1])
	two, err := series("gateways A+B (WebSocket)", []string{a, bb})
	if err != nil {
		return err
	}
	sc.Series = append(sc.Series, two)
	one, err := series("gateway A only (WebSocket)", []string{a})
	if err != nil {
		return err
	}
	sc.Series = append(sc.Series, one)
	sc.Data["cpu_cores_by_rate"] = cpu
	if len(errCodes) > 0 {
		sc.Data["error_codes"] = errCodes
	}
	sc.Config = map[string]any{"senders": S, "rooms": R, "text_bytes": b.plan.TextBytes, "seconds_per_step": b.plan.StepDur.Seconds(),
		"p99_limit_ms": b.plan.P99Limit, "latency": "intended send time → ack frame (sent after Kafka acks=all)"}
	twoMax, oneMax := harness.MaxPassingRate(two.Steps, b.plan.P99Limit), harness.MaxPassingRate(one.Steps, b.plan.P99Limit)
	b.ingestTwoMax = twoMax
	var direct *float64
	if b.directMax > 0 {
		direct = harness.F(b.directMax)
	}
	f := harness.NewFigure("ingest", fmt.Sprintf("acked msg/s, 2 gateways, p99 < %g ms", b.plan.P99Limit), "msg/s", twoMax,
		b.directName, direct, harness.Target{Kind: harness.RatioAtLeast, Limit: 0.75})
	f.Note = searchNote(two, b.plan.P99Limit)
	g := harness.NewFigure("scale-out", "ingest, 2 gateways vs 1", "msg/s", twoMax, "1 gateway", harness.F(oneMax),
		harness.Target{Kind: harness.RatioAtLeast, Limit: 1.7})
	g.Note = "1 gateway: " + searchNote(one, b.plan.P99Limit)
	b.add(f, g)
	return nil
}
