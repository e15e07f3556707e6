package clusterhealth_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/services/chatctl/internal/clusterhealth"
)

// brokers returns three registered brokers and the value kafka-go uses for a
// replica or leader on a broker that is not registered.
func brokers() (b1, b2, b3, gone kafka.Broker) {
	return kafka.Broker{ID: 1, Host: "kafka-1", Port: 19092},
		kafka.Broker{ID: 2, Host: "kafka-2", Port: 19092},
		kafka.Broker{ID: 3, Host: "kafka-3", Port: 19092},
		kafka.Broker{}
}

func partition(id int, leader kafka.Broker, replicas, isr []kafka.Broker) kafka.Partition {
	return kafka.Partition{Topic: "chat.submitted", ID: id, Leader: leader, Replicas: replicas, Isr: isr}
}

func TestEvaluate(t *testing.T) {
	b1, b2, b3, gone := brokers()
	all3 := func() []kafka.Broker { return []kafka.Broker{b1, b2, b3} }
	tests := []struct {
		name          string
		md            kafka.MetadataResponse
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
			md: kafka.MetadataResponse{ClusterID: "c", Controller: b1, Brokers: all3(), Topics: []kafka.Topic{{
				Name: "chat.submitted", Partitions: []kafka.Partition{
					partition(0, b1, all3(), all3()), partition(1, b2, all3(), all3()),
				}}}},
			minISR:     map[string]int{"chat.submitted": 2},
			opts:       clusterhealth.Options{ExpectedBrokers: 3, DefaultMinISR: 1},
			wantStatus: clusterhealth.Healthy, wantMinISR: 2, wantNoProblem: true,
		},
		{
			name: "one follower behind is degraded",
			md: kafka.MetadataResponse{Controller: b1, Brokers: all3(), Topics: []kafka.Topic{{
				Name: "chat.submitted", Partitions: []kafka.Partition{
					partition(0, b1, all3(), all3()), partition(1, b2, all3(), []kafka.Broker{b2, b3}),
				}}}},
			minISR:     map[string]int{"chat.submitted": 2},
			opts:       clusterhealth.Options{ExpectedBrokers: 3},
			wantStatus: clusterhealth.Degraded, wantURP: []int{1}, wantMinISR: 2,
			wantProblem: "1 under-replicated partitions [1]",
		},
		{
			name: "isr below min.insync.replicas is unhealthy",
			md: kafka.MetadataResponse{Controller: b1, Brokers: all3(), Topics: []kafka.Topic{{
				Name: "chat.submitted", Partitions: []kafka.Partition{
					partition(0, b3, all3(), []kafka.Broker{b3}), partition(1, b2, all3(), []kafka.Broker{b2, b3}),
				}}}},
			minISR:     map[string]int{"chat.submitted": 2},
			wantStatus: clusterhealth.Unhealthy, wantURP: []int{0, 1}, wantBelow: []int{0}, wantMinISR: 2,
			wantProblem: "below min.insync.replicas=2 [0]",
		},
		{
			name: "partition without leader is offline",
			md: kafka.MetadataResponse{Controller: b1, Brokers: all3(), Topics: []kafka.Topic{{
				Name: "chat.submitted", Partitions: []kafka.Partition{
					partition(0, gone, all3(), nil),
				}}}},
			minISR:     map[string]int{"chat.submitted": 2},
			wantStatus: clusterhealth.Unhealthy, wantURP: []int{0}, wantOffline: []int{0}, wantMinISR: 2,
			wantProblem: "without a leader [0]",
		},
		{
			name: "a broker that left is counted from the replicas it still holds",
			md: kafka.MetadataResponse{Controller: b1, Brokers: []kafka.Broker{b1, b2}, Topics: []kafka.Topic{{
				Name: "chat.submitted", Partitions: []kafka.Partition{
					partition(0, b1, []kafka.Broker{b1, b2, gone}, []kafka.Broker{b1, b2}),
					partition(1, b2, []kafka.Broker{b2, gone, b1}, []kafka.Broker{b2, b1}),
				}}}},
			minISR:     map[string]int{"chat.submitted": 2},
			opts:       clusterhealth.Options{ExpectedBrokers: 3},
			wantStatus: clusterhealth.Unhealthy, wantURP: []int{0, 1}, wantMinISR: 2, wantUnreg: 2,
			wantProblem: "2 of 3 expected brokers registered",
		},
		{
			name: "missing controller is unhealthy",
			md: kafka.MetadataResponse{Brokers: all3(), Topics: []kafka.Topic{{
				Name: "chat.submitted", Partitions: []kafka.Partition{partition(0, b1, all3(), all3())}}}},
			minISR:     map[string]int{"chat.submitted": 2},
			wantStatus: clusterhealth.Unhealthy, wantMinISR: 2,
			wantProblem: "no controller",
		},
		{
			name: "unreadable min isr falls back to the default",
			md: kafka.MetadataResponse{Controller: b1, Brokers: all3(), Topics: []kafka.Topic{{
				Name: "chat.submitted", Partitions: []kafka.Partition{partition(0, b1, all3(), []kafka.Broker{b1, b2})}}}},
			opts:       clusterhealth.Options{DefaultMinISR: 3},
			wantStatus: clusterhealth.Unhealthy, wantURP: []int{0}, wantBelow: []int{0}, wantMinISR: 3,
			wantProblem: "below min.insync.replicas=3",
		},
		{
			name: "topic level error",
			md: kafka.MetadataResponse{Controller: b1, Brokers: all3(), Topics: []kafka.Topic{{
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
	b1, b2, b3, _ := brokers()
	md := kafka.MetadataResponse{ClusterID: "kchat", Controller: b2, Brokers: []kafka.Broker{b3, b1, b2}}
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
