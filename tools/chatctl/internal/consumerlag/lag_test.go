package consumerlag_test

import (
	"slices"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/tools/chatctl/internal/consumerlag"
)

func TestCompute(t *testing.T) {
	logs := map[string][]kafka.PartitionOffsets{
		"chat.stored": {
			{Partition: 0, FirstOffset: 0, LastOffset: 100},
			{Partition: 1, FirstOffset: 50, LastOffset: 80},
			{Partition: 2, FirstOffset: 0, LastOffset: 10, Error: kafka.NotLeaderForPartition},
		},
	}
	tests := []struct {
		name      string
		committed []kafka.OffsetFetchPartition
		want      []int64 // lag per partition, in partition order
		wantTotal int64
		wantErrAt []int // partitions that carry an error
	}{
		{name: "caught up", committed: []kafka.OffsetFetchPartition{{Partition: 0, CommittedOffset: 100}}, want: []int64{0}},
		{name: "behind", committed: []kafka.OffsetFetchPartition{{Partition: 0, CommittedOffset: 60}}, want: []int64{40}, wantTotal: 40},
		{name: "never committed counts what is retained",
			committed: []kafka.OffsetFetchPartition{{Partition: 1, CommittedOffset: -1}}, want: []int64{30}, wantTotal: 30},
		{name: "commit older than retention",
			committed: []kafka.OffsetFetchPartition{{Partition: 1, CommittedOffset: 10}}, want: []int64{30}, wantTotal: 30},
		{name: "commit past a truncated log",
			committed: []kafka.OffsetFetchPartition{{Partition: 0, CommittedOffset: 120}}, want: []int64{0}},
		{name: "sums partitions and sorts them",
			committed: []kafka.OffsetFetchPartition{{Partition: 1, CommittedOffset: 70}, {Partition: 0, CommittedOffset: 90}},
			want:      []int64{10, 10}, wantTotal: 20},
		{name: "log offset error is reported, not counted",
			committed: []kafka.OffsetFetchPartition{{Partition: 2, CommittedOffset: 3}}, want: []int64{0}, wantErrAt: []int{2}},
		{name: "partition unknown to the log",
			committed: []kafka.OffsetFetchPartition{{Partition: 9, CommittedOffset: 3}}, want: []int64{0}, wantErrAt: []int{9}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := consumerlag.Compute("fanout", map[string][]kafka.OffsetFetchPartition{"chat.stored": tt.committed}, logs)
			if g.Group != "fanout" {
				t.Errorf("group = %q", g.Group)
			}
			var lags []int64
			var errAt []int
			var order []int
			for _, p := range g.Partitions {
				lags = append(lags, p.Lag)
				order = append(order, p.Partition)
				if p.Error != "" {
					errAt = append(errAt, p.Partition)
				}
			}
			if !slices.Equal(lags, tt.want) {
				t.Errorf("lags = %v, want %v", lags, tt.want)
			}
			if !slices.IsSorted(order) {
				t.Errorf("partitions not sorted: %v", order)
			}
			if g.TotalLag != tt.wantTotal {
				t.Errorf("total = %d, want %d", g.TotalLag, tt.wantTotal)
			}
			if !slices.Equal(errAt, tt.wantErrAt) {
				t.Errorf("errors at %v, want %v", errAt, tt.wantErrAt)
			}
		})
	}
}
