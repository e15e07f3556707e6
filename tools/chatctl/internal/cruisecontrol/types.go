package cruisecontrol

// The types below mirror the response schemas in Cruise Control's OpenAPI spec
// (cruise-control/src/main/resources/yaml/responses/ at tag 2.5.146). Only the
// fields an operator looks at are declared; unknown fields are ignored so a
// newer Cruise Control does not break the CLI.

// State is the answer of GET state: one section per Cruise Control component.
// A section is nil when it was not requested with substates.
type State struct {
	Version              int                   `json:"version"`
	MonitorState         *MonitorState         `json:"MonitorState,omitempty"`
	ExecutorState        *ExecutorState        `json:"ExecutorState,omitempty"`
	AnalyzerState        *AnalyzerState        `json:"AnalyzerState,omitempty"`
	AnomalyDetectorState *AnomalyDetectorState `json:"AnomalyDetectorState,omitempty"`
}

// MonitorState tells whether enough metric windows exist to model the load.
type MonitorState struct {
	State                 string  `json:"state"`
	Trained               bool    `json:"trained"`
	TrainingPct           float64 `json:"trainingPct"`
	NumMonitoredWindows   float64 `json:"numMonitoredWindows"`
	NumValidPartitions    float64 `json:"numValidPartitions"`
	NumTotalPartitions    float64 `json:"numTotalPartitions"`
	MonitoringCoveragePct float64 `json:"monitoringCoveragePct"`
	NumFlawedPartitions   float64 `json:"numFlawedPartitions"`
	Error                 string  `json:"error,omitempty"`
}

// ExecutorState tells whether replicas or leaders are being moved right now.
type ExecutorState struct {
	State                           string `json:"state"`
	TriggeredUserTaskID             string `json:"triggeredUserTaskId,omitempty"`
	TriggeredSelfHealingTaskID      string `json:"triggeredSelfHealingTaskId,omitempty"`
	TriggeredTaskReason             string `json:"triggeredTaskReason,omitempty"`
	NumTotalPartitionMovements      int    `json:"numTotalPartitionMovements,omitempty"`
	NumFinishedPartitionMovements   int    `json:"numFinishedPartitionMovements,omitempty"`
	NumInProgressPartitionMovements int    `json:"numInProgressPartitionMovements,omitempty"`
	NumPendingPartitionMovements    int    `json:"numPendingPartitionMovements,omitempty"`
	FinishedDataMovementMB          int64  `json:"finishedDataMovement,omitempty"`
	TotalDataToMoveMB               int64  `json:"totalDataToMove,omitempty"`
	NumTotalLeadershipMovements     int    `json:"numTotalLeadershipMovements,omitempty"`
	NumFinishedLeadershipMovements  int    `json:"numFinishedLeadershipMovements,omitempty"`
	NumPendingLeadershipMovements   int    `json:"numPendingLeadershipMovements,omitempty"`
	RecentlyDemotedBrokers          []int  `json:"recentlyDemotedBrokers,omitempty"`
	RecentlyRemovedBrokers          []int  `json:"recentlyRemovedBrokers,omitempty"`
	Error                           string `json:"error,omitempty"`
}

// AnalyzerState tells whether a proposal can be computed and with which goals.
type AnalyzerState struct {
	IsProposalReady bool            `json:"isProposalReady"`
	ReadyGoals      []string        `json:"readyGoals"`
	GoalReadiness   []GoalReadiness `json:"goalReadiness,omitempty"`
}

// GoalReadiness says whether one goal has the metric windows it needs.
type GoalReadiness struct {
	Name   string `json:"name"`
	Status string `json:"status"`
}

// AnomalyDetectorState summarises self-healing and recent anomalies.
type AnomalyDetectorState struct {
	SelfHealingEnabled        []string         `json:"selfHealingEnabled"`
	SelfHealingDisabled       []string         `json:"selfHealingDisabled"`
	RecentGoalViolations      []AnomalyDetails `json:"recentGoalViolations"`
	RecentBrokerFailures      []AnomalyDetails `json:"recentBrokerFailures"`
	RecentDiskFailures        []AnomalyDetails `json:"recentDiskFailures"`
	RecentMetricAnomalies     []AnomalyDetails `json:"recentMetricAnomalies"`
	RecentTopicAnomalies      []AnomalyDetails `json:"recentTopicAnomalies"`
	OngoingSelfHealingAnomaly string           `json:"ongoingSelfHealingAnomaly,omitempty"`
	BalancednessScore         float64          `json:"balancednessScore"`
}

// AnomalyDetails is one detected anomaly.
type AnomalyDetails struct {
	AnomalyID      string `json:"anomalyId"`
	Status         string `json:"status"`
	DetectionMs    int64  `json:"detectionMs"`
	StatusUpdateMs int64  `json:"statusUpdateMs"`
}

