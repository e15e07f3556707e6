package harness

import (
	"fmt"
	"math"
	"strings"
)

// Target kinds: what a figure must satisfy.
const (
	RatioAtLeast = "ratio>=" // Value/Baseline >= Limit
	RatioAtMost  = "ratio<=" // Value/Baseline <= Limit
	ValueBelow   = "value<"  // Value < Limit (absolute, in the figure's unit)
	ValueAtMost  = "value<=" // Value <= Limit (absolute)
)

// Target is one goal of a figure.
type Target struct {
	Kind  string  `json:"kind"`
	Limit float64 `json:"limit"`
}

// String renders the target for the table, e.g. "≥ 0.75×" or "< 50 ms".
func (t Target) String(unit string) string {
	switch t.Kind {
	case RatioAtLeast:
		return fmt.Sprintf("≥ %g×", t.Limit)
	case RatioAtMost:
		return fmt.Sprintf("≤ %g×", t.Limit)
	case ValueBelow:
		return fmt.Sprintf("< %g %s", t.Limit, unit)
	case ValueAtMost:
		return fmt.Sprintf("≤ %g %s", t.Limit, unit)
	}
	return t.Kind
}

// Met reports whether value (with ratio, when the baseline is known) satisfies t. A ratio
// target without a usable ratio is not met.
func (t Target) Met(value float64, ratio *float64) bool {
	switch t.Kind {
	case RatioAtLeast:
		return ratio != nil && *ratio >= t.Limit
	case RatioAtMost:
		return ratio != nil && *ratio <= t.Limit
	case ValueBelow:
		return value < t.Limit
	case ValueAtMost:
		return value <= t.Limit
	}
	return false
}

// Figure is one line of the results table: a measured value, the baseline it is compared
// with (measured in the same run unless BaselineName says it is a published reference),
// their ratio, and the targets.
type Figure struct {
	Scenario     string   `json:"scenario"`
	Name         string   `json:"name"`
	Unit         string   `json:"unit"`
	Value        float64  `json:"value"`
	BaselineName string   `json:"baseline_name,omitempty"`
	Baseline     *float64 `json:"baseline,omitempty"`
	// Ratio is Value/Baseline; absent when there is no baseline or it is zero.
	Ratio   *float64 `json:"ratio,omitempty"`
	Targets []Target `json:"targets,omitempty"`
	// Met is absent for context figures without a target.
	Met  *bool  `json:"met,omitempty"`
	Note string `json:"note,omitempty"`
}

// Ratio returns value/baseline, or nil when the ratio means nothing (no baseline, a zero
// baseline, or a non-finite result).
func Ratio(value, baseline float64) *float64 {
	if baseline == 0 || math.IsNaN(baseline) || math.IsNaN(value) {
		return nil
	}
	r := value / baseline
	if math.IsInf(r, 0) || math.IsNaN(r) {
		return nil
	}
	return &r
}

// NewFigure builds a figure and evaluates its ratio and targets. baseline may be nil.
func NewFigure(scenario, name, unit string, value float64, baselineName string, baseline *float64, targets ...Target) Figure {
	f := Figure{Scenario: scenario, Name: name, Unit: unit, Value: value, BaselineName: baselineName, Targets: targets}
	if baseline != nil {
		b := *baseline
		f.Baseline = &b
		f.Ratio = Ratio(value, b)
	}
	if len(targets) > 0 {
		met := true
		for _, t := range targets {
			met = met && t.Met(value, f.Ratio)
		}
		f.Met = &met
	}
	return f
}

// NoData marks a figure whose run measured nothing (no operation completed within the
// wait): its value is not a latency of zero, so it has no ratio and misses its targets.
func (f *Figure) NoData(why string) {
	f.Ratio = nil
	if f.Met != nil {
		m := false
		f.Met = &m
	}
	f.Note = strings.TrimSpace("NO DATA: " + why + ". " + f.Note)
}

// F is a convenience for a baseline value.
func F(v float64) *float64 { return &v }

// TargetString renders all targets of f.
func (f Figure) TargetString() string {
	if len(f.Targets) == 0 {
		return "—"
	}
	parts := make([]string, len(f.Targets))
	for i, t := range f.Targets {
		parts[i] = t.String(f.Unit)
	}
	return strings.Join(parts, " and ")
}

// MetString renders f.Met.
func (f Figure) MetString() string {
	switch {
	case f.Met == nil:
		return "—"
	case *f.Met:
		return "yes"
	default:
		return "NO"
	}
}

// Step is one fixed-rate run of a rate search.
type Step struct {
	Rate       float64 `json:"offered_per_s"`
	Throughput float64 `json:"achieved_per_s"`
	Latency    Summary `json:"latency"`
	Lost       int64   `json:"lost,omitempty"`
}

// Passes reports whether a step kept the latency goal: p99 under limitMs with no errors
// and nothing lost. No separate "achieved rate" test is needed: latency is measured from
// the intended send times, so a system that falls behind the offered rate accumulates
// latency and fails on p99.
func (s Step) Passes(limitMs float64) bool {
	return s.Latency.Count > 0 && s.Latency.P99Ms < limitMs && s.Latency.Errors == 0 && s.Lost == 0
}

// MaxPassingRate is the highest offered rate of steps (in the order they ran, lowest
// first) reached before the first failing step; 0 if the first step failed.
func MaxPassingRate(steps []Step, limitMs float64) float64 {
	best := 0.0
	for _, s := range steps {
		if !s.Passes(limitMs) {
			break
		}
		best = s.Rate
	}
	return best
}
