package main

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/kchat/kchat/pkg/service"
)

// scheduleFlags are one scenario's -<name>-rates and -<name>-duration flags. The hop and
// e2e scenarios have both, so that a baseline can be measured at the same rates and for
// as long as the figure it is compared with: a p99 over 10 s and one over 60 s are
// different statistics (one broker pause moves the first, README "eleventh round").
type scheduleFlags struct {
	name  string
	rates string
	dur   time.Duration
}

func newScheduleFlags(fs *flag.FlagSet, name string) *scheduleFlags {
	f := &scheduleFlags{name: name}
	fs.StringVar(&f.rates, name+"-rates", "", name+": comma-separated rates in msg/s (default: the plan's)")
	fs.DurationVar(&f.dur, name+"-duration", 0, name+": how long each rate runs (default: the plan's)")
	return f
}

// apply replaces rates and dur with what was given; a malformed value is an error naming
// its flag, and leaves both as they were. It reports whether rates were given.
func (f *scheduleFlags) apply(rates *[]float64, dur *time.Duration) (bool, error) {
	if f.dur < 0 {
		return false, fmt.Errorf("-%s-duration must not be negative", f.name)
	}
	var given []float64
	if f.rates != "" {
		r, err := parseRates(f.rates)
		if err != nil {
			return false, fmt.Errorf("-%s-rates: %w", f.name, err)
		}
		given = r
	}
	if f.dur > 0 {
		*dur = f.dur
	}
	if given != nil {
		*rates = given
	}
	return given != nil, nil
}

// parseRates reads a comma-separated list of positive rates.
func parseRates(s string) ([]float64, error) {
	var rates []float64
	for _, f := range service.SplitList(s) {
		r, err := strconv.ParseFloat(f, 64)
		if err != nil || r <= 0 || math.IsInf(r, 0) || math.IsNaN(r) {
			return nil, fmt.Errorf("%q is not a positive rate", f)
		}
		rates = append(rates, r)
	}
	if len(rates) == 0 {
		return nil, errors.New("no rate given")
	}
	return rates, nil
}

// leadInGiven reports whether -lead-in was on the command line: 0 is a valid lead-in, so
// only its presence tells "none" from "the plan's".
func leadInGiven(fs *flag.FlagSet) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == "lead-in" })
	return given
}
