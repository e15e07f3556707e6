package main

import (
	"flag"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestScheduleFlags(t *testing.T) {
	plan := func() ([]float64, time.Duration) { return []float64{500, 2000, 5000}, 10 * time.Second }
	tests := []struct {
		name      string
		args      []string
		wantRates []float64
		wantDur   time.Duration
		wantGiven bool
		wantErr   string
	}{
		{name: "nothing given keeps the plan", wantRates: []float64{500, 2000, 5000}, wantDur: 10 * time.Second},
		{name: "rates and duration", args: []string{"-hop-rates", "500, 2000", "-hop-duration", "60s"},
			wantRates: []float64{500, 2000}, wantDur: time.Minute, wantGiven: true},
		{name: "duration alone", args: []string{"-hop-duration", "1m30s"}, wantRates: []float64{500, 2000, 5000}, wantDur: 90 * time.Second},
		{name: "fractional rate", args: []string{"-hop-rates", "0.5"}, wantRates: []float64{0.5}, wantDur: 10 * time.Second, wantGiven: true},
		{name: "zero rate refused", args: []string{"-hop-rates", "500,0"}, wantErr: `-hop-rates: "0" is not a positive rate`},
		{name: "word refused", args: []string{"-hop-rates", "fast"}, wantErr: `-hop-rates: "fast" is not a positive rate`},
		{name: "NaN refused", args: []string{"-hop-rates", "NaN"}, wantErr: `"NaN" is not a positive rate`},
		{name: "empty list refused", args: []string{"-hop-rates", " , "}, wantErr: "-hop-rates: no rate given"},
		{name: "negative duration refused", args: []string{"-hop-duration", "-1s"}, wantErr: "-hop-duration must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("chatbench", flag.ContinueOnError)
			sf := newScheduleFlags(fs, "hop")
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			rates, dur := plan()
			given, err := sf.apply(&rates, &dur)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				planRates, planDur := plan()
				if !slices.Equal(rates, planRates) || dur != planDur {
					t.Fatalf("a refused flag changed the plan to %v %v", rates, dur)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(rates, tt.wantRates) || dur != tt.wantDur || given != tt.wantGiven {
				t.Fatalf("got %v %v given=%v, want %v %v given=%v", rates, dur, given, tt.wantRates, tt.wantDur, tt.wantGiven)
			}
		})
	}
}
