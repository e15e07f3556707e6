package outbox

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestCleaner_pace(t *testing.T) {
	c, err := NewCleaner(execerStub{}, CleanerConfig{BatchSize: 1000, BatchPause: 10 * time.Millisecond, BatchTarget: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		size      int
		took      time.Duration
		wantSize  int
		wantPause time.Duration
	}{
		{"fast batch grows, shortest pause", 250, time.Millisecond, 500, 10 * time.Millisecond},
		{"growth stops at BatchSize", 1000, time.Millisecond, 1000, 10 * time.Millisecond},
		{"on target keeps its size", 500, 4 * time.Millisecond, 500, 16 * time.Millisecond},
		{"slow batch halves, pause four times as long", 1000, 40 * time.Millisecond, 500, 160 * time.Millisecond},
		{"shrinking stops at the floor", minCleanBatch, time.Second, minCleanBatch, 4 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
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
