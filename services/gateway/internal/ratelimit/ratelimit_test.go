package ratelimit_test

import (
	"testing"
	"time"

	"github.com/kchat/kchat/services/gateway/internal/ratelimit"
)

func TestParseRate(t *testing.T) {
	tests := []struct {
		in      string
		want    ratelimit.Rate
		wantErr bool
	}{
		{"10/s:20", ratelimit.Rate{PerSecond: 10, Burst: 20}, false},
		{"10/s", ratelimit.Rate{PerSecond: 10, Burst: 10}, false},
		{"5/m", ratelimit.Rate{PerSecond: 5.0 / 60, Burst: 5}, false},
		{"3600/h:1", ratelimit.Rate{PerSecond: 1, Burst: 1}, false},
		{"off", ratelimit.Rate{}, false},
		{"0", ratelimit.Rate{}, false},
		{"", ratelimit.Rate{}, false},
		{"10", ratelimit.Rate{}, true},
		{"10/d", ratelimit.Rate{}, true},
		{"x/s", ratelimit.Rate{}, true},
		{"-1/s", ratelimit.Rate{}, true},
		{"10/s:0", ratelimit.Rate{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ratelimit.ParseRate(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestBucket(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name string
		rate ratelimit.Rate
		// at lists attempt times (ms after t0); want the expected verdicts.
		at   []int
		want []bool
		// lastWait is the retry_after of the last attempt (when refused).
		lastWait time.Duration
	}{
		{"burst then refused", ratelimit.Rate{PerSecond: 10, Burst: 3}, []int{0, 0, 0, 0}, []bool{true, true, true, false}, 100 * time.Millisecond},
		{"refills at the rate", ratelimit.Rate{PerSecond: 10, Burst: 1}, []int{0, 50, 100, 150, 200}, []bool{true, false, true, false, true}, 0},
		{"retry_after counts down", ratelimit.Rate{PerSecond: 2, Burst: 1}, []int{0, 100}, []bool{true, false}, 400 * time.Millisecond},
		{"never fuller than the burst", ratelimit.Rate{PerSecond: 100, Burst: 2}, []int{0, 5000, 5000, 5000}, []bool{true, true, true, false}, 10 * time.Millisecond},
		{"off allows everything", ratelimit.Rate{}, []int{0, 0, 0}, []bool{true, true, true}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := ratelimit.NewBucket(tc.rate, t0)
			var wait time.Duration
			for i, ms := range tc.at {
				var ok bool
				ok, wait = b.Allow(t0.Add(time.Duration(ms) * time.Millisecond))
				if ok != tc.want[i] {
					t.Fatalf("attempt %d at %dms: allowed %v, want %v", i, ms, ok, tc.want[i])
				}
			}
			if d := wait - tc.lastWait; d > time.Millisecond || d < -time.Millisecond {
				t.Fatalf("retry after %v, want %v", wait, tc.lastWait)
			}
		})
	}
}

func TestKeyed_separate_keys_and_sweep(t *testing.T) {
	t0 := time.Unix(1000, 0)
	k := ratelimit.NewKeyed(ratelimit.Rate{PerSecond: 1, Burst: 1})
	if ok, _ := k.Allow("a", t0); !ok {
		t.Fatal("first a refused")
	}
	if ok, _ := k.Allow("a", t0); ok {
		t.Fatal("second a allowed")
	}
	if ok, _ := k.Allow("b", t0); !ok {
		t.Fatal("b is limited by a's bucket")
	}
	k.Refund("a")
	if ok, _ := k.Check("a", t0); !ok {
		t.Fatal("refund did not give the token back")
	}
	k.Take("a", t0)
	k.Take("a", t0) // debt
	if ok, wait := k.Check("a", t0.Add(time.Second)); ok || wait < 900*time.Millisecond {
		t.Fatalf("debt not kept: ok %v wait %v", ok, wait)
	}
	if n := k.Sweep(t0.Add(10 * time.Second)); n != 0 {
		t.Fatalf("%d idle keys kept", n)
	}
}

func TestAbuse(t *testing.T) {
	t0 := time.Unix(1000, 0)
	rate := ratelimit.Rate{PerSecond: 10, Burst: 20}
	tests := []struct {
		name     string
		perSec   int // attempts per second, sustained
		seconds  int
		wantFlag bool
	}{
		{"at the limit", 10, 30, false},
		{"twice the limit", 20, 30, false},
		{"five times the limit for ten seconds", 61, 10, true},
		{"five times the limit for two seconds", 61, 2, false},
		{"a flood in one second", 700, 1, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := ratelimit.NewAbuse(rate, 5, 10*time.Second)
			flagged := false
			for s := range tc.seconds {
				for i := range tc.perSec {
					at := t0.Add(time.Duration(s)*time.Second + time.Duration(i)*time.Second/time.Duration(tc.perSec))
					flagged = a.Attempt(at) || flagged
				}
			}
			if flagged != tc.wantFlag {
				t.Fatalf("flagged %v, want %v", flagged, tc.wantFlag)
			}
		})
	}
	if ratelimit.NewAbuse(ratelimit.Rate{}, 5, 10*time.Second) != nil || ratelimit.NewAbuse(rate, 0, time.Second) != nil {
		t.Fatal("detector built although disabled")
	}
	var off *ratelimit.Abuse
	if off.Attempt(t0) {
		t.Fatal("nil detector flagged")
	}
}

func TestBucket_refund_and_debt(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := ratelimit.NewBucket(ratelimit.Rate{PerSecond: 1, Burst: 2}, t0)
	b.Allow(t0)
	b.Allow(t0)
	b.Refund()
	b.Refund() // only the last token taken comes back
	if ok, _ := b.Allow(t0); !ok {
		t.Fatal("refunded token not available")
	}
	if ok, _ := b.Allow(t0); ok {
		t.Fatal("second refund gave back a token")
	}
	for range 10 {
		b.Take(t0)
	}
	// The debt stops at one burst: empty plus two owed is three seconds away.
	if ok, wait := b.Check(t0); ok || wait > 3*time.Second {
		t.Fatalf("debt not bounded: ok %v wait %v", ok, wait)
	}
}
