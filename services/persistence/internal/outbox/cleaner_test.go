package outbox_test

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/pkg/topics"

	"github.com/kchat/kchat/pkg/outbox"
	"github.com/kchat/kchat/services/persistence/internal/chattest"
)

// Old published outbox rows and old inbox entries go, in batches of at most BatchSize;
// young ones stay, and an unpublished outbox row stays however old it is.
func TestCleaner_deletes_past_retention_in_bounded_batches(t *testing.T) {
	env := stacktest.Get(t)
	ctx := context.Background()
	pool := env.NewDatabasePool(t)
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := pool.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	// Outbox: 25 published two hours ago (old), 5 published a minute ago (young), 4 never
	// published though created ten days ago (owed to Kafka), 3 waiting for their writer.
	outboxRows := func(n int, tag, createdAgo, publishedAgo string, relayAfter bool) {
		t.Helper()
		published := "NULL"
		if publishedAgo != "" {
			published = "now() - interval '" + publishedAgo + "'"
		}
		relay := "NULL"
		if relayAfter {
			relay = "now() + interval '1 minute'"
		}
		exec(`INSERT INTO outbox (topic, key, payload, created_at, published_at, relay_after)
			SELECT 'chat.stored', $1 || g, '\x00', now() - interval '`+createdAgo+`', `+published+`, `+relay+`
			FROM generate_series(1, $2) g`, tag, n)
	}
	outboxRows(25, "old-", "2 hours", "2 hours", false)
	outboxRows(5, "young-", "1 minute", "1 minute", false)
	outboxRows(4, "pending-", "10 days", "", false)
	outboxRows(3, "direct-", "10 days", "", true)
	// Inbox: 17 entries of each consumer fifteen days old, 6 a day old.
	for _, consumer := range []string{"persistence", "notification"} {
		exec(`INSERT INTO processed_events (consumer, event_id, processed_at)
			SELECT $1, 'old-' || g, now() - interval '15 days' FROM generate_series(1, 17) g`, consumer)
		exec(`INSERT INTO processed_events (consumer, event_id, processed_at)
			SELECT $1, 'young-' || g, now() - interval '1 day' FROM generate_series(1, 6) g`, consumer)
	}

	c, err := outbox.NewCleaner(pool, outbox.CleanerConfig{BatchSize: 4, BatchPause: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.CleanOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Outbox != 25 || res.Inbox != 34 {
		t.Errorf("deleted %d outbox rows and %d inbox entries, want 25 and 34", res.Outbox, res.Inbox)
	}
	// 25 rows in batches of 4: 7 DELETEs (the last one short); 34: 9.
	if res.LargestBatch > 4 || res.Batches != 7+9 {
		t.Errorf("%d batches, the largest %d rows; want 16 of at most 4", res.Batches, res.LargestBatch)
	}
	left := func(sql string) int { return chattest.Count(t, pool, sql) }
	if n := left(`SELECT count(*) FROM outbox WHERE key LIKE 'old-%'`); n != 0 {
		t.Errorf("%d old published rows left", n)
	}
	if n := left(`SELECT count(*) FROM outbox WHERE key LIKE 'young-%'`); n != 5 {
		t.Errorf("%d of 5 young published rows left", n)
	}
	if n := left(`SELECT count(*) FROM outbox WHERE published_at IS NULL`); n != 7 {
		t.Errorf("%d of 7 unpublished rows left", n)
	}
	if n := left(`SELECT count(*) FROM processed_events WHERE event_id LIKE 'old-%'`); n != 0 {
		t.Errorf("%d old inbox entries left", n)
	}
	if n := left(`SELECT count(*) FROM processed_events WHERE event_id LIKE 'young-%'`); n != 12 {
		t.Errorf("%d of 12 young inbox entries left", n)
	}
	// Nothing more to do: one empty batch per table.
	if res, err := c.CleanOnce(ctx); err != nil || res.Outbox+res.Inbox != 0 || res.Batches != 2 {
		t.Errorf("second run: %+v, %v", res, err)
	}
}

// Each batch finds its rows through the retention indexes and deletes them by TID: no
// statement of the cleaner reads a whole table.
func TestCleaner_batches_use_the_indexes(t *testing.T) {
	env := stacktest.Get(t)
	ctx := context.Background()
	pool := env.NewDatabasePool(t)
	for _, q := range []struct{ table, sql string }{
		{"outbox", `EXPLAIN DELETE FROM outbox WHERE ctid = ANY(ARRAY(
			SELECT ctid FROM outbox WHERE published_at < now() - 3600 * interval '1 second' LIMIT 1000))`},
		{"processed_events", `EXPLAIN DELETE FROM processed_events WHERE ctid = ANY(ARRAY(
			SELECT ctid FROM processed_events WHERE processed_at < now() - 3600 * interval '1 second' LIMIT 1000))`},
	} {
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// An empty table would make any plan cheap: tell the planner to avoid full scans.
		if _, err := tx.Exec(ctx, "SET LOCAL enable_seqscan = off"); err != nil {
			t.Fatal(err)
		}
		rows, err := tx.Query(ctx, q.sql)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, line)
		}
		_ = tx.Rollback(ctx)
		p := strings.Join(plan, "\n")
		if !strings.Contains(p, "Tid Scan") || !strings.Contains(p, "Index") || strings.Contains(p, "Seq Scan") {
			t.Errorf("%s cleanup plan:\n%s", q.table, p)
		}
	}
}

// The retention constants are the topics' retention in deploy/topics.yaml.
func TestCleaner_retention_matches_topics(t *testing.T) {
	root, err := stacktest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	f, err := topics.Load(filepath.Join(root, "deploy", "topics.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, spec := range f.Topics {
		switch spec.Name {
		case topics.Submitted, topics.Stored, "chat.notifications":
			ms, err := strconv.ParseInt(spec.Configs["retention.ms"], 10, 64)
			if err != nil {
				t.Fatalf("%s retention.ms: %v", spec.Name, err)
			}
			if got := time.Duration(ms) * time.Millisecond; got != outbox.SourceTopicRetention {
				t.Errorf("%s keeps %v, the cleaner assumes %v", spec.Name, got, outbox.SourceTopicRetention)
			}
			if seg := spec.Configs["segment.ms"]; seg != "" {
				t.Errorf("%s sets segment.ms %s; the cleaner assumes the broker default (SourceSegmentSpan)", spec.Name, seg)
			}
			seen++
		}
	}
	if seen != 3 {
		t.Fatalf("found %d of the 3 topics", seen)
	}
}

func TestCleanerConfig_validation(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  outbox.CleanerConfig
		ok   bool
	}{
		{"defaults", outbox.CleanerConfig{}, true},
		{"inbox shorter than the topics keep events", outbox.CleanerConfig{InboxRetention: 24 * time.Hour}, false},
		{"outbox longer than the topics", outbox.CleanerConfig{OutboxRetention: 8 * 24 * time.Hour}, false},
		{"negative outbox retention", outbox.CleanerConfig{OutboxRetention: -time.Second}, false},
		{"batch too large", outbox.CleanerConfig{BatchSize: 100000}, false},
		{"negative interval", outbox.CleanerConfig{Interval: -time.Second}, false},
		{"negative batch target", outbox.CleanerConfig{BatchTarget: -time.Millisecond}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := outbox.NewCleaner(nopExecer{}, tc.cfg)
			if (err == nil) != tc.ok {
				t.Fatalf("err %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

type nopExecer struct{}

func (nopExecer) Exec(context.Context, string, ...any) (pgconn.CommandTag, error) {
	return pgconn.CommandTag{}, nil
}
