// Package clusterhealth judges whether the Kafka cluster can take writes with
// kchat's durability settings (RF 3, acks=all, min.insync.replicas 2).
package clusterhealth

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"

	"github.com/segmentio/kafka-go"
)

// API is the part of *kafka.Client the check needs.
type API interface {
	Metadata(ctx context.Context, req *kafka.MetadataRequest) (*kafka.MetadataResponse, error)
	DescribeConfigs(ctx context.Context, req *kafka.DescribeConfigsRequest) (*kafka.DescribeConfigsResponse, error)
}

// Status orders how bad things are.
type Status string

// The statuses, from good to bad.
const (
	// Healthy: every expected broker is registered and every replica is in sync.
	Healthy Status = "healthy"
	// Degraded: some partitions are under-replicated but still accept
	// acks=all writes; one more broker loss would stop them.
	Degraded Status = "degraded"
	// Unhealthy: writes fail somewhere (no leader or ISR below
	// min.insync.replicas), or brokers/controller are missing.
	Unhealthy Status = "unhealthy"
)

// Options tune the check.
type Options struct {
	// ExpectedBrokers is how many brokers must be registered (0: no check).
	ExpectedBrokers int
	// DefaultMinISR is used for a topic whose min.insync.replicas could not
	// be read.
	DefaultMinISR int
	// Topics limits the check to these topics; empty means all, internal ones
	// included, since a sick __consumer_offsets stops every consumer group.
	Topics []string
}

// Broker is one registered broker.
type Broker struct {
	ID   int    `json:"id"`
	Host string `json:"host"`
	Port int    `json:"port"`
	Rack string `json:"rack,omitempty"`
}

// Topic is the health of one topic. Partition lists hold partition ids.
type Topic struct {
	Name            string `json:"name"`
	Partitions      int    `json:"partitions"`
	MinISR          int    `json:"min_insync_replicas"`
	UnderReplicated []int  `json:"under_replicated,omitempty"`
	BelowMinISR     []int  `json:"below_min_isr,omitempty"`
	Offline         []int  `json:"offline,omitempty"`
	Error           string `json:"error,omitempty"`
}

// Report is the outcome of a check.
type Report struct {
	Status          Status   `json:"status"`
	ClusterID       string   `json:"cluster_id"`
	Controller      *Broker  `json:"controller"`
	Brokers         []Broker `json:"brokers"`
	ExpectedBrokers int      `json:"expected_brokers,omitempty"`
	// UnregisteredReplicas counts replicas assigned to brokers that are not
	// registered (down or removed without reassignment). Kafka-go reports
	// such brokers without their id, so only the count is known.
	UnregisteredReplicas int      `json:"unregistered_replicas,omitempty"`
	Topics               []Topic  `json:"topics"`
	Problems             []string `json:"problems,omitempty"`
}

// Check reads metadata and topic configs and evaluates them.
func Check(ctx context.Context, api API, o Options) (Report, error) {
	md, err := api.Metadata(ctx, &kafka.MetadataRequest{Topics: o.Topics})
	if err != nil {
		return Report{}, fmt.Errorf("read cluster metadata: %w", err)
	}
	minISR, err := topicMinISR(ctx, api, md.Topics)
	if err != nil {
		return Report{}, err
	}
	return Evaluate(md, minISR, o), nil
}

// topicMinISR reads the effective min.insync.replicas of every topic (the
// topic override or the broker default, as Kafka resolves it).
func topicMinISR(ctx context.Context, api API, topics []kafka.Topic) (map[string]int, error) {
	if len(topics) == 0 {
		return map[string]int{}, nil
	}
	req := &kafka.DescribeConfigsRequest{}
	for _, t := range topics {
		if t.Error != nil {
			continue
		}
		req.Resources = append(req.Resources, kafka.DescribeConfigRequestResource{
			ResourceType: kafka.ResourceTypeTopic,
			ResourceName: t.Name,
			ConfigNames:  []string{"min.insync.replicas"},
		})
	}
	out := map[string]int{}
	if len(req.Resources) == 0 {
		return out, nil
	}
	resp, err := api.DescribeConfigs(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("read topic configs: %w", err)
	}
	for _, r := range resp.Resources {
		if r.Error != nil {
			continue
		}
		for _, e := range r.ConfigEntries {
			if e.ConfigName != "min.insync.replicas" {
				continue
			}
			if n, err := strconv.Atoi(e.ConfigValue); err == nil {
				out[r.ResourceName] = n
			}
		}
	}
	return out, nil
}

