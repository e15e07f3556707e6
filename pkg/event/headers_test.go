package event

import (
	"errors"
	"testing"
	"time"
)

func TestHeadersRoundTrip(t *testing.T) {
	base := time.Date(2025, 5, 1, 12, 0, 0, 1, time.UTC)
	tests := []struct {
		name string
		opts []Option
	}{
		{"without traceparent", []Option{WithTime(base)}},
		{"with traceparent", []Option{WithTime(base), WithTraceParent(testTraceParent)}},
		{"non-UTC time", []Option{WithTime(base.In(time.FixedZone("X", -7*3600)))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustNew(t, samplePayloads()[TypeMessageStored], tt.opts...)
			hs := Headers(e)

			want := map[string]string{
				HeaderID:          e.ID,
				HeaderType:        TypeMessageStored,
				HeaderSource:      "kchat/test/unit",
				HeaderSubject:     "dm-u-alice-u-bob",
				HeaderTime:        "2025-05-01T12:00:00.000000001Z",
				HeaderContentType: ContentTypeCloudEvents,
			}
			if e.TraceParent != "" {
				want[HeaderTraceParent] = e.TraceParent
			}
			if len(hs) != len(want) {
				t.Errorf("got %d headers, want %d: %v", len(hs), len(want), hs)
			}
			for k, v := range want {
				if got, ok := HeaderValue(hs, k); !ok || got != v {
					t.Errorf("header %s = %q (present %v), want %q", k, got, ok, v)
				}
			}

			m, err := ParseHeaders(hs)
			if err != nil {
				t.Fatal(err)
			}
			wantMeta := Meta{ID: e.ID, Type: e.Type, Source: e.Source, Subject: e.Subject, Time: e.Time, TraceParent: e.TraceParent}
			if m != wantMeta {
				t.Fatalf("ParseHeaders = %+v, want %+v", m, wantMeta)
			}
		})
	}
}

func TestParseHeadersRejects(t *testing.T) {
	good := Headers(mustNew(t, samplePayloads()[TypeTyping], WithTraceParent(testTraceParent)))
	without := func(key string) []Header {
		var out []Header
		for _, h := range good {
			if h.Key != key {
				out = append(out, h)
			}
		}
		return out
	}
	with := func(key, value string) []Header {
		return append(append([]Header(nil), good...), Header{Key: key, Value: []byte(value)})
	}
	tests := []struct {
		name  string
		hs    []Header
		field string
	}{
		{"no headers", nil, HeaderID},
		{"missing id", without(HeaderID), HeaderID},
		{"missing type", without(HeaderType), HeaderType},
		{"missing source", without(HeaderSource), HeaderSource},
		{"missing subject", without(HeaderSubject), HeaderSubject},
		{"missing time", without(HeaderTime), HeaderTime},
		{"empty type", with(HeaderType, ""), HeaderType},
		{"bad id", with(HeaderID, "not-a-uuid"), HeaderID},
		{"bad time", with(HeaderTime, "yesterday"), HeaderTime},
		{"bad traceparent", with(HeaderTraceParent, "01-xyz"), HeaderTraceParent},
		{"binary content type", with(HeaderContentType, "application/json"), HeaderContentType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseHeaders(tt.hs)
			assertFieldErr(t, err, tt.field)
		})
	}

	// Only the last value of a repeated header counts.
	m, err := ParseHeaders(with(HeaderSubject, "room-override"))
	if err != nil || m.Subject != "room-override" {
		t.Fatalf("last header should win: %+v, %v", m, err)
	}
	// Headers without content-type (e.g. from older producers) are accepted.
	if _, err := ParseHeaders(without(HeaderContentType)); errors.Is(err, ErrInvalid) {
		t.Fatalf("missing content-type rejected: %v", err)
	}
}
