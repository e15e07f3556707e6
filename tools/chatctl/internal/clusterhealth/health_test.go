package clusterhealth_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/tools/chatctl/internal/clusterhealth"
)

func brokers(ids ...int) []clusterhealth.Broker {
	var out []clusterhealth.Broker
	for _, id := range ids {
		out = append(out, clusterhealth.Broker{ID: id, Host: "kafka-" + string(rune('0'+id)), Port: 19092})
	}
	return out
}

func partition(id, leader int, replicas, isr []int) clusterhealth.PartitionMetadata {
	return clusterhealth.PartitionMetadata{ID: id, Leader: leader, Replicas: replicas, ISR: isr}
}

func submitted(parts ...clusterhealth.PartitionMetadata) []clusterhealth.TopicMetadata {
	return []clusterhealth.TopicMetadata{{Name: "chat.submitted", Partitions: parts}}
}

func TestEvaluate(t *testing.T) {
	all3 := []int{1, 2, 3}
	tests := []struct {
		name          string
		md            clusterhealth.Metadata
		minISR        map[string]int
		opts          clusterhealth.Options
		wantStatus    clusterhealth.Status
		wantURP       []int
		wantBelow     []int
		wantOffline   []int
		wantMinISR    int
		wantUnreg     int
		wantProblem   string
		wantNoProblem bool
	}{
		{
			name: "healthy",
			md: clusterhealth.Metadata{ClusterID: "c", ControllerID: 1, Brokers: brokers(1, 2, 3), Topics: submitted(
				partition(0, 1, all3, all3), partition(1, 2, all3, all3))},
			minISR:     map[string]int{"chat.submitted": 2},
			opts:       clusterhealth.Options{ExpectedBrokers: 3, DefaultMinISR: 1},
			wantStatus: clusterhealth.Healthy, wantMinISR: 2, wantNoProblem: true,
		},
		{
			name: "one follower behind is degraded",
			md: clusterhealth.Metadata{ControllerID: 1, Brokers: brokers(1, 2, 3), Topics: submitted(
				partition(0, 1, all3, all3), partition(1, 2, all3, []int{2, 3}))},
			minISR:     map[string]int{"chat.submitted": 2},
			opts:       clusterhealth.Options{ExpectedBrokers: 3},
			wantStatus: clusterhealth.Degraded, wantURP: []int{1}, wantMinISR: 2,
			wantProblem: "1 under-replicated partitions [1]",
		},
		{
			name: "isr below min.insync.replicas is unhealthy",
			md: clusterhealth.Metadata{ControllerID: 1, Brokers: brokers(1, 2, 3), Topics: submitted(
				partition(0, 3, all3, []int{3}), partition(1, 2, all3, []int{2, 3}))},
			minISR:     map[string]int{"chat.submitted": 2},
			wantStatus: clusterhealth.Unhealthy, wantURP: []int{0, 1}, wantBelow: []int{0}, wantMinISR: 2,
			wantProblem: "below min.insync.replicas=2 [0]",
		},
		{
			name: "partition without leader is offline",
			md: clusterhealth.Metadata{ControllerID: 1, Brokers: brokers(1, 2, 3), Topics: submitted(
				partition(0, -1, all3, nil))},
			minISR:     map[string]int{"chat.submitted": 2},
			wantStatus: clusterhealth.Unhealthy, wantURP: []int{0}, wantOffline: []int{0}, wantMinISR: 2,
			wantProblem: "without a leader [0]",
		},
		{
			name: "one broker down is degraded: every partition still takes acks=all writes",
			md: clusterhealth.Metadata{ControllerID: 1, Brokers: brokers(1, 2), Topics: submitted(
				partition(0, 1, []int{1, 2, 3}, []int{1, 2}),
				partition(1, 2, []int{2, 3, 1}, []int{2, 1}))},
			minISR:     map[string]int{"chat.submitted": 2},
			opts:       clusterhealth.Options{ExpectedBrokers: 3},
			wantStatus: clusterhealth.Degraded, wantURP: []int{0, 1}, wantMinISR: 2, wantUnreg: 2,
			wantProblem: "2 replicas are assigned to brokers that are not registered [3]",
		},
		{
			name: "two brokers down is unhealthy: the ISR is below min.insync.replicas",
			md: clusterhealth.Metadata{ControllerID: 1, Brokers: brokers(1), Topics: submitted(
				partition(0, 1, []int{1, 2, 3}, []int{1}))},
			minISR:     map[string]int{"chat.submitted": 2},
			opts:       clusterhealth.Options{ExpectedBrokers: 3},
			wantStatus: clusterhealth.Unhealthy, wantURP: []int{0}, wantBelow: []int{0}, wantMinISR: 2, wantUnreg: 2,
			wantProblem: "1 of 3 expected brokers registered",
		},
		{
			name:       "missing controller is unhealthy",
			md:         clusterhealth.Metadata{ControllerID: -1, Brokers: brokers(1, 2, 3), Topics: submitted(partition(0, 1, all3, all3))},
			minISR:     map[string]int{"chat.submitted": 2},
			wantStatus: clusterhealth.Unhealthy, wantMinISR: 2,
			wantProblem: "no controller",
		},
		{
			name:       "unreadable min isr falls back to the default",
			md:         clusterhealth.Metadata{ControllerID: 1, Brokers: brokers(1, 2, 3), Topics: submitted(partition(0, 1, all3, []int{1, 2}))},
			opts:       clusterhealth.Options{DefaultMinISR: 3},
			wantStatus: clusterhealth.Unhealthy, wantURP: []int{0}, wantBelow: []int{0}, wantMinISR: 3,
			wantProblem: "below min.insync.replicas=3",
		},
		{
			name: "topic level error",
			md: clusterhealth.Metadata{ControllerID: 1, Brokers: brokers(1, 2, 3), Topics: []clusterhealth.TopicMetadata{{
				Name: "chat.submitted", Error: kafka.LeaderNotAvailable}}},
			wantStatus:  clusterhealth.Unhealthy,
			wantProblem: "topic chat.submitted: ",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := clusterhealth.Evaluate(&tt.md, tt.minISR, tt.opts)
			if r.Status != tt.wantStatus {
				t.Errorf("status = %s, want %s (problems %q)", r.Status, tt.wantStatus, r.Problems)
			}
			if len(r.Topics) != 1 {
				t.Fatalf("topics = %+v", r.Topics)
			}
			top := r.Topics[0]
			for _, c := range []struct {
				what      string
				got, want []int
			}{
				{"under-replicated", top.UnderReplicated, tt.wantURP},
				{"below min isr", top.BelowMinISR, tt.wantBelow},
				{"offline", top.Offline, tt.wantOffline},
			} {
				if !slices.Equal(c.got, c.want) {
					t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
				}
			}
			if tt.wantMinISR != 0 && top.MinISR != tt.wantMinISR {
				t.Errorf("min isr = %d, want %d", top.MinISR, tt.wantMinISR)
			}
			if r.UnregisteredReplicas != tt.wantUnreg {
				t.Errorf("unregistered replicas = %d, want %d", r.UnregisteredReplicas, tt.wantUnreg)
			}
			joined := strings.Join(r.Problems, "\n")
			if tt.wantNoProblem && joined != "" {
				t.Errorf("unexpected problems %q", joined)
			}
			if tt.wantProblem != "" && !strings.Contains(joined, tt.wantProblem) {
				t.Errorf("problems %q lack %q", joined, tt.wantProblem)
			}
		})
	}
}

