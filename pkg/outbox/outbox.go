// Package outbox is the transactional outbox: the table that lets a PostgreSQL change and
// the event announcing it commit together. NewRow builds a row, Insert (or CopyFrom, for
// large batches) writes rows, and Row.Message is the record a row becomes; the Relay (run
// by persistence) publishes every committed row to its topic with its key, payload and
// headers, and marks it sent; Direct lets a writer publish its own rows right after its
// commit, the Relay taking over if it fails; the Cleaner deletes what retention allows.
// A crash between publishing and marking republishes a row, so consumers must be
// idempotent (they dedupe by event id or by room and seq).
//
// Write rows inside the transaction of the change they announce (Insert takes anything
// with Exec, such as a pgx.Tx); a row written outside it is a dual write again.
package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/event"
)

// ErrEmpty reports a row without a topic or key: the relay could not route it.
var ErrEmpty = errors.New("outbox: topic and key are required")

// Row is one outbox row: an encoded event for a real (prefixed) topic name, under key.
type Row struct {
	Topic   string
	Key     string
	Payload []byte
	// Headers is the JSON object of the Kafka headers the relay sets (event.Headers of
	// the payload's envelope: ce_id, ce_type, ...), the same ones pkg/producer.Message sets.
	Headers []byte
	// RelayAfter, if set, keeps the relay off the row until then: its writer publishes it
	// itself right after the commit and then Settles it (see Settle). Zero: the relay's
	// from the start.
	RelayAfter time.Time

	kafkaHeaders []kafka.Header // Headers as the relay sends them, kept by NewRow
}

// NewRow encodes e as the row the relay publishes to topic under key, with e's headers
// (event.Headers) plus extra ones (which replace e's of the same key), such as headers
// that let consumers skip a record without decoding it.
func NewRow(topic, key string, e event.Envelope, extra ...kafka.Header) (Row, error) {
	if topic == "" || key == "" {
		return Row{}, ErrEmpty
	}
	payload, err := event.Encode(e)
	if err != nil {
		return Row{}, fmt.Errorf("cannot encode %s: %w", e.Type, err)
	}
	hs := event.Headers(e)
	m := make(map[string]string, len(hs)+len(extra))
	for _, h := range hs {
		m[h.Key] = string(h.Value)
	}
	for _, h := range extra {
		m[h.Key] = string(h.Value)
	}
	headers, err := json.Marshal(m)
	if err != nil {
		return Row{}, fmt.Errorf("cannot encode headers: %w", err)
	}
	return Row{Topic: topic, Key: key, Payload: payload, Headers: headers, kafkaHeaders: sortedHeaders(m)}, nil
}

// Message is the Kafka record the relay sends for r: its topic, key, payload and
// headers sorted by key. A writer that publishes its own rows (Direct, RelayAfter) sends
// this, so that its record and a later republication by the relay are identical. It fails
// only for a Row whose Headers were set by hand and are not a JSON object of strings.
func (r Row) Message() (kafka.Message, error) {
	hs := r.kafkaHeaders
	if hs == nil && len(r.Headers) > 0 {
		var m map[string]string
		if err := json.Unmarshal(r.Headers, &m); err != nil {
			return kafka.Message{}, fmt.Errorf("cannot decode outbox headers: %w", err)
		}
		hs = sortedHeaders(m)
	}
	return kafka.Message{Topic: r.Topic, Key: []byte(r.Key), Value: r.Payload, Headers: hs}, nil
}

// sortedHeaders turns a header object into Kafka headers sorted by key: the one order
// of a row's headers, whether its writer or the relay (reading it back) publishes it.
func sortedHeaders(m map[string]string) []kafka.Header {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	hs := make([]kafka.Header, len(keys))
	for i, k := range keys {
		hs[i] = kafka.Header{Key: k, Value: []byte(m[k])}
	}
	return hs
}

