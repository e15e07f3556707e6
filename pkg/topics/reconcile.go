package topics

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/backoff"
)

var (
	// ErrPartitionsLowered: Kafka cannot remove partitions, and pretending to would lose data.
	ErrPartitionsLowered = errors.New("partition count cannot be lowered")
	// ErrReplicationFactorTooHigh: more replicas than brokers can never be placed.
	ErrReplicationFactorTooHigh = errors.New("replication factor exceeds the number of brokers")
	// ErrReplicationFactorChange: changing RF is a reassignment, an operator's job (Cruise Control), not apply's.
	ErrReplicationFactorChange = errors.New("replication factor of an existing topic differs")
)

// Action names what a Change does.
type Action string

const (
	ActionCreate        Action = "create"
	ActionAddPartitions Action = "add-partitions"
	ActionSetConfig     Action = "set-config"
)

// Change is one step that brings the cluster to the declared state.
type Change struct {
	Topic  string
	Action Action
	Key    string // the config key for set-config
	From   string
	To     string
	spec   Spec
}

func (c Change) String() string {
	switch c.Action {
	case ActionCreate:
		return fmt.Sprintf("+ %s: create (partitions=%d, rf=%d)", c.Topic, c.spec.Partitions, c.spec.ReplicationFactor)
	case ActionAddPartitions:
		return fmt.Sprintf("~ %s: partitions %s -> %s", c.Topic, c.From, c.To)
	default:
		from := c.From
		if from == "" {
			from = "(default)"
		}
		return fmt.Sprintf("~ %s: %s %s -> %s", c.Topic, c.Key, from, c.To)
	}
}

// Plan is the ordered list of changes; empty means the cluster matches the file.
type Plan []Change

func (p Plan) String() string {
	if len(p) == 0 {
		return "no changes: the cluster matches the topics file"
	}
	lines := make([]string, len(p))
	for i, c := range p {
		lines[i] = c.String()
	}
	return strings.Join(lines, "\n")
}

// Admin is the part of *kafka.Client that reconciliation needs.
type Admin interface {
	Metadata(context.Context, *kafka.MetadataRequest) (*kafka.MetadataResponse, error)
	DescribeConfigs(context.Context, *kafka.DescribeConfigsRequest) (*kafka.DescribeConfigsResponse, error)
	CreateTopics(context.Context, *kafka.CreateTopicsRequest) (*kafka.CreateTopicsResponse, error)
	CreatePartitions(context.Context, *kafka.CreatePartitionsRequest) (*kafka.CreatePartitionsResponse, error)
	IncrementalAlterConfigs(context.Context, *kafka.IncrementalAlterConfigsRequest) (*kafka.IncrementalAlterConfigsResponse, error)
}

var _ Admin = (*kafka.Client)(nil)