func TestEvaluateReportsBrokersAndController(t *testing.T) {
	md := clusterhealth.Metadata{ClusterID: "kchat", ControllerID: 2, Brokers: []clusterhealth.Broker{brokers(3)[0], brokers(1)[0], brokers(2)[0]}}
	r := clusterhealth.Evaluate(&md, nil, clusterhealth.Options{ExpectedBrokers: 3})
	ids := []int{}
	for _, b := range r.Brokers {
		ids = append(ids, b.ID)
	}
	if !slices.Equal(ids, []int{1, 2, 3}) {
		t.Errorf("brokers = %v, want sorted 1,2,3", ids)
	}
	if r.Controller == nil || r.Controller.ID != 2 || r.Controller.Host != "kafka-2" {
		t.Errorf("controller = %+v", r.Controller)
	}
	if r.ClusterID != "kchat" || r.Status != clusterhealth.Healthy {
		t.Errorf("report = %+v", r)
	}
}

func TestEvaluateSpreadPerBroker(t *testing.T) {
	// Broker 3 is down; its replicas still count against it by id.
	md := clusterhealth.Metadata{ControllerID: 1, Brokers: brokers(1, 2), Topics: []clusterhealth.TopicMetadata{
		{Name: "a", Partitions: []clusterhealth.PartitionMetadata{
			partition(0, 1, []int{1, 2, 3}, []int{1, 2}),
			partition(1, 2, []int{2, 3, 1}, []int{2, 1}),
			partition(2, 1, []int{3, 1, 2}, []int{1, 2}), // preferred leader 3 is down
		}},
		{Name: "b", Partitions: []clusterhealth.PartitionMetadata{partition(0, 1, []int{1, 2}, []int{1, 2})}},
	}}
	r := clusterhealth.Evaluate(&md, map[string]int{"a": 2, "b": 1}, clusterhealth.Options{ExpectedBrokers: 3})
	want := []clusterhealth.BrokerSpread{
		{ID: 1, Registered: true, Leaders: 3, Replicas: 4, OutOfSync: 0, PreferredLeader: 2},
		{ID: 2, Registered: true, Leaders: 1, Replicas: 4, OutOfSync: 0, PreferredLeader: 1},
		{ID: 3, Registered: false, Leaders: 0, Replicas: 3, OutOfSync: 3, PreferredLeader: 1},
	}
	if !slices.Equal(r.Spread, want) {
		t.Errorf("spread = %+v\nwant     %+v", r.Spread, want)
	}
	if r.Status != clusterhealth.Degraded {
		t.Errorf("status %s, want degraded", r.Status)
	}
}