// Execer is what Insert needs: a pgx.Tx (the point), a *pgx.Conn or a pool.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Insert writes rows in the order given, which is the order the relay publishes one
// transaction's rows in (and so, for rows of one key, the order consumers see them).
// Rows without RelayAfter are the relay's from the start: the insert's trigger wakes it
// when the transaction commits.
func Insert(ctx context.Context, db Execer, rows ...Row) error {
	if len(rows) == 0 {
		return nil
	}
	topics, keys, payloads, headers := make([]string, len(rows)), make([]string, len(rows)), make([][]byte, len(rows)), make([]string, len(rows))
	relayAfter := make([]*time.Time, len(rows))
	for i, r := range rows {
		if r.Topic == "" || r.Key == "" {
			return ErrEmpty
		}
		h := r.Headers
		if len(h) == 0 {
			h = []byte("{}")
		}
		topics[i], keys[i], payloads[i], headers[i] = r.Topic, r.Key, r.Payload, string(h)
		if !r.RelayAfter.IsZero() {
			relayAfter[i] = &rows[i].RelayAfter
		}
	}
	// ORDER BY the ordinality keeps the ids (and so the relay's order) as given.
	if _, err := db.Exec(ctx, `
		INSERT INTO outbox (topic, key, payload, headers, relay_after)
		SELECT t, k, p, h::jsonb, a FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[], $5::timestamptz[])
			WITH ORDINALITY AS x(t, k, p, h, a, n)
		ORDER BY n`, topics, keys, payloads, headers, relayAfter); err != nil {
		return fmt.Errorf("cannot write outbox: %w", err)
	}
	return nil
}

// Copier is what CopyFrom needs: a pgx.Tx (the point) or a *pgx.Conn.
type Copier interface {
	CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error)
}

var copyColumns = []string{"topic", "key", "payload", "headers", "relay_after"}

// CopyFrom writes rows like Insert, with COPY: PostgreSQL spends much less per row on it
// than on INSERT ... SELECT FROM unnest, which matters for large batches. The rows keep
// the order given, and COPY fires the outbox's statement trigger (waking the relay) like
// INSERT does.
func CopyFrom(ctx context.Context, db Copier, rows ...Row) error {
	if len(rows) == 0 {
		return nil
	}
	for i := range rows {
		if rows[i].Topic == "" || rows[i].Key == "" {
			return ErrEmpty
		}
	}
	empty := json.RawMessage("{}")
	i := 0
	_, err := db.CopyFrom(ctx, pgx.Identifier{"outbox"}, copyColumns, pgx.CopyFromFunc(func() ([]any, error) {
		if i == len(rows) {
			return nil, nil
		}
		r := &rows[i]
		i++
		headers := empty
		if len(r.Headers) > 0 {
			headers = json.RawMessage(r.Headers)
		}
		var relayAfter *time.Time
		if !r.RelayAfter.IsZero() {
			relayAfter = &r.RelayAfter
		}
		return []any{r.Topic, r.Key, r.Payload, headers, relayAfter}, nil
	}))
	if err != nil {
		return fmt.Errorf("cannot write outbox: %w", err)
	}
	return nil
}

// Settle records how a writer's own publish of its rows (inserted with RelayAfter, found
// by their events' ids) went: published rows are marked so, and the relay never sends
// them; rows whose publish failed are handed to the relay at once. If Settle itself
// fails, the relay takes the rows when RelayAfter passes: a duplicate at worst, which
// consumers drop by event id.
func Settle(ctx context.Context, db Execer, published bool, eventIDs ...string) error {
	if len(eventIDs) == 0 {
		return nil
	}
	// Only unpublished rows are candidates, which the partial index outbox_pending holds.
	q := `UPDATE outbox SET published_at = now() WHERE published_at IS NULL AND headers->>'ce_id' = ANY($1)`
	if !published {
		q = `WITH handed AS (
				UPDATE outbox SET relay_after = NULL
				WHERE published_at IS NULL AND headers->>'ce_id' = ANY($1) RETURNING 1)
			SELECT pg_notify('` + Channel + `', '') FROM (SELECT 1 FROM handed LIMIT 1) AS any_row`
	}
	if _, err := db.Exec(ctx, q, eventIDs); err != nil {
		return fmt.Errorf("cannot settle outbox rows: %w", err)
	}
	return nil
}
