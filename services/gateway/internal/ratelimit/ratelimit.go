// Package ratelimit holds the gateway's limiters: a token bucket on golang.org/x/time/rate
// (per connection, per user, per login account and address), a keyed set of buckets that forgets idle keys, and the
// abuse detector that tells a client sending far beyond its limit from one that merely
// bursts. It does no I/O and takes the time as an argument, so tests need no sleeping.
package ratelimit

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Rate is a sustained rate (tokens per second) and a burst (the bucket size). The zero
// Rate means "no limit".
type Rate struct {
	PerSecond float64 // tokens added per second; <= 0 disables the limit
	Burst     int     // bucket size; defaults to max(1, ceil(PerSecond))
}

// Enabled reports whether r limits anything.
func (r Rate) Enabled() bool { return r.PerSecond > 0 }

func (r Rate) burst() float64 {
	if r.Burst > 0 {
		return float64(r.Burst)
	}
	return max(1, float64(int(r.PerSecond+0.999999)))
}

// String renders r the way ParseRate reads it.
func (r Rate) String() string {
	if !r.Enabled() {
		return "off"
	}
	return fmt.Sprintf("%s/s:%d", strconv.FormatFloat(r.PerSecond, 'f', -1, 64), int(r.burst()))
}

// ParseRate reads "N/s", "N/m" or "N/h" with an optional ":burst" ("10/s:20",
// "5/m:5"), or "off"/"0" for no limit. It is what the gateway's rate flags take.
func ParseRate(s string) (Rate, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "off" || s == "0" {
		return Rate{}, nil
	}
	spec, burstStr, hasBurst := strings.Cut(s, ":")
	num, unit, ok := strings.Cut(spec, "/")
	if !ok {
		return Rate{}, fmt.Errorf("rate %q: want N/s, N/m or N/h, optionally with :burst", s)
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n < 0 {
		return Rate{}, fmt.Errorf("rate %q: %q is not a non-negative number", s, num)
	}
	var per time.Duration
	switch unit {
	case "s":
		per = time.Second
	case "m":
		per = time.Minute
	case "h":
		per = time.Hour
	default:
		return Rate{}, fmt.Errorf("rate %q: unit must be s, m or h", s)
	}
	r := Rate{PerSecond: n / per.Seconds()}
	if hasBurst {
		b, err := strconv.Atoi(burstStr)
		if err != nil || b < 1 {
			return Rate{}, fmt.Errorf("rate %q: burst must be a positive integer", s)
		}
		r.Burst = b
	} else if n > 0 {
		// "5/m" means five at once, then one every 12 s: the count is the natural burst.
		r.Burst = max(1, int(n))
	}
	return r, nil
}

// Bucket is a token bucket: a golang.org/x/time/rate Limiter driven by the caller's clock,
// plus the debt and refund that the gateway's limits need. The zero value is unusable; use
// NewBucket. Not safe for concurrent use on its own (the last reservation, kept for Refund,
// is unguarded): Keyed and the session guard theirs.
type Bucket struct {
	rate Rate
	lim  *rate.Limiter
	// taken is the last token Allow took and when, so that Refund can give it back.
	taken   *rate.Reservation
	takenAt time.Time
}

// NewBucket returns a full bucket.
func NewBucket(r Rate, now time.Time) *Bucket {
	b := &Bucket{rate: r}
	if r.Enabled() {
		b.lim = rate.NewLimiter(rate.Limit(r.PerSecond), int(r.burst()))
	}
	return b
}

// Allow takes one token if there is one. Otherwise it takes nothing and returns how long
// until one is available: the retry_after a client is told.
func (b *Bucket) Allow(now time.Time) (bool, time.Duration) {
	if !b.rate.Enabled() {
		return true, 0
	}
	r := b.lim.ReserveN(now, 1)
	if wait := r.DelayFrom(now); wait > 0 {
		// A refused request takes nothing: the reservation is handed back at once.
		r.CancelAt(now)
		return false, wait
	}
	b.taken, b.takenAt = r, now
	return true, 0
}

// Check reports whether a token is available without taking it, and the wait if not.
func (b *Bucket) Check(now time.Time) (bool, time.Duration) {
	if !b.rate.Enabled() || b.lim.TokensAt(now) >= 1 {
		return true, 0
	}
	// The limiter tells the wait only through a reservation; this one is handed back.
	r := b.lim.ReserveN(now, 1)
	wait := r.DelayFrom(now)
	r.CancelAt(now)
	return false, wait
}

// Take removes one token, going into debt if there is none (a failed login is charged
// after the fact, when it is known to have failed). The debt stops at one burst, so that
// a key hammered for hours is not locked out for hours after it stops.
func (b *Bucket) Take(now time.Time) {
	if !b.rate.Enabled() || b.lim.TokensAt(now)-1 < -b.rate.burst() {
		return
	}
	b.lim.ReserveN(now, 1)
}

// Refund gives back the token the last Allow took, for work that was then refused for
// another reason, so that a rejected request does not count twice.
func (b *Bucket) Refund() {
	if b.taken != nil {
		b.taken.CancelAt(b.takenAt)
		b.taken = nil
	}
}

// full reports whether the bucket is back at its burst (an idle key can be forgotten).
func (b *Bucket) full(now time.Time) bool {
	return !b.rate.Enabled() || b.lim.TokensAt(now) >= b.rate.burst()
}

// Keyed is a set of buckets of one rate, one per key (a user id, a username, an address).
// Buckets that have refilled completely are forgotten by Sweep, so memory follows the
// number of recently active keys. Safe for concurrent use.
type Keyed struct {
	rate Rate
	mu   sync.Mutex
	b    map[string]*Bucket
}

// NewKeyed returns an empty set.
func NewKeyed(r Rate) *Keyed { return &Keyed{rate: r, b: map[string]*Bucket{}} }

// Rate returns the configured rate.
func (k *Keyed) Rate() Rate { return k.rate }

func (k *Keyed) get(key string, now time.Time) *Bucket {
	b := k.b[key]
	if b == nil {
		b = NewBucket(k.rate, now)
		k.b[key] = b
	}
	return b
}

// Allow takes a token from key's bucket (see Bucket.Allow).
func (k *Keyed) Allow(key string, now time.Time) (bool, time.Duration) {
	if !k.rate.Enabled() {
		return true, 0
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.get(key, now).Allow(now)
}

// Check looks at key's bucket without taking a token.
func (k *Keyed) Check(key string, now time.Time) (bool, time.Duration) {
	if !k.rate.Enabled() {
		return true, 0
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.get(key, now).Check(now)
}

// Take charges key one token, into debt if need be.
func (k *Keyed) Take(key string, now time.Time) {
	if !k.rate.Enabled() {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.get(key, now).Take(now)
}

// Refund returns a token to key's bucket.
func (k *Keyed) Refund(key string) {
	if !k.rate.Enabled() {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if b := k.b[key]; b != nil {
		b.Refund()
	}
}

// Sweep forgets the buckets that are full again and returns how many remain.
func (k *Keyed) Sweep(now time.Time) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	for key, b := range k.b {
		if b.full(now) {
			delete(k.b, key)
		}
	}
	return len(k.b)
}

// Len is the number of keys held.
func (k *Keyed) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.b)
}

// Abuse decides when a connection is not bursting but flooding: it counts attempts in
// one-second slots and reports abuse once the attempts of the last Window exceed Factor
// times what the allowed rate lets through in that time (burst included). A client that
// retries politely after retry_after_ms never gets there; one that ignores the answers
// and keeps going at several times its limit does. Not safe for concurrent use.
type Abuse struct {
	limit float64 // attempts allowed in the window
	slots []int
	at    []int64 // the second each slot counts
}

// NewAbuse returns a detector for rate over window with factor; nil if any is zero
// (detection off).
func NewAbuse(r Rate, factor float64, window time.Duration) *Abuse {
	secs := int(window / time.Second)
	if !r.Enabled() || factor <= 0 || secs <= 0 {
		return nil
	}
	return &Abuse{limit: factor * (r.PerSecond*float64(secs) + r.burst()), slots: make([]int, secs), at: make([]int64, secs)}
}

// Attempt counts one attempt at now and reports whether the window is now abusive.
func (a *Abuse) Attempt(now time.Time) bool {
	if a == nil {
		return false
	}
	sec := now.Unix()
	i := int(sec % int64(len(a.slots)))
	if a.at[i] != sec {
		a.at[i], a.slots[i] = sec, 0
	}
	a.slots[i]++
	total := 0
	for j, n := range a.slots {
		if sec-a.at[j] < int64(len(a.slots)) {
			total += n
		}
	}
	return float64(total) > a.limit
}