func TestEvaluateNotesAnUnevenSpread(t *testing.T) {
	var parts []clusterhealth.PartitionMetadata
	for i := range 12 {
		// Every partition on brokers 1 and 2 only, led by 1: the tutorial's
		// "topics piled on one broker".
		parts = append(parts, partition(i, 1, []int{1, 2}, []int{1, 2}))
	}
	md := clusterhealth.Metadata{ControllerID: 1, Brokers: brokers(1, 2, 3), Topics: []clusterhealth.TopicMetadata{{Name: "piled", Partitions: parts}}}
	r := clusterhealth.Evaluate(&md, nil, clusterhealth.Options{ExpectedBrokers: 3, DefaultMinISR: 1})
	if r.Status != clusterhealth.Healthy {
		t.Errorf("an uneven spread is not a health problem, got %s %v", r.Status, r.Problems)
	}
	joined := strings.Join(r.Notes, "\n")
	for _, want := range []string{"replicas are unevenly spread: broker 1 has 12, broker 3 has 0", "leaders are unevenly spread: broker 1 has 12"} {
		if !strings.Contains(joined, want) {
			t.Errorf("notes %q lack %q", joined, want)
		}
	}

	balanced := clusterhealth.Metadata{ControllerID: 1, Brokers: brokers(1, 2, 3), Topics: submitted(
		partition(0, 1, []int{1, 2, 3}, []int{1, 2, 3}), partition(1, 2, []int{2, 3, 1}, []int{2, 3, 1}),
		partition(2, 3, []int{3, 1, 2}, []int{3, 1, 2}), partition(3, 1, []int{1, 2, 3}, []int{1, 2, 3}))}
	if r := clusterhealth.Evaluate(&balanced, nil, clusterhealth.Options{}); len(r.Notes) != 0 {
		t.Errorf("balanced cluster noted %v", r.Notes)
	}
}