// MakePlan compares the file with the live cluster. It fails, changing nothing, when the
// file asks for something apply must never do (lower partitions, change RF, RF > brokers).
func MakePlan(ctx context.Context, admin Admin, f File) (Plan, error) {
	var md *kafka.MetadataResponse
	err := retryTemporary(ctx, func() (err error) {
		md, err = admin.Metadata(ctx, &kafka.MetadataRequest{Topics: f.Names()})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cannot read cluster metadata: %w", err)
	}
	live := map[string]kafka.Topic{}
	for _, t := range md.Topics {
		if t.Error == nil {
			live[t.Name] = t
		}
	}
	var plan Plan
	var existing []string
	for _, spec := range f.Topics {
		if spec.ReplicationFactor > len(md.Brokers) {
			return nil, fmt.Errorf("topic %s: %w (rf %d, %d brokers)", spec.Name, ErrReplicationFactorTooHigh, spec.ReplicationFactor, len(md.Brokers))
		}
		t, ok := live[spec.Name]
		if !ok {
			plan = append(plan, Change{Topic: spec.Name, Action: ActionCreate, spec: spec})
			continue
		}
		existing = append(existing, spec.Name)
		have := len(t.Partitions)
		if spec.Partitions < have {
			return nil, fmt.Errorf("topic %s: %w (live %d, file %d)", spec.Name, ErrPartitionsLowered, have, spec.Partitions)
		}
		if have > 0 && len(t.Partitions[0].Replicas) != spec.ReplicationFactor {
			return nil, fmt.Errorf("topic %s: %w (live %d, file %d); reassign replicas with Cruise Control instead",
				spec.Name, ErrReplicationFactorChange, len(t.Partitions[0].Replicas), spec.ReplicationFactor)
		}
		if spec.Partitions > have {
			plan = append(plan, Change{Topic: spec.Name, Action: ActionAddPartitions,
				From: fmt.Sprint(have), To: fmt.Sprint(spec.Partitions), spec: spec})
		}
	}
	if len(existing) == 0 {
		return plan, nil
	}
	liveConfigs, err := describe(ctx, admin, existing)
	if err != nil {
		return nil, err
	}
	for _, spec := range f.Topics {
		cfg, ok := liveConfigs[spec.Name]
		if !ok {
			continue
		}
		for _, k := range sortedKeys(spec.Configs) {
			if cfg[k] != spec.Configs[k] {
				plan = append(plan, Change{Topic: spec.Name, Action: ActionSetConfig, Key: k, From: cfg[k], To: spec.Configs[k], spec: spec})
			}
		}
	}
	return plan, nil
}

func describe(ctx context.Context, admin Admin, names []string) (map[string]map[string]string, error) {
	req := &kafka.DescribeConfigsRequest{}
	for _, n := range names {
		req.Resources = append(req.Resources, kafka.DescribeConfigRequestResource{ResourceType: kafka.ResourceTypeTopic, ResourceName: n})
	}
	var res *kafka.DescribeConfigsResponse
	err := retryTemporary(ctx, func() (err error) {
		res, err = admin.DescribeConfigs(ctx, req)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cannot describe topic configs: %w", err)
	}
	out := map[string]map[string]string{}
	for _, r := range res.Resources {
		if r.Error != nil {
			return nil, fmt.Errorf("cannot describe topic %s: %w", r.ResourceName, r.Error)
		}
		m := map[string]string{}
		for _, e := range r.ConfigEntries {
			m[e.ConfigName] = e.ConfigValue
		}
		out[r.ResourceName] = m
	}
	return out, nil
}

// Execute carries out a plan made by MakePlan.
func Execute(ctx context.Context, admin Admin, plan Plan) error {
	for _, c := range plan {
		var err error
		switch c.Action {
		case ActionCreate:
			err = create(ctx, admin, c.spec)
		case ActionAddPartitions:
			err = retryTemporary(ctx, func() error {
				res, err := admin.CreatePartitions(ctx, &kafka.CreatePartitionsRequest{
					Topics: []kafka.TopicPartitionsConfig{{Name: c.Topic, Count: int32(c.spec.Partitions)}},
				})
				if err != nil {
					return err
				}
				return res.Errors[c.Topic]
			})
		case ActionSetConfig:
			err = retryTemporary(ctx, func() error {
				res, err := admin.IncrementalAlterConfigs(ctx, &kafka.IncrementalAlterConfigsRequest{
					Resources: []kafka.IncrementalAlterConfigsRequestResource{{
						ResourceType: kafka.ResourceTypeTopic, ResourceName: c.Topic,
						Configs: []kafka.IncrementalAlterConfigsRequestConfig{{Name: c.Key, Value: c.To, ConfigOperation: kafka.ConfigOperationSet}},
					}},
				})
				if err != nil {
					return err
				}
				for _, r := range res.Resources {
					if r.Error != nil {
						return r.Error
					}
				}
				return nil
			})
		}
		if err != nil {
			return fmt.Errorf("cannot apply %q: %w", c.String(), err)
		}
	}
	return nil
}

func create(ctx context.Context, admin Admin, spec Spec) error {
	entries := make([]kafka.ConfigEntry, 0, len(spec.Configs))
	for _, k := range sortedKeys(spec.Configs) {
		entries = append(entries, kafka.ConfigEntry{ConfigName: k, ConfigValue: spec.Configs[k]})
	}
	return retryTemporary(ctx, func() error {
		res, err := admin.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
			Topic: spec.Name, NumPartitions: spec.Partitions, ReplicationFactor: spec.ReplicationFactor, ConfigEntries: entries,
		}}})
		if err != nil {
			return err
		}
		if err := res.Errors[spec.Name]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
			return err
		}
		return nil
	})
}

// Apply plans and executes in one go, returning what it changed. Topics it created or
// grew are known to every broker when it returns (WaitKnown), so a client may use them
// at once.
func Apply(ctx context.Context, admin Admin, f File) (Plan, error) {
	plan, err := MakePlan(ctx, admin, f)
	if err != nil {
		return nil, err
	}
	if err := Execute(ctx, admin, plan); err != nil {
		return nil, err
	}
	grown := map[string]int{}
	for _, c := range plan {
		if c.Action == ActionCreate || c.Action == ActionAddPartitions {
			grown[c.Topic] = 0
		}
	}
	for _, t := range f.Topics {
		if _, ok := grown[t.Name]; ok {
			grown[t.Name] = t.Partitions
		}
	}
	if err := waitKnown(ctx, admin, grown); err != nil {
		return nil, err
	}
	return plan, nil
}

// retryTemporary retries Kafka's retriable errors; under KRaft admin calls
// routinely answer NotController (41) while leadership moves.
func retryTemporary(ctx context.Context, fn func() error) error {
	b := backoff.New(100*time.Millisecond, 3200*time.Millisecond)
	for attempt := 1; ; attempt++ {
		err := fn()
		var kerr kafka.Error
		if err == nil || attempt == 10 || !errors.As(err, &kerr) || !kerr.Temporary() {
			return err
		}
		if err := b.Wait(ctx); err != nil {
			return err
		}
	}
}
