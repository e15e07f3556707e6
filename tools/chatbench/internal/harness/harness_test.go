package harness

import (
	"context"
	"math"
	"slices"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestScheduleIntended(t *testing.T) {
	s := NewSchedule(t0, 4000, 10_000)
	if got := s.Intended(0); !got.Equal(t0) {
		t.Fatalf("first send at %v, want start", got)
	}
	if got := s.Offset(1); got != 250*time.Microsecond {
		t.Fatalf("interval %v, want 250µs", got)
	}
	// No drift: the millionth send of a 3/s schedule is exactly 333333.33 s in.
	s3 := NewSchedule(t0, 3, 2_000_000)
	if got, want := s3.Offset(1_000_000), time.Duration(333333333333333); got != want {
		t.Fatalf("offset %v, want %v", got, want)
	}
	if got := s.Duration(); got != 2500*time.Millisecond {
		t.Fatalf("duration %v, want 2.5s", got)
	}
}

func TestScheduleDue(t *testing.T) {
	s := NewSchedule(t0, 1000, 100) // one per ms
	cases := []struct {
		at   time.Duration
		want int
	}{
		{-time.Millisecond, 0},
		{0, 1}, // send 0 is due at start
		{999 * time.Microsecond, 1},
		{time.Millisecond, 2},
		{50*time.Millisecond + 1, 51},
		{time.Hour, 100}, // capped at Count
	}
	for _, c := range cases {
		if got := s.Due(t0.Add(c.at)); got != c.want {
			t.Errorf("Due(start%+v) = %d, want %d", c.at, got, c.want)
		}
	}
}

// simulate runs schedule s against a single FIFO server whose service time for request i
// is service(i): the arithmetic of a real server that stalls. It returns, per request,
// when the server started it and when it finished.
func simulate(s Schedule, service func(i int) time.Duration) (start, done []time.Time) {
	start, done = make([]time.Time, s.Count), make([]time.Time, s.Count)
	free := s.Start
	for i := 0; i < s.Count; i++ {
		st := s.Intended(i)
		if free.After(st) {
			st = free
		}
		start[i], done[i] = st, st.Add(service(i))
		free = done[i]
	}
	return start, done
}

// The point of open-loop measurement: a 1 s stall at 1000/s delays the ~1000 requests
// that were due during it. Measured from intended times, p99 shows the stall; measured
// from when each request actually started (what a closed-loop client sees), it vanishes.
func TestStallShowsUpAsLatency(t *testing.T) {
	s := NewSchedule(t0, 1000, 10_000) // 10 s
	service := func(i int) time.Duration {
		if i == 5000 {
			return time.Second // the stall
		}
		return 100 * time.Microsecond
	}
	start, done := simulate(s, service)
	open, closed := NewRecorder(), NewRecorder()
	for i := range s.Count {
		open.Record(s.Intended(i), done[i])
		closed.Record(start[i], done[i])
	}
	o, c := open.Summary(), closed.Summary()
	if o.P99Ms < 500 {
		t.Fatalf("open-loop p99 = %.2f ms; the 1 s stall must show (≥ 500 ms)", o.P99Ms)
	}
	if o.MaxMs < 999 || o.MaxMs > 1010 {
		t.Fatalf("open-loop max = %.2f ms, want ≈ 1000", o.MaxMs)
	}
	if c.P99Ms > 1 {
		t.Fatalf("closed-loop p99 = %.2f ms; expected the omission to hide the stall", c.P99Ms)
	}
	// About 1000 requests were due during the stall, and the backlog drains at ten times
	// the arrival rate, so ~100 more wait while it does: ≈ 1100 delayed in all.
	slow := 0
	for i := range s.Count {
		if done[i].Sub(s.Intended(i)) > 10*time.Millisecond {
			slow++
		}
	}
	if slow < 1050 || slow > 1150 {
		t.Fatalf("%d requests delayed by the stall, want ≈ 1100", slow)
	}
	// The open-loop median is still the service time: only the tail moved.
	if o.P50Ms > 1 {
		t.Fatalf("open-loop p50 = %.2f ms", o.P50Ms)
	}
}

// Run itself: when fire blocks (the sender stalls), later sends still fire with their
// own intended times, so a recorder charges the stall to them.
func TestRunChargesSenderStall(t *testing.T) {
	s := NewSchedule(time.Now().Add(10*time.Millisecond), 1000, 300)
	rec := NewRecorder()
	var mu sync.Mutex
	intendeds := map[int]time.Time{}
	st := s.Run(context.Background(), func(i int, intended time.Time) {
		if i == 50 {
			time.Sleep(150 * time.Millisecond) // the sender itself stalls
		}
		mu.Lock()
		intendeds[i] = intended
		mu.Unlock()
		rec.Record(intended, time.Now())
	})
	if st.Fired != 300 || rec.Count() != 300 {
		t.Fatalf("fired %d, recorded %d, want 300", st.Fired, rec.Count())
	}
	for i := range 300 {
		if !intendeds[i].Equal(s.Intended(i)) {
			t.Fatalf("send %d got intended %v, want %v", i, intendeds[i], s.Intended(i))
		}
	}
	sum := rec.Summary()
	if sum.MaxMs < 140 {
		t.Fatalf("max latency %.1f ms; the 150 ms stall must show", sum.MaxMs)
	}
	if sum.P90Ms < 20 { // ~150 sends were due during the stall: half of the run
		t.Fatalf("p90 %.1f ms; the sends due during the stall must be late", sum.P90Ms)
	}
	if st.MaxLate < 140*time.Millisecond {
		t.Fatalf("MaxLate %v", st.MaxLate)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	s := NewSchedule(time.Now(), 100, 1000) // 10 s
	st := s.Run(ctx, func(int, time.Time) {})
	if st.Fired < 3 || st.Fired > 10 {
		t.Fatalf("fired %d in 50 ms at 100/s", st.Fired)
	}
}

func TestRecorderSummaryAndThroughput(t *testing.T) {
	r := NewRecorder()
	for i := 1; i <= 1000; i++ { // latencies 1..1000 ms, one per ms of schedule
		intended := t0.Add(time.Duration(i) * time.Millisecond)
		r.Record(intended, intended.Add(time.Duration(i)*time.Millisecond))
	}
	r.Error()
	s := r.Summary()
	if s.Count != 1000 || s.Errors != 1 {
		t.Fatalf("count %d errors %d", s.Count, s.Errors)
	}
	near := func(got, want float64) bool { return math.Abs(got-want) <= want*0.002+0.001 }
	if !near(s.P50Ms, 500) || !near(s.P99Ms, 990) || !near(s.P999Ms, 999) || !near(s.MaxMs, 1000) {
		t.Fatalf("percentiles %+v", s)
	}
	if len(s.Distribution) != len(Percentiles) || s.Distribution[0].Ms != 1 {
		t.Fatalf("distribution %+v", s.Distribution)
	}
	// first intended at 1 ms, last done at 2000 ms: 1000 in 1.999 s.
	if got := r.Throughput(); math.Abs(got-1000/1.999) > 0.01 {
		t.Fatalf("throughput %.3f", got)
	}
	// A completion before its intended time (clock granularity) counts as zero, not negative.
	if Latency(t0, t0.Add(-time.Millisecond)) != 0 {
		t.Fatal("negative latency")
	}
	m := NewRecorder()
	m.Merge(r)
	m.Merge(r)
	if m.Count() != 2000 || m.Summary().Errors != 2 {
		t.Fatalf("merge: %d", m.Count())
	}
}

func TestRatioAndTargets(t *testing.T) {
	if r := Ratio(3, 4); r == nil || *r != 0.75 {
		t.Fatalf("Ratio(3,4) = %v", r)
	}
	if Ratio(1, 0) != nil || Ratio(math.NaN(), 1) != nil {
		t.Fatal("ratio of nothing must be nil")
	}
	ingest := NewFigure("ingest", "max rate", "msg/s", 7500, "kafka-go", F(10000), Target{RatioAtLeast, 0.75})
	if !*ingest.Met || *ingest.Ratio != 0.75 {
		t.Fatalf("ingest %+v", ingest)
	}
	miss := NewFigure("ingest", "max rate", "msg/s", 7400, "kafka-go", F(10000), Target{RatioAtLeast, 0.75})
	if *miss.Met {
		t.Fatal("0.74 must miss ≥ 0.75")
	}
	// Two targets: both must hold.
	e2e := NewFigure("e2e", "p99", "ms", 40, "raw hop", F(10), Target{RatioAtMost, 3}, Target{ValueBelow, 50})
	if *e2e.Met || *e2e.Ratio != 4 {
		t.Fatalf("e2e 4× must miss ≤ 3×: %+v", e2e)
	}
	e2e = NewFigure("e2e", "p99", "ms", 25, "raw hop", F(10), Target{RatioAtMost, 3}, Target{ValueBelow, 50})
	if !*e2e.Met || e2e.TargetString() != "≤ 3× and < 50 ms" {
		t.Fatalf("e2e %+v %q", e2e, e2e.TargetString())
	}
	noBase := NewFigure("x", "y", "ms", 1, "", nil, Target{RatioAtMost, 3})
	if *noBase.Met || noBase.Ratio != nil {
		t.Fatal("a ratio target without a baseline is not met")
	}
	ctx := NewFigure("x", "y", "ms", 1, "", nil)
	if ctx.Met != nil || ctx.MetString() != "—" || ctx.TargetString() != "—" {
		t.Fatal("context figure has no target")
	}
}

func TestMaxPassingRate(t *testing.T) {
	step := func(rate, got, p99 float64, errs int64) Step {
		return Step{Rate: rate, Throughput: got, Latency: Summary{Count: 10, P99Ms: p99, Errors: errs}}
	}
	steps := []Step{step(1000, 1000, 5, 0), step(2000, 1990, 20, 0), step(4000, 3000, 80, 0), step(8000, 8000, 10, 0)}
	// 4000 missed the goal: the search stops there even though 8000 looked fine.
	if got := MaxPassingRate(steps, 50); got != 2000 {
		t.Fatalf("got %v", got)
	}
	if got := MaxPassingRate(steps, 10); got != 1000 {
		t.Fatalf("p99 limit: got %v", got)
	}
	if got := MaxPassingRate([]Step{step(1000, 1000, 5, 1)}, 50); got != 0 {
		t.Fatalf("errors must fail a step: %v", got)
	}
	lost := step(1000, 1000, 5, 0)
	lost.Lost = 1
	if lost.Passes(50) {
		t.Fatal("a lost operation must fail a step")
	}
}

func TestRound(t *testing.T) {
	for in, want := range map[float64]float64{123456: 123500, 0.0012345: 0.001235, 0: 0, -9.87654: -9.877} {
		if got := Round(in); math.Abs(got-want) > 1e-12 {
			t.Errorf("Round(%v) = %v, want %v", in, got, want)
		}
	}
}

// Work done between fixing a schedule and running it (finding processes to sample took a
// few hundred ms) makes the first send late; FirstLate says so, while a stall after the
// first send does not count in it.
func TestRunReportsLateFirstSend(t *testing.T) {
	tests := []struct {
		name          string
		setup, stall  time.Duration
		wantLateAbove time.Duration
		wantLateBelow time.Duration
	}{
		// The bounds leave a loaded machine's timer slack (tens of ms), not a 150 ms stall.
		{"on time", 0, 0, 0, 50 * time.Millisecond},
		{"setup after fixing the schedule", 150 * time.Millisecond, 0, 140 * time.Millisecond, 2 * time.Second},
		{"stall after the first send", 0, 150 * time.Millisecond, 0, 50 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSchedule(time.Now().Add(10*time.Millisecond), 1000, 20)
			time.Sleep(tt.setup)
			st := s.Run(context.Background(), func(i int, _ time.Time) {
				if i == 1 {
					time.Sleep(tt.stall)
				}
			})
			if st.FirstLate < tt.wantLateAbove || st.FirstLate >= tt.wantLateBelow {
				t.Fatalf("FirstLate %v, want in [%v, %v)", st.FirstLate, tt.wantLateAbove, tt.wantLateBelow)
			}
		})
	}
}

func TestWorstSecondsFindAStall(t *testing.T) {
	start := time.Date(2026, 12, 7, 23, 50, 0, 0, time.UTC)
	stallAt := start.Add(7 * time.Second)
	tests := []struct {
		name    string
		seconds int
		want    []WorstSecond
	}{
		{name: "a one-second run names its only second", seconds: 1,
			want: []WorstSecond{{At: start, MaxMs: 2}}},
		{name: "the stalled second first, then the others by latency", seconds: 12,
			want: []WorstSecond{{At: stallAt, MaxMs: 900}, {At: start.Add(11 * time.Second), MaxMs: 13}, {At: start.Add(10 * time.Second), MaxMs: 12},
				{At: start.Add(9 * time.Second), MaxMs: 11}, {At: start.Add(8 * time.Second), MaxMs: 10}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Two recorders, merged: second k has latencies up to k+2 ms, except the stall.
			a, b := NewRecorder(), NewRecorder()
			for k := range tt.seconds {
				for j := range 10 {
					intended := start.Add(time.Duration(k)*time.Second + time.Duration(j)*100*time.Millisecond)
					lat := time.Duration(1+j%2+k) * time.Millisecond
					if intended.Equal(stallAt.Add(300 * time.Millisecond)) {
						lat = 900 * time.Millisecond
					}
					r := a
					if j%2 == 1 {
						r = b
					}
					r.Record(intended, intended.Add(lat))
				}
			}
			m := NewRecorder()
			m.Merge(a)
			m.Merge(b)
			got := m.Summary().WorstSeconds
			if !slices.Equal(got, tt.want) {
				t.Fatalf("worst seconds\n got %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestLeadInIsLeftOut(t *testing.T) {
	start := time.Date(2026, 12, 8, 1, 0, 0, 0, time.UTC)
	// 10 operations a second for 10 s, each 5 ms, but every one due in the first second
	// took 800 ms: the step's lead-in stall.
	tests := []struct {
		name       string
		leadIn     time.Duration
		wantCount  int64
		wantLeadIn int64
		wantMaxMs  float64
		wantWorst  time.Time
	}{
		{name: "no lead-in: the stall is in every figure", leadIn: 0, wantCount: 100, wantLeadIn: 0, wantMaxMs: 800, wantWorst: start},
		{name: "a lead-in shorter than the stall keeps part of it", leadIn: 500 * time.Millisecond, wantCount: 95, wantLeadIn: 5, wantMaxMs: 800, wantWorst: start},
		{name: "a lead-in past the stall leaves it out", leadIn: 2 * time.Second, wantCount: 80, wantLeadIn: 20, wantMaxMs: 5, wantWorst: start.Add(2 * time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Two recorders merged, as the stage and per-connection recorders are.
			a, b := NewRecorder(), NewRecorder()
			for _, r := range []*Recorder{a, b} {
				r.MeasureFrom(start.Add(tt.leadIn))
			}
			for i := range 100 {
				intended := start.Add(time.Duration(i) * 100 * time.Millisecond)
				lat := 5 * time.Millisecond
				if i < 10 {
					lat = 800 * time.Millisecond
				}
				r := a
				if i%2 == 1 {
					r = b
				}
				if got, want := r.InMeasure(intended), !intended.Before(start.Add(tt.leadIn)); got != want {
					t.Fatalf("InMeasure(%v) = %v, want %v", intended, got, want)
				}
				r.Record(intended, intended.Add(lat))
			}
			m := NewRecorder()
			m.Merge(a)
			m.Merge(b)
			s := m.Summary()
			if s.Count != tt.wantCount || s.LeadIn != tt.wantLeadIn {
				t.Fatalf("count %d, lead-in %d; want %d, %d", s.Count, s.LeadIn, tt.wantCount, tt.wantLeadIn)
			}
			if math.Abs(s.MaxMs-tt.wantMaxMs) > tt.wantMaxMs/100 { // the histogram keeps 3 digits
				t.Fatalf("max %v ms, want %v", s.MaxMs, tt.wantMaxMs)
			}
			if len(s.WorstSeconds) == 0 || !s.WorstSeconds[0].At.Equal(tt.wantWorst) {
				t.Fatalf("worst seconds %v, want %v first", s.WorstSeconds, tt.wantWorst)
			}
			// Throughput covers only the measured part: about 10/s whatever the lead-in (the
			// span ends 5 ms after the last due time, and starts at the first one measured).
			if got := m.Throughput(); got < 9.9 || got > 10.2 {
				t.Fatalf("throughput %.2f/s, want 10", got)
			}
		})
	}
}
