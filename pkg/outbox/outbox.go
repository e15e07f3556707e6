// Package outbox is the transactional outbox: the table that lets a PostgreSQL change and
// the event announcing it commit together. NewRow and Insert write rows; the Relay (run
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

	"github.com/jackc/pgx/v5/pgconn"

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
}

// NewRow encodes e as the row the relay publishes to topic under key.
func NewRow(topic, key string, e event.Envelope) (Row, error) {
	if topic == "" || key == "" {
		return Row{}, ErrEmpty
	}
	payload, err := event.Encode(e)
	if err != nil {
		return Row{}, fmt.Errorf("cannot encode %s: %w", e.Type, err)
	}
	hs := event.Headers(e)
	m := make(map[string]string, len(hs))
	for _, h := range hs {
		m[h.Key] = string(h.Value)
	}
	headers, err := json.Marshal(m)
	if err != nil {
		return Row{}, fmt.Errorf("cannot encode headers: %w", err)
	}
	return Row{Topic: topic, Key: key, Payload: payload, Headers: headers}, nil
}

// Execer is what Insert needs: a pgx.Tx (the point), a *pgx.Conn or a pool.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Insert writes rows in the order given, which is the order the relay publishes one
// transaction's rows in (and so, for rows of one key, the order consumers see them).
// The rows are for the relay from the start (relay_after stays NULL): the insert's
// trigger wakes it when the transaction commits.
func Insert(ctx context.Context, db Execer, rows ...Row) error {
	if len(rows) == 0 {
		return nil
	}
	topics, keys, payloads, headers := make([]string, len(rows)), make([]string, len(rows)), make([][]byte, len(rows)), make([]string, len(rows))
	for i, r := range rows {
		if r.Topic == "" || r.Key == "" {
			return ErrEmpty
		}
		h := r.Headers
		if len(h) == 0 {
			h = []byte("{}")
		}
		topics[i], keys[i], payloads[i], headers[i] = r.Topic, r.Key, r.Payload, string(h)
	}
	// ORDER BY the ordinality keeps the ids (and so the relay's order) as given.
	if _, err := db.Exec(ctx, `
		INSERT INTO outbox (topic, key, payload, headers)
		SELECT t, k, p, h::jsonb FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[]) WITH ORDINALITY AS x(t, k, p, h, n)
		ORDER BY n`, topics, keys, payloads, headers); err != nil {
		return fmt.Errorf("cannot write outbox: %w", err)
	}
	return nil
}
