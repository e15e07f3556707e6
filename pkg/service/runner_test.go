package service_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/service"
)

func TestParseStartOffset(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"first", kafka.FirstOffset, false}, {"Earliest", kafka.FirstOffset, false},
		{"last", kafka.LastOffset, false}, {"latest", kafka.LastOffset, false}, {"", kafka.LastOffset, false},
		{"middle", 0, true},
	}
	for _, tt := range tests {
		got, err := service.ParseStartOffset(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseStartOffset(%q) = %d, %v", tt.in, got, err)
		}
	}
}

func TestRunner_main_runs_after_ready_and_parts_outlive_it(t *testing.T) {
	ready := make(chan struct{})
	var partStopped, mainDone atomic.Bool
	ctx, cancel := context.WithCancel(context.Background())
	r := service.Runner{Name: "t", Admin: service.NewAdmin(), HTTPAddr: "127.0.0.1:0",
		Parts: []service.Part{{Name: "follower", Run: func(ctx context.Context) error {
			close(ready)
			<-ctx.Done()
			if !mainDone.Load() {
				t.Error("part stopped before main returned")
			}
			partStopped.Store(true)
			return ctx.Err()
		}}},
		Ready: ready, ReadyWhat: "follower",
		Main: func(ctx context.Context) error {
			cancel() // the shutdown signal
			<-ctx.Done()
			mainDone.Store(true)
			return nil
		},
	}
	if err := r.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if !partStopped.Load() {
		t.Fatal("Run returned before its parts stopped")
	}
}

func TestRunner_part_failing_before_ready_fails_the_start(t *testing.T) {
	boom := errors.New("boom")
	r := service.Runner{Name: "t",
		Parts: []service.Part{{Name: "follower", Run: func(context.Context) error { return boom }}},
		Ready: make(chan struct{}), ReadyWhat: "follower",
		Main: func(context.Context) error { t.Error("main ran"); return nil },
	}
	if err := r.Run(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
}

func TestRunner_stop_before_ready_is_not_an_error(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	r := service.Runner{Name: "t", Ready: make(chan struct{}), ReadyWhat: "follower",
		Main: func(context.Context) error { t.Error("main ran"); return nil }}
	if err := r.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestRunner_taken_port_fails_the_start(t *testing.T) {
	r := service.Runner{Name: "t", Admin: service.NewAdmin(), HTTPAddr: "127.0.0.1:-1",
		Main: func(context.Context) error { t.Error("main ran"); return nil }}
	if err := r.Run(context.Background()); err == nil {
		t.Fatal("want an error for an address that cannot be bound")
	}
}
