package main

import (
	"context"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/kchat/kchat/tools/chatbench/internal/harness"
	"github.com/kchat/kchat/tools/chatbench/internal/procstat"
)

// warmJITShare is the share of the brokers' CPU their JIT compiler threads may take in a
// warm-up round for the brokers to count as warm. Brokers that had carried load for half
// an hour spent 0.2–5% of their CPU compiling under a raw hop at 2,000 msg/s; freshly
// started ones spent 50–60% in their first minute (a third of the machine's two cores for
// the three of them) and 3–8% after three to four minutes (2026-12-07). A raw hop measured
// in that first minute came out hundreds of times slower for the first client than the same hop
// two minutes later, which would make a weak baseline of whichever client runs first.
const warmJITShare = 0.05

// isCompilerThread matches HotSpot's JIT compiler threads ("C1 CompilerThread0" and
// "C2 CompilerThread0", cut to 15 bytes by the kernel).
func isCompilerThread(comm string) bool { return strings.Contains(comm, "CompilerThre") }

// warmRound is what one round of the brokers' warm-up measured.
type warmRound struct {
	JITSeconds    map[string]float64 `json:"jit_cpu_s"`
	BrokerSeconds map[string]float64 `json:"broker_cpu_s"`
	JITShare      float64            `json:"jit_share"`
	Achieved      float64            `json:"achieved_per_s"`
	P99Ms         float64            `json:"p99_ms"`
}

// warmBrokers offers a raw hop (pkg/producer, the platform's keys) to brokers running on
// this machine in rounds of the plan's warm-up rate and length, until a round in which
// their JIT compilers took less than warmJITShare of their CPU, or until max. A stack
// that has carried load passes in one or two rounds. What it did goes into the result's config.
func (b *Bench) warmBrokers(ctx context.Context, max time.Duration) map[string]any {
	out := map[string]any{"max_s": max.Seconds(), "rate": b.plan.WarmRate, "round_s": b.plan.WarmRound.Seconds(),
		"jit_share_below": warmJITShare}
	brokers := map[string]int{}
	for name, pid := range b.resolvePIDs() {
		if strings.HasPrefix(name, "kafka-") && pid > 0 {
			brokers[name] = pid
		}
	}
	switch {
	case max <= 0 || b.plan.WarmRound <= 0:
		out["skipped"] = "disabled"
		return out
	case len(brokers) == 0:
		out["skipped"] = "no broker process on this machine"
		return out
	}
	rig, err := b.newHopRig(ctx, clientProducer, b.plan.Rooms)
	if err != nil {
		out["error"] = err.Error()
		b.log.Warn("brokers not warmed up", "error", err)
		return out
	}
	defer rig.close()
	t0 := time.Now()
	var rounds []warmRound
	warm := false
	for !warm && time.Since(t0) < max && ctx.Err() == nil {
		jit0, cpu0 := brokerCPU(brokers)
		step := rig.run(ctx, b.plan.WarmRate, 0, b.plan.WarmRound, nil)
		jit1, cpu1 := brokerCPU(brokers)
		r := warmRound{JITSeconds: map[string]float64{}, BrokerSeconds: map[string]float64{},
			Achieved: step.Throughput, P99Ms: step.Latency.P99Ms}
		var jit, cpu float64
		for name := range brokers {
			if _, ok := cpu0[name]; !ok || cpu1[name] < cpu0[name] {
				continue // not readable, or restarted within the round
			}
			j, c := (jit1[name] - jit0[name]).Seconds(), (cpu1[name] - cpu0[name]).Seconds()
			r.JITSeconds[name], r.BrokerSeconds[name] = harness.Round(j), harness.Round(c)
			jit, cpu = jit+j, cpu+c
		}
		if cpu > 0 {
			r.JITShare = harness.Round(jit / cpu)
		}
		rounds = append(rounds, r)
		warm = cpu > 0 && jit/cpu < warmJITShare
		b.log.Info("warming up the brokers", "round", len(rounds), "jit_share", r.JITShare, "p99_ms", r.P99Ms,
			"achieved", r.Achieved, "brokers", slices.Sorted(maps.Keys(brokers)))
	}
	out["rounds"], out["seconds"], out["warm"] = rounds, harness.Round(time.Since(t0).Seconds()), warm
	if !warm {
		b.log.Warn("the brokers' JIT compilers were still busy when the warm-up ended", "after", time.Since(t0).Round(time.Second))
	}
	return out
}

// brokerCPU reads each broker's JIT compiler CPU and its whole CPU; a broker that cannot
// be read is left out of both.
func brokerCPU(pids map[string]int) (jit, all map[string]time.Duration) {
	jit, all = map[string]time.Duration{}, map[string]time.Duration{}
	for name, pid := range pids {
		j, err1 := procstat.ThreadCPU(pid, isCompilerThread)
		c, err2 := procstat.CPU(pid)
		if err1 == nil && err2 == nil {
			jit[name], all[name] = j, c
		}
	}
	return jit, all
}
