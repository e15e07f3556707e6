// Package consumerlag measures how far consumer groups are behind the log.
package consumerlag

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/segmentio/kafka-go"
)

// API is the part of *kafka.Client the measurement needs.
type API interface {
	ListGroups(ctx context.Context, req *kafka.ListGroupsRequest) (*kafka.ListGroupsResponse, error)
	OffsetFetch(ctx context.Context, req *kafka.OffsetFetchRequest) (*kafka.OffsetFetchResponse, error)
	ListOffsets(ctx context.Context, req *kafka.ListOffsetsRequest) (*kafka.ListOffsetsResponse, error)
}

// Partition is the lag of one group on one partition.
type Partition struct {
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
	// Committed is the group's committed offset, -1 when it never committed.
	Committed int64 `json:"committed"`
	LogStart  int64 `json:"log_start"`
	LogEnd    int64 `json:"log_end"`
	// Lag is LogEnd-Committed; without a commit it is everything still
	// retained, which is what a group starting from the earliest offset
	// (kafka-go's default) would have to read.
	Lag   int64  `json:"lag"`
	Error string `json:"error,omitempty"`
}

// Group is the lag of one consumer group.
type Group struct {
	Group      string      `json:"group"`
	TotalLag   int64       `json:"total_lag"`
	Partitions []Partition `json:"partitions"`
	Error      string      `json:"error,omitempty"`
}

// Collect measures the given groups, or every consumer group when groups is empty.
func Collect(ctx context.Context, api API, groups []string) ([]Group, error) {
	if len(groups) == 0 {
		resp, err := api.ListGroups(ctx, &kafka.ListGroupsRequest{})
		if err != nil {
			return nil, fmt.Errorf("list consumer groups: %w", err)
		}
		if resp.Error != nil {
			return nil, fmt.Errorf("list consumer groups: %w", resp.Error)
		}
		for _, g := range resp.Groups {
			// Connect workers and other protocols do not commit offsets.
			if g.ProtocolType == "consumer" || g.ProtocolType == "" {
				groups = append(groups, g.GroupID)
			}
		}
	}
	slices.Sort(groups)
	groups = slices.Compact(groups)

	committed := map[string]map[string][]kafka.OffsetFetchPartition{}
	wanted := map[string][]kafka.OffsetRequest{}
	seen := map[topicPartition]bool{}
	var out []Group
	for _, g := range groups {
		resp, err := api.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: g})
		if err == nil && resp.Error != nil {
			err = resp.Error
		}
		if err != nil {
			out = append(out, Group{Group: g, Error: err.Error()})
			continue
		}
		committed[g] = resp.Topics
		for topic, parts := range resp.Topics {
			for _, p := range parts {
				tp := topicPartition{topic, p.Partition}
				if !seen[tp] {
					seen[tp] = true
					wanted[topic] = append(wanted[topic], kafka.FirstOffsetOf(p.Partition), kafka.LastOffsetOf(p.Partition))
				}
			}
		}
	}

	offsets := map[string][]kafka.PartitionOffsets{}
	if len(wanted) > 0 {
		resp, err := api.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: wanted})
		if err != nil {
			return nil, fmt.Errorf("list log offsets: %w", err)
		}
		offsets = resp.Topics
	}
	for _, g := range groups {
		if c, ok := committed[g]; ok {
			out = append(out, Compute(g, c, offsets))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Group < out[j].Group })
	return out, nil
}

type topicPartition struct {
	topic     string
	partition int
}

// Compute joins a group's committed offsets with the log offsets.
func Compute(group string, committed map[string][]kafka.OffsetFetchPartition, logs map[string][]kafka.PartitionOffsets) Group {
	byTP := map[topicPartition]kafka.PartitionOffsets{}
	for topic, parts := range logs {
		for _, p := range parts {
			byTP[topicPartition{topic, p.Partition}] = p
		}
	}
	g := Group{Group: group, Partitions: []Partition{}}
	for topic, parts := range committed {
		for _, c := range parts {
			p := Partition{Topic: topic, Partition: c.Partition, Committed: c.CommittedOffset, LogStart: -1, LogEnd: -1}
			var errs []error
			if c.Error != nil {
				errs = append(errs, c.Error)
			}
			l, ok := byTP[topicPartition{topic, c.Partition}]
			switch {
			case !ok:
				errs = append(errs, errors.New("no log offsets"))
			case l.Error != nil:
				errs = append(errs, l.Error)
			default:
				p.LogStart, p.LogEnd = l.FirstOffset, l.LastOffset
				p.Lag = lag(p.Committed, p.LogStart, p.LogEnd)
			}
			if len(errs) > 0 {
				p.Error = errors.Join(errs...).Error()
			}
			g.TotalLag += p.Lag
			g.Partitions = append(g.Partitions, p)
		}
	}
	sort.Slice(g.Partitions, func(i, j int) bool {
		a, b := g.Partitions[i], g.Partitions[j]
		if a.Topic != b.Topic {
			return a.Topic < b.Topic
		}
		return a.Partition < b.Partition
	})
	return g
}

func lag(committed, start, end int64) int64 {
	switch {
	case committed < 0:
		return end - start
	case committed < start:
		// Retention deleted what the group had not read yet; with the
		// earliest reset policy (kafka-go's default) it restarts at the log
		// start, so only the retained part is lag.
		return end - start
	case committed > end:
		// Possible right after an unclean leader election truncated the log.
		return 0
	default:
		return end - committed
	}
}
