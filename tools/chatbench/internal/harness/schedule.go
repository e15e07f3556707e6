// Package harness is chatbench's measuring core: an open-loop schedule that fixes every
// send time in advance, latency recording from those intended times into HdrHistograms
// (so that a stall shows up as latency, not as a quietly lower rate: no coordinated
// omission), and the figure/baseline/ratio/target arithmetic of the results.
package harness

import (
	"context"
	"time"
)

// Schedule is an open-loop plan: send i is due at Start + i/Rate, whatever happened to
// the sends before it. Nothing waits for a reply before the next send is due.
type Schedule struct {
	Start time.Time
	Rate  float64 // sends per second, > 0
	Count int     // number of sends
}

// NewSchedule plans count sends at rate per second, the first one at start.
func NewSchedule(start time.Time, rate float64, count int) Schedule {
	return Schedule{Start: start, Rate: rate, Count: count}
}

// Intended returns when send i is due. The offset is computed from i directly (not by
// adding an interval count times), so there is no drift however long the run.
func (s Schedule) Intended(i int) time.Time {
	return s.Start.Add(s.Offset(i))
}

// Offset is send i's due time relative to Start.
func (s Schedule) Offset(i int) time.Duration {
	return time.Duration(float64(i) * float64(time.Second) / s.Rate)
}

// Duration is the span from the first to one interval after the last due time.
func (s Schedule) Duration() time.Duration { return s.Offset(s.Count) }

// Due returns how many sends are due at time now (those with Intended(i) <= now),
// capped at Count.
func (s Schedule) Due(now time.Time) int {
	if now.Before(s.Start) {
		return 0
	}
	n := int(float64(now.Sub(s.Start))*s.Rate/float64(time.Second)) + 1
	// Guard against float rounding at the boundary.
	for n > 0 && s.Intended(n-1).After(now) {
		n--
	}
	for n < s.Count && !s.Intended(n).After(now) {
		n++
	}
	return min(n, s.Count)
}

// RunStats says how well the sender kept to the schedule.
type RunStats struct {
	Fired   int           // sends started
	MaxLate time.Duration // worst gap between a send's due time and when fire was called
	// FirstLate is how late the first send started. Nothing was sent before it, so it is
	// the load generator's own delay (work done between fixing the schedule and running
	// it), never the system's: it should be about zero.
	FirstLate time.Duration
}

// Run calls fire(i, intended) for every send, in order, as soon as it is due. fire should
// hand the work off and return; if it blocks, later sends start late, but each keeps its
// own intended time, so the lateness is charged to their latency (wrk2-style correction).
// Run returns early, with what was fired, when ctx ends.
func (s Schedule) Run(ctx context.Context, fire func(i int, intended time.Time)) RunStats {
	var st RunStats
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for i := 0; i < s.Count; {
		now := time.Now()
		due := s.Due(now)
		for ; i < due; i++ {
			if ctx.Err() != nil {
				return st
			}
			intended := s.Intended(i)
			late := time.Since(intended)
			if late > st.MaxLate {
				st.MaxLate = late
			}
			if i == 0 {
				st.FirstLate = max(late, 0)
			}
			fire(i, intended)
			st.Fired++
		}
		if i >= s.Count {
			break
		}
		wait := time.Until(s.Intended(i))
		if wait <= 0 {
			continue
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return st
		case <-timer.C:
		}
	}
	return st
}
