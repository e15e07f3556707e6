package harness

import (
	"cmp"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds, from 1 µs to 5 minutes, 3 significant digits.
const (
	lowestMicros  = 1
	highestMicros = 5 * 60 * 1e6
	sigFigs       = 3
)

// Recorder collects latencies measured from intended send times. Safe for concurrent use.
type Recorder struct {
	mu     sync.Mutex
	h      *hdrhistogram.Histogram
	errors int64
	first  time.Time // earliest intended time recorded
	last   time.Time // latest completion recorded
	// worst is the highest latency (µs) of the operations due in each wall-clock second
	// (Unix seconds): a p99 over a minute at 500/s is set by any half-second stall, and
	// the stall's time is what finds its cause in the processes' logs.
	worst map[int64]int64
	// from, if set, is when the measured part of a step starts: operations due before it
	// are its lead-in, counted but not recorded. A step's first seconds carry whatever the
	// step before left (new connections, a consumer's backlog, a client adapting its
	// batches to the new rate), and in a 10 s step they decided the p99 (README, eleventh
	// round); the OpenMessaging Benchmark likewise discards a warm-up before each test.
	from   time.Time
	leadIn int64
}

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder {
	return &Recorder{h: hdrhistogram.New(lowestMicros, highestMicros, sigFigs), worst: map[int64]int64{}}
}

// MeasureFrom makes the recorder leave out (and count as lead-in) every operation due
// before t. Set it before the first Record.
func (r *Recorder) MeasureFrom(t time.Time) {
	r.mu.Lock()
	r.from = t
	r.mu.Unlock()
}

// InMeasure reports whether an operation due at intended is past the lead-in.
func (r *Recorder) InMeasure(intended time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !intended.Before(r.from)
}

// Latency is done minus intended, never negative (a reply cannot precede its due time
// except through clock granularity).
func Latency(intended, done time.Time) time.Duration {
	d := done.Sub(intended)
	if d < 0 {
		return 0
	}
	return d
}

// Record adds one completed operation that was due at intended and finished at done.
func (r *Recorder) Record(intended, done time.Time) {
	us := Latency(intended, done).Microseconds()
	if us < lowestMicros {
		us = lowestMicros
	}
	if us > highestMicros {
		us = highestMicros
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if intended.Before(r.from) {
		r.leadIn++
		return
	}
	_ = r.h.RecordValue(us)
	if sec := intended.Unix(); us > r.worst[sec] {
		r.worst[sec] = us
	}
	if r.first.IsZero() || intended.Before(r.first) {
		r.first = intended
	}
	if done.After(r.last) {
		r.last = done
	}
}

// Error counts a failed operation (it has no latency; it is reported beside the histogram).
func (r *Recorder) Error() {
	r.mu.Lock()
	r.errors++
	r.mu.Unlock()
}

// Count is the number of latencies recorded.
func (r *Recorder) Count() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.h.TotalCount()
}

// Merge adds every value of other into r.
func (r *Recorder) Merge(other *Recorder) {
	other.mu.Lock()
	h := hdrhistogram.Import(other.h.Export())
	errs, first, last, leadIn := other.errors, other.first, other.last, other.leadIn
	worst := maps.Clone(other.worst)
	other.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.h.Merge(h)
	for sec, us := range worst {
		r.worst[sec] = max(r.worst[sec], us)
	}
	r.errors += errs
	r.leadIn += leadIn
	if !first.IsZero() && (r.first.IsZero() || first.Before(r.first)) {
		r.first = first
	}
	if last.After(r.last) {
		r.last = last
	}
}

// Percentiles reported in every summary and drawn in the distribution plots.
var Percentiles = []float64{0, 50, 75, 90, 95, 99, 99.5, 99.9, 99.99, 100}

// Point is one percentile of a latency distribution.
type Point struct {
	Percentile float64 `json:"percentile"`
	Ms         float64 `json:"ms"`
}

// Summary is what a run reports about its latencies, in milliseconds.
type Summary struct {
	Count        int64   `json:"count"`
	Errors       int64   `json:"errors"`
	MeanMs       float64 `json:"mean_ms"`
	P50Ms        float64 `json:"p50_ms"`
	P90Ms        float64 `json:"p90_ms"`
	P99Ms        float64 `json:"p99_ms"`
	P999Ms       float64 `json:"p999_ms"`
	MaxMs        float64 `json:"max_ms"`
	Distribution []Point `json:"distribution"`
	// WorstSeconds are the seconds (by intended send time) with the highest latencies,
	// worst first, at most WorstSecondsKept.
	WorstSeconds []WorstSecond `json:"worst_seconds,omitempty"`
	// LeadIn is how many operations were due in the step's lead-in and left out of every
	// figure above (see Recorder.MeasureFrom); they still count as delivered or lost.
	LeadIn int64 `json:"lead_in,omitempty"`
}

// WorstSecondsKept is how many of a run's worst seconds a summary names.
const WorstSecondsKept = 5

// WorstSecond is the highest latency of the operations due in one second.
type WorstSecond struct {
	At    time.Time `json:"at"`
	MaxMs float64   `json:"max_ms"`
}

func usToMs(us int64) float64 { return float64(us) / 1000 }

// Summary computes the summary of what was recorded so far.
func (r *Recorder) Summary() Summary {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Summary{Count: r.h.TotalCount(), Errors: r.errors, LeadIn: r.leadIn}
	if s.Count == 0 {
		return s
	}
	s.MeanMs = r.h.Mean() / 1000
	s.P50Ms = usToMs(r.h.ValueAtQuantile(50))
	s.P90Ms = usToMs(r.h.ValueAtQuantile(90))
	s.P99Ms = usToMs(r.h.ValueAtQuantile(99))
	s.P999Ms = usToMs(r.h.ValueAtQuantile(99.9))
	s.MaxMs = usToMs(r.h.Max())
	for _, p := range Percentiles {
		v := r.h.ValueAtQuantile(p)
		if p == 0 {
			v = r.h.Min()
		}
		s.Distribution = append(s.Distribution, Point{Percentile: p, Ms: usToMs(v)})
	}
	for sec, us := range r.worst {
		s.WorstSeconds = append(s.WorstSeconds, WorstSecond{At: time.Unix(sec, 0).UTC(), MaxMs: usToMs(us)})
	}
	slices.SortFunc(s.WorstSeconds, func(a, b WorstSecond) int {
		if c := cmp.Compare(b.MaxMs, a.MaxMs); c != 0 {
			return c
		}
		return a.At.Compare(b.At)
	})
	s.WorstSeconds = s.WorstSeconds[:min(len(s.WorstSeconds), WorstSecondsKept)]
	return s
}

// Throughput is completions per second over the span from the first intended time to the
// last completion: a run that fell behind its schedule reports less than it offered.
func (r *Recorder) Throughput() float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return throughput(r.h.TotalCount(), r.first, r.last)
}

func throughput(n int64, first, last time.Time) float64 {
	span := last.Sub(first).Seconds()
	if n == 0 || span <= 0 {
		return 0
	}
	return float64(n) / span
}

// Round keeps numbers in results readable: 4 significant digits.
func Round(v float64) float64 {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return v
	}
	mag := math.Pow(10, 3-math.Floor(math.Log10(math.Abs(v))))
	return math.Round(v*mag) / mag
}