// OptimizationResult is the answer of proposals, rebalance, add_broker,
// remove_broker and demote_broker.
type OptimizationResult struct {
	Summary                OptimizerSummary `json:"summary"`
	GoalSummary            []GoalStatus     `json:"goalSummary"`
	LoadAfterOptimization  *BrokerStats     `json:"loadAfterOptimization,omitempty"`
	LoadBeforeOptimization *BrokerStats     `json:"loadBeforeOptimization,omitempty"`
	Version                int              `json:"version"`

	// UserTaskID is the task Cruise Control filed the request under; an
	// operator needs it to find an execution in user_tasks afterwards.
	UserTaskID string `json:"-"`
	// DryRun records what was asked for so the rendering cannot claim an
	// execution that never happened (the response body does not say).
	DryRun bool `json:"-"`
}

// OptimizerSummary is the headline of a proposal.
type OptimizerSummary struct {
	NumReplicaMovements             int      `json:"numReplicaMovements"`
	DataToMoveMB                    int64    `json:"dataToMoveMB"`
	NumIntraBrokerReplicaMovements  int      `json:"numIntraBrokerReplicaMovements"`
	IntraBrokerDataToMoveMB         int64    `json:"intraBrokerDataToMoveMB"`
	NumLeaderMovements              int      `json:"numLeaderMovements"`
	RecentWindows                   int      `json:"recentWindows"`
	MonitoredPartitionsPercentage   float64  `json:"monitoredPartitionsPercentage"`
	ExcludedTopics                  []string `json:"excludedTopics"`
	ExcludedBrokersForReplicaMove   []int    `json:"excludedBrokersForReplicaMove"`
	ExcludedBrokersForLeadership    []int    `json:"excludedBrokersForLeadership"`
	OnDemandBalancednessScoreBefore float64  `json:"onDemandBalancednessScoreBefore"`
	OnDemandBalancednessScoreAfter  float64  `json:"onDemandBalancednessScoreAfter"`
	ProvisionStatus                 string   `json:"provisionStatus,omitempty"`
	ProvisionRecommendation         string   `json:"provisionRecommendation,omitempty"`
}

// GoalStatus is the outcome of one goal in a proposal.
type GoalStatus struct {
	Goal               string            `json:"goal"`
	Status             string            `json:"status"` // VIOLATED, FIXED or NO-ACTION
	ClusterModelStats  ClusterModelStats `json:"clusterModelStats"`
	OptimizationTimeMs int64             `json:"optimizationTimeMs"`
}

// ClusterModelStats describes the modelled cluster after a goal ran.
type ClusterModelStats struct {
	Metadata struct {
		Brokers  int `json:"brokers"`
		Replicas int `json:"replicas"`
		Topics   int `json:"topics"`
	} `json:"metadata"`
	// Statistics maps AVG, MAX, MIN and STD to per-resource values
	// (cpu, disk, networkInbound, replicas, leaderReplicas...).
	Statistics map[string]map[string]float64 `json:"statistics"`
}

// BrokerStats is the answer of load and the load sections of a proposal.
type BrokerStats struct {
	Brokers []BrokerLoad `json:"brokers"`
	Version int          `json:"version,omitempty"`
}

// BrokerLoad is the modelled load of one broker.
type BrokerLoad struct {
	Broker             int     `json:"Broker"`
	Host               string  `json:"Host"`
	Rack               string  `json:"Rack"`
	BrokerState        string  `json:"BrokerState"`
	DiskMB             float64 `json:"DiskMB"`
	DiskPct            float64 `json:"DiskPct"`
	CPUPct             float64 `json:"CpuPct"`
	LeaderNwInRate     float64 `json:"LeaderNwInRate"`
	FollowerNwInRate   float64 `json:"FollowerNwInRate"`
	NwOutRate          float64 `json:"NwOutRate"`
	Replicas           int     `json:"Replicas"`
	Leaders            int     `json:"Leaders"`
	DiskCapacityMB     float64 `json:"DiskCapacityMB"`
	NetworkInCapacity  float64 `json:"NetworkInCapacity"`
	NetworkOutCapacity float64 `json:"NetworkOutCapacity"`
}

// UserTasks is the answer of user_tasks.
type UserTasks struct {
	UserTasks []UserTask `json:"userTasks"`
	Version   int        `json:"version"`
}

// UserTask is one request Cruise Control remembers.
type UserTask struct {
	UserTaskID     string `json:"UserTaskId"`
	RequestURL     string `json:"RequestURL"`
	ClientIdentity string `json:"ClientIdentity"`
	StartMs        string `json:"StartMs"`
	Status         string `json:"Status"` // Active, InExecution, Completed, CompletedWithError
}

// StopResult is the answer of stop_proposal_execution.
type StopResult struct {
	Message string `json:"message"`
	Version int    `json:"version"`
}

// progress is the body of a 202 answer while a request is still running.
type progress struct {
	Progress []struct {
		Operation         string `json:"operation"`
		OperationProgress []struct {
			Step                 string  `json:"step"`
			Description          string  `json:"description"`
			CompletionPercentage float64 `json:"completionPercentage"`
		} `json:"operationProgress"`
	} `json:"progress"`
}

// errorBody is what Cruise Control answers with on every failure when json=true.
type errorBody struct {
	ErrorMessage string `json:"errorMessage"`
	StackTrace   string `json:"stackTrace"`
	Version      int    `json:"version"`
}
