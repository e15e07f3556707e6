package outbox

import (
	"cmp"
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestCleaner_pace(t *testing.T) {
	for _, tc := range []struct {
		name      string
		batchSize int // the configured BatchSize; 0: 1000
		size      int
		took      time.Duration
		wantSize  int
		wantPause time.Duration
	}{
		{"fast batch grows, shortest pause", 0, 250, time.Millisecond, 500, 10 * time.Millisecond},
		{"growth stops at BatchSize", 0, 1000, time.Millisecond, 1000, 10 * time.Millisecond},
		{"on target keeps its size", 0, 500, 4 * time.Millisecond, 500, 16 * time.Millisecond},
		{"slow batch halves, pause four times as long", 0, 1000, 40 * time.Millisecond, 500, 160 * time.Millisecond},
		{"shrinking stops at the floor", 0, minCleanBatch, time.Second, minCleanBatch, 4 * time.Second},
		// Found under load in make test: a slow batch of 4 became 50, past BatchSize.
		{"a slow batch stays within a BatchSize below the floor", 4, 4, 40 * time.Millisecond, 4, 160 * time.Millisecond},
		{"a slow batch halves no lower than the floor", 200, 80, 40 * time.Millisecond, minCleanBatch, 160 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewCleaner(execerStub{}, CleanerConfig{BatchSize: cmp.Or(tc.batchSize, 1000), BatchPause: 10 * time.Millisecond, BatchTarget: 5 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			size, pause := c.pace(tc.size, tc.took)
			if size != tc.wantSize || pause != tc.wantPause {
				t.Fatalf("pace(%d, %v) = %d, %v; want %d, %v", tc.size, tc.took, size, pause, tc.wantSize, tc.wantPause)
			}
		})
	}
}

// execerStub is a database for tests that never run a statement.
type execerStub struct{}

func (execerStub) Exec(context.Context, string, ...any) (pgconn.CommandTag, error) {
	return pgconn.CommandTag{}, nil
}
