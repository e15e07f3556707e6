package event

import (
	"fmt"
	"time"
)

// Kafka header keys written by Headers. The ce_ prefix follows the
// CloudEvents Kafka binding so that generic tooling recognises them.
const (
	HeaderID          = "ce_id"
	HeaderType        = "ce_type"
	HeaderSource      = "ce_source"
	HeaderSubject     = "ce_subject"
	HeaderTime        = "ce_time"
	HeaderTraceParent = "traceparent"
	HeaderContentType = "content-type"

	// HeaderUsers lists, comma-separated, the users whose set of rooms a stored timeline
	// entry changes (the user who joined or left; a DM's members). It is not a
	// CloudEvents attribute: gateways use it to skip entries no connection of theirs
	// needs without decoding them.
	HeaderUsers = "kchat_users"
)

// Header is a Kafka record header. It mirrors kafka-go's Header so that
// this package does not depend on a Kafka client.
type Header struct {
	Key   string
	Value []byte
}

// Headers returns the headers to attach to a record whose value is
// Encode(e). The record value stays authoritative; the headers let routers,
// dead-letter tooling and tracing read the essentials without parsing it.
func Headers(e Envelope) []Header {
	hs := []Header{
		{Key: HeaderID, Value: []byte(e.ID)},
		{Key: HeaderType, Value: []byte(e.Type)},
		{Key: HeaderSource, Value: []byte(e.Source)},
		{Key: HeaderSubject, Value: []byte(e.Subject)},
		{Key: HeaderTime, Value: []byte(e.Time.UTC().Format(timeLayout))},
	}
	if e.TraceParent != "" {
		hs = append(hs, Header{Key: HeaderTraceParent, Value: []byte(e.TraceParent)})
	}
	return append(hs, Header{Key: HeaderContentType, Value: []byte(ContentTypeCloudEvents)})
}

// HeaderValue returns the value of the last header with the given key.
// The last one wins because a relay that rewrites a header appends it.
func HeaderValue(hs []Header, key string) (string, bool) {
	for i := len(hs) - 1; i >= 0; i-- {
		if hs[i].Key == key {
			return string(hs[i].Value), true
		}
	}
	return "", false
}

// Meta is the subset of envelope attributes carried in Kafka headers.
type Meta struct {
	ID          string
	Type        string
	Source      string
	Subject     string
	Time        time.Time
	TraceParent string
}

// ParseHeaders reads the attributes written by Headers. Missing or
// malformed headers are reported as *FieldError naming the header key.
func ParseHeaders(hs []Header) (Meta, error) {
	var m Meta
	if ct, ok := HeaderValue(hs, HeaderContentType); ok && ct != ContentTypeCloudEvents {
		return Meta{}, fieldErr(HeaderContentType, "must be "+ContentTypeCloudEvents)
	}
	for _, h := range []struct {
		key string
		dst *string
	}{
		{HeaderID, &m.ID},
		{HeaderType, &m.Type},
		{HeaderSource, &m.Source},
		{HeaderSubject, &m.Subject},
	} {
		v, ok := HeaderValue(hs, h.key)
		if !ok || v == "" {
			return Meta{}, fieldErr(h.key, "header is required")
		}
		*h.dst = v
	}
	if !isUUIDv7(m.ID) {
		return Meta{}, fieldErr(HeaderID, "must be a UUIDv7 in canonical form")
	}
	ts, ok := HeaderValue(hs, HeaderTime)
	if !ok || ts == "" {
		return Meta{}, fieldErr(HeaderTime, "header is required")
	}
	t, err := time.Parse(time.RFC3339, ts)
	if err != nil {
		return Meta{}, fieldErr(HeaderTime, fmt.Sprintf("must be an RFC 3339 timestamp: %q", ts))
	}
	m.Time = t.UTC()
	if tp, ok := HeaderValue(hs, HeaderTraceParent); ok {
		if !isTraceParent(tp) {
			return Meta{}, fieldErr(HeaderTraceParent, "must match 00-<32 hex>-<16 hex>-<2 hex> with non-zero ids")
		}
		m.TraceParent = tp
	}
	return m, nil
}