// Evaluate judges metadata; minISR maps topic to min.insync.replicas.
func Evaluate(md *kafka.MetadataResponse, minISR map[string]int, o Options) Report {
	r := Report{Status: Healthy, ClusterID: md.ClusterID, ExpectedBrokers: o.ExpectedBrokers, Topics: []Topic{}}
	worsen := func(s Status, format string, args ...any) {
		if rank(s) > rank(r.Status) {
			r.Status = s
		}
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}

	registered := map[int]bool{}
	for _, b := range md.Brokers {
		registered[b.ID] = true
		r.Brokers = append(r.Brokers, Broker{ID: b.ID, Host: b.Host, Port: b.Port, Rack: b.Rack})
	}
	sort.Slice(r.Brokers, func(i, j int) bool { return r.Brokers[i].ID < r.Brokers[j].ID })

	// kafka-go leaves Controller zero when the id matched no broker. Under
	// KRaft this is the broker the metadata names as controller (clients
	// cannot reach the quorum itself), so its absence means no broker could
	// answer for the quorum.
	if md.Controller.Host != "" && registered[md.Controller.ID] {
		c := md.Controller
		r.Controller = &Broker{ID: c.ID, Host: c.Host, Port: c.Port, Rack: c.Rack}
	} else {
		worsen(Unhealthy, "no controller reported in metadata")
	}
	if o.ExpectedBrokers > 0 && len(md.Brokers) < o.ExpectedBrokers {
		worsen(Unhealthy, "%d of %d expected brokers registered", len(md.Brokers), o.ExpectedBrokers)
	}

	for _, t := range md.Topics {
		th := Topic{Name: t.Name, Partitions: len(t.Partitions), MinISR: o.DefaultMinISR}
		if n, ok := minISR[t.Name]; ok {
			th.MinISR = n
		}
		if t.Error != nil {
			th.Error = t.Error.Error()
			worsen(Unhealthy, "topic %s: %v", t.Name, t.Error)
			r.Topics = append(r.Topics, th)
			continue
		}
		for _, p := range t.Partitions {
			for _, rep := range p.Replicas {
				// kafka-go fills brokers it cannot resolve with the zero value.
				if rep.Host == "" {
					r.UnregisteredReplicas++
				}
			}
			switch {
			case p.Leader.Host == "": // leader -1, or a broker that is gone
				th.Offline = append(th.Offline, p.ID)
			case len(p.Isr) < th.MinISR:
				th.BelowMinISR = append(th.BelowMinISR, p.ID)
			}
			if len(p.Isr) < len(p.Replicas) {
				th.UnderReplicated = append(th.UnderReplicated, p.ID)
			}
		}
		slices.Sort(th.Offline)
		slices.Sort(th.BelowMinISR)
		slices.Sort(th.UnderReplicated)
		if len(th.Offline) > 0 {
			worsen(Unhealthy, "topic %s: %d partitions without a leader %v", t.Name, len(th.Offline), th.Offline)
		}
		if len(th.BelowMinISR) > 0 {
			worsen(Unhealthy, "topic %s: %d partitions below min.insync.replicas=%d %v (acks=all writes fail)",
				t.Name, len(th.BelowMinISR), th.MinISR, th.BelowMinISR)
		}
		if len(th.UnderReplicated) > 0 {
			worsen(Degraded, "topic %s: %d under-replicated partitions %v", t.Name, len(th.UnderReplicated), th.UnderReplicated)
		}
		r.Topics = append(r.Topics, th)
	}
	sort.Slice(r.Topics, func(i, j int) bool { return r.Topics[i].Name < r.Topics[j].Name })
	if r.UnregisteredReplicas > 0 {
		worsen(Degraded, "%d replicas are assigned to brokers that are not registered", r.UnregisteredReplicas)
	}
	return r
}

func rank(s Status) int {
	switch s {
	case Degraded:
		return 1
	case Unhealthy:
		return 2
	default:
		return 0
	}
}
