// Package clusterhealth judges whether the Kafka cluster can take writes with
// kchat's durability settings (RF 3, acks=all, min.insync.replicas 2).
package clusterhealth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	metadataAPI "github.com/segmentio/kafka-go/protocol/metadata"
)

// Metadata is the cluster as the check sees it. Replicas, ISR and leaders
// are broker ids: kafka-go's Client.Metadata resolves ids to registered
// brokers and leaves a zero value for the others, which loses exactly the
// broker an operator is looking for when one is down.
type Metadata struct {
	ClusterID    string
	ControllerID int
	Brokers      []Broker
	Topics       []TopicMetadata
}

// TopicMetadata is one topic's partitions.
type TopicMetadata struct {
	Name       string
	Internal   bool
	Error      error
	Partitions []PartitionMetadata
}

// PartitionMetadata is one partition's placement. Leader is -1 when the
// partition has none.
type PartitionMetadata struct {
	ID       int
	Leader   int
	Replicas []int
	ISR      []int
	Offline  []int
	Error    error
}

// ReadMetadata asks the cluster for its metadata through the client's
// transport (a raw Metadata request, so broker ids survive). It asks the
// bootstrap brokers one at a time until one answers: a health check is run
// exactly when a broker may be dying, and a dying broker can accept a
// connection and then reset it, which the transport does not retry.
func ReadMetadata(ctx context.Context, client *kafka.Client, topics []string) (*Metadata, error) {
	rt := client.Transport
	if rt == nil {
		rt = kafka.DefaultTransport
	}
	var errs []error
	for _, addr := range bootstrapAddrs(client.Addr) {
		attemptCtx, cancel := ctx, context.CancelFunc(func() {})
		if client.Timeout > 0 {
			attemptCtx, cancel = context.WithTimeout(ctx, client.Timeout)
		}
		m, err := rt.RoundTrip(attemptCtx, addr, &metadataAPI.Request{TopicNames: topics})
		cancel()
		if err == nil {
			return parseMetadata(m)
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// bootstrapAddrs splits a multi-address (kafka.TCP with several hosts) into
// one address per broker, keeping the order the operator gave.
func bootstrapAddrs(addr net.Addr) []net.Addr {
	hosts := strings.Split(addr.String(), ",")
	out := make([]net.Addr, 0, len(hosts))
	for _, h := range hosts {
		if h = strings.TrimSpace(h); h != "" {
			out = append(out, kafka.TCP(h))
		}
	}
	return out
}

func parseMetadata(m protocol.Message) (*Metadata, error) {
	res, ok := m.(*metadataAPI.Response)
	if !ok {
		return nil, fmt.Errorf("unexpected metadata answer %T", m)
	}
	md := &Metadata{ClusterID: res.ClusterID, ControllerID: int(res.ControllerID)}
	for _, b := range res.Brokers {
		md.Brokers = append(md.Brokers, Broker{ID: int(b.NodeID), Host: b.Host, Port: int(b.Port), Rack: b.Rack})
	}
	for _, t := range res.Topics {
		tm := TopicMetadata{Name: t.Name, Internal: t.IsInternal, Error: kafkaError(t.ErrorCode)}
		for _, p := range t.Partitions {
			tm.Partitions = append(tm.Partitions, PartitionMetadata{
				ID: int(p.PartitionIndex), Leader: int(p.LeaderID),
				Replicas: ints(p.ReplicaNodes), ISR: ints(p.IsrNodes), Offline: ints(p.OfflineReplicas),
				Error: kafkaError(p.ErrorCode),
			})
		}
		md.Topics = append(md.Topics, tm)
	}
	return md, nil
}

func kafkaError(code int16) error {
	if code == 0 {
		return nil
	}
	return kafka.Error(code)
}

func ints(v []int32) []int {
	out := make([]int, len(v))
	for i, n := range v {
		out[i] = int(n)
	}
	return out
}

// ConfigAPI is the part of *kafka.Client the check needs besides metadata.
type ConfigAPI interface {
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
	// registered (down, or removed without reassignment).
	UnregisteredReplicas int `json:"unregistered_replicas,omitempty"`
	// Spread is the leader and replica count per broker, over the checked
	// topics, including brokers that hold replicas but are not registered.
	Spread   []BrokerSpread `json:"spread"`
	Topics   []Topic        `json:"topics"`
	Problems []string       `json:"problems,omitempty"`
	// Notes are observations that do not change the status, such as an
	// uneven spread that Cruise Control could fix.
	Notes []string `json:"notes,omitempty"`
}

// BrokerSpread is how much of the cluster one broker carries.
type BrokerSpread struct {
	ID         int  `json:"id"`
	Registered bool `json:"registered"`
	// Leaders is how many partitions this broker leads.
	Leaders int `json:"leaders"`
	// Replicas is how many partition replicas are assigned to it.
	Replicas int `json:"replicas"`
	// OutOfSync is how many of those replicas are not in the ISR.
	OutOfSync int `json:"out_of_sync"`
	// PreferredLeader is how many partitions list it first, i.e. where a
	// preferred leader election puts leadership.
	PreferredLeader int `json:"preferred_leader"`
}

// Check reads metadata and topic configs and evaluates them.
func Check(ctx context.Context, client *kafka.Client, o Options) (Report, error) {
	md, err := ReadMetadata(ctx, client, o.Topics)
	if err != nil {
		return Report{}, fmt.Errorf("read cluster metadata: %w", err)
	}
	// The configs come from one broker, which may be the one that is down:
	// a health check must still answer then, so it falls back to the
	// assumed default and says so.
	minISR, cfgErr := topicMinISR(ctx, client, md.Topics)
	r := Evaluate(md, minISR, o)
	if cfgErr != nil {
		r.Notes = append(r.Notes, fmt.Sprintf("min.insync.replicas not read (%v); assumed %d for every topic", cfgErr, o.DefaultMinISR))
	}
	return r, nil
}

// topicMinISR reads the effective min.insync.replicas of every topic (the
// topic override or the broker default, as Kafka resolves it).
func topicMinISR(ctx context.Context, api ConfigAPI, topics []TopicMetadata) (map[string]int, error) {
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
func Evaluate(md *Metadata, minISR map[string]int, o Options) Report {
	r := Report{Status: Healthy, ClusterID: md.ClusterID, ExpectedBrokers: o.ExpectedBrokers, Topics: []Topic{}, Spread: []BrokerSpread{}}
	worsen := func(s Status, format string, args ...any) {
		if rank(s) > rank(r.Status) {
			r.Status = s
		}
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}

	registered := map[int]Broker{}
	for _, b := range md.Brokers {
		registered[b.ID] = b
		r.Brokers = append(r.Brokers, b)
	}
	sort.Slice(r.Brokers, func(i, j int) bool { return r.Brokers[i].ID < r.Brokers[j].ID })

	// Under KRaft the controller in metadata is a broker that answers for
	// the quorum (clients cannot reach the quorum itself); none means no
	// broker could.
	if c, ok := registered[md.ControllerID]; ok {
		r.Controller = &c
	} else {
		worsen(Unhealthy, "no controller reported in metadata")
	}
	switch {
	case len(md.Brokers) == 0:
		worsen(Unhealthy, "no broker registered")
	case o.ExpectedBrokers > 0 && len(md.Brokers) < o.ExpectedBrokers:
		// Degraded, not unhealthy: with RF 3 and min ISR 2 one broker down
		// still takes writes; partitions that cannot are reported below.
		worsen(Degraded, "%d of %d expected brokers registered", len(md.Brokers), o.ExpectedBrokers)
	}

	spread := map[int]*BrokerSpread{}
	spreadOf := func(id int) *BrokerSpread {
		s, ok := spread[id]
		if !ok {
			_, reg := registered[id]
			s = &BrokerSpread{ID: id, Registered: reg}
			spread[id] = s
		}
		return s
	}
	for id := range registered {
		spreadOf(id)
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
			_, leaderUp := registered[p.Leader]
			for i, id := range p.Replicas {
				s := spreadOf(id)
				s.Replicas++
				if !slices.Contains(p.ISR, id) {
					s.OutOfSync++
				}
				if i == 0 {
					s.PreferredLeader++
				}
				if !s.Registered {
					r.UnregisteredReplicas++
				}
			}
			if leaderUp {
				spreadOf(p.Leader).Leaders++
			}
			switch {
			case p.Leader < 0 || !leaderUp:
				th.Offline = append(th.Offline, p.ID)
			case len(p.ISR) < th.MinISR:
				th.BelowMinISR = append(th.BelowMinISR, p.ID)
			}
			if len(p.ISR) < len(p.Replicas) {
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
	for _, s := range spread {
		r.Spread = append(r.Spread, *s)
	}
	sort.Slice(r.Spread, func(i, j int) bool { return r.Spread[i].ID < r.Spread[j].ID })
	if r.UnregisteredReplicas > 0 {
		var ids []int
		for _, s := range r.Spread {
			if !s.Registered && s.Replicas > 0 {
				ids = append(ids, s.ID)
			}
		}
		worsen(Degraded, "%d replicas are assigned to brokers that are not registered %v", r.UnregisteredReplicas, ids)
	}
	r.Notes = unevenSpread(r.Spread)
	return r
}

// unevenSpread notes when registered brokers carry clearly different
// numbers of replicas or leaders: the imbalance a Cruise Control rebalance
// (or, for leaders only, a preferred leader election) fixes.
func unevenSpread(spread []BrokerSpread) []string {
	var up []BrokerSpread
	for _, s := range spread {
		if s.Registered {
			up = append(up, s)
		}
	}
	if len(up) < 2 {
		return nil
	}
	var notes []string
	for _, m := range []struct {
		what string
		get  func(BrokerSpread) int
	}{
		{"replicas", func(s BrokerSpread) int { return s.Replicas }},
		{"leaders", func(s BrokerSpread) int { return s.Leaders }},
	} {
		minB, maxB, total := up[0], up[0], 0
		for _, s := range up {
			total += m.get(s)
			if m.get(s) < m.get(minB) {
				minB = s
			}
			if m.get(s) > m.get(maxB) {
				maxB = s
			}
		}
		avg := float64(total) / float64(len(up))
		// Rounding leaves at most a few partitions of difference on a
		// balanced cluster; more than a quarter of the average is not that.
		if diff := m.get(maxB) - m.get(minB); diff > 2 && float64(diff) > avg/4 {
			notes = append(notes, fmt.Sprintf("%s are unevenly spread: broker %d has %d, broker %d has %d (average %.1f); "+
				"see `chatctl cc proposals`", m.what, maxB.ID, m.get(maxB), minB.ID, m.get(minB), avg))
		}
	}
	return notes
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
