// Package cctest is an in-process stand-in for the Cruise Control REST API.
//
// It exists only because Cruise Control cannot run on the machines that build
// and test kchat (it is not published to Maven Central and its Gradle build
// needs downloads those machines cannot make). It follows the documented API
// of Cruise Control 2.5.146 (the OpenAPI files under
// cruise-control/src/main/resources/yaml/ and the REST-APIs wiki page):
//
//   - endpoints under /kafkacruisecontrol/, GET for reads, POST for changes;
//   - json=true selects JSON, anything else gets plain text;
//   - unknown query parameters are rejected with 400, as Cruise Control does;
//   - dryrun defaults to true on every endpoint that can move data;
//   - slow endpoints answer 202 with a User-Task-ID header and a progress body;
//     repeating the identical request with that header returns the progress
//     again or, once done, the final 200 answer;
//   - failures carry {errorMessage, stackTrace, version}; a rejected request
//     is a 400 "Bad <METHOD> request '/<endpoint>' due to '<reason>'.", a
//     failed or refused operation a 500 "Error processing <METHOD> request
//     '/<endpoint>' due to: '<exception>: <reason>'.";
//   - an async operation that fails is first accepted (202 + User-Task-ID)
//     and reports the failure as the final answer to the task's poll, after
//     which user_tasks lists the task as CompletedWithError;
//   - an execution while another one runs is refused with
//     IllegalStateException, as Cruise Control does.
//
// The answers are fixed JSON documents written from the spec, deliberately not
// built from the client's Go types, so a client that misreads the schema fails.
package cctest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Failure makes one endpoint fail.
type Failure struct {
	Status  int
	Message string
	// Raw answers with a plain-text body, as a proxy in front of Cruise
	// Control would, instead of Cruise Control's JSON error document.
	Raw bool
}

// Config shapes the stand-in's behaviour.
type Config struct {
	// AsyncPolls is how many 202 answers an async endpoint gives before the
	// final one.
	AsyncPolls int
	// Fail maps an endpoint name (e.g. "rebalance") to a failure answered
	// at once, before any user task exists.
	Fail map[string]Failure
	// FailTask maps an async endpoint name to the failure its user task
	// ends with: the request is accepted and polled like a good one, and the
	// final answer is the error. Message is the operation's exception text
	// (e.g. "com.linkedin.kafka.cruisecontrol.exception.OptimizationFailureException:
	// [DiskCapacityGoal] ..."); the stand-in wraps it like Cruise Control.
	FailTask map[string]Failure
	// OmitTaskID leaves the User-Task-ID header out of 202 answers, which a
	// broken proxy can do.
	OmitTaskID bool
}

// Request is one HTTP request the stand-in received.
type Request struct {
	Method     string
	Endpoint   string
	Query      url.Values
	UserTaskID string
}

// Execution is a request that would really have moved data.
type Execution struct {
	Endpoint   string
	Brokers    []int
	UserTaskID string
}

// Server is a running stand-in.
type Server struct {
	URL string

	cfg Config
	srv *httptest.Server

	mu         sync.Mutex
	requests   []Request
	tasks      map[string]*task
	taskOrder  []string
	nextTaskID int
	executions []Execution
	executing  *Execution
}

type task struct {
	id        string
	method    string
	target    string // path and query of the request that created it
	remaining int
	status    int
	body      []byte
	execution bool
	failed    bool
}

// New starts a stand-in that is closed when the test ends.
func New(t testing.TB, cfg Config) *Server {
	t.Helper()
	s := &Server{cfg: cfg, tasks: map[string]*task{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	t.Cleanup(s.srv.Close)
	return s
}

// Requests returns every request received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Executions returns the non-dry-run requests accepted so far.
func (s *Server) Executions() []Execution {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.executions)
}

type endpoint struct {
	method string
	async  bool
	params []string
}

// endpoints lists the parameters per endpoint, from the OpenAPI files of
// 2.5.146 (the subset a client is likely to send; anything else is rejected
// like an unknown one).
func endpoints() map[string]endpoint {
	return map[string]endpoint{
		"state":      {http.MethodGet, false, []string{"substates", "json", "verbose", "super_verbose", "reason"}},
		"load":       {http.MethodGet, false, []string{"start", "end", "time", "allow_capacity_estimation", "json", "populate_disk_info", "capacity_only", "reason"}},
		"user_tasks": {http.MethodGet, false, []string{"client_ids", "endpoints", "entries", "types", "user_task_ids", "json", "fetch_completed_task", "reason"}},
		"proposals": {http.MethodGet, true, []string{"kafka_assigner", "destination_broker_ids", "ignore_proposal_cache", "rebalance_disk",
			"data_from", "use_ready_default_goals", "excluded_topics", "exclude_recently_removed_brokers", "goals", "allow_capacity_estimation",
			"verbose", "exclude_recently_demoted_brokers", "json", "fast_mode", "reason"}},
		"rebalance": {http.MethodPost, true, []string{"dryrun", "goals", "allow_capacity_estimation", "stop_ongoing_execution",
			"concurrent_partition_movements_per_broker", "max_partition_movements_in_cluster", "concurrent_leader_movements",
			"json", "skip_hard_goal_check", "excluded_topics", "use_ready_default_goals", "data_from", "verbose",
			"exclude_recently_demoted_brokers", "exclude_recently_removed_brokers", "replica_movement_strategies",
			"ignore_proposal_cache", "destination_broker_ids", "kafka_assigner", "rebalance_disk", "review_id",
			"replication_throttle", "execution_progress_check_interval_ms", "reason", "fast_mode"}},
		"add_broker": {http.MethodPost, true, []string{"brokerid", "dryrun", "throttle_added_broker", "allow_capacity_estimation", "goals",
			"concurrent_partition_movements_per_broker", "max_partition_movements_in_cluster", "concurrent_leader_movements", "json",
			"skip_hard_goal_check", "excluded_topics", "kafka_assigner", "use_ready_default_goals", "verbose",
			"exclude_recently_demoted_brokers", "exclude_recently_removed_brokers", "replica_movement_strategies",
			"execution_progress_check_interval_ms", "stop_ongoing_execution", "reason", "review_id", "data_from", "replication_throttle"}},
		"remove_broker": {http.MethodPost, true, []string{"brokerid", "dryrun", "throttle_removed_broker", "goals", "allow_capacity_estimation",
			"concurrent_partition_movements_per_broker", "max_partition_movements_in_cluster", "concurrent_leader_movements", "json",
			"skip_hard_goal_check", "excluded_topics", "kafka_assigner", "use_ready_default_goals", "verbose",
			"exclude_recently_demoted_brokers", "exclude_recently_removed_brokers", "replica_movement_strategies",
			"destination_broker_ids", "execution_progress_check_interval_ms", "stop_ongoing_execution", "reason", "review_id",
			"data_from", "replication_throttle", "fast_mode"}},
		"demote_broker": {http.MethodPost, true, []string{"brokerid", "dryrun", "concurrent_leader_movements", "allow_capacity_estimation",
			"json", "skip_urp_demotion", "exclude_follower_demotion", "verbose", "exclude_recently_demoted_brokers",
			"replica_movement_strategies", "brokerid_and_logdirs", "replication_throttle", "reason",
			"execution_progress_check_interval_ms", "stop_ongoing_execution", "review_id"}},
		"stop_proposal_execution": {http.MethodPost, false, []string{"force_stop", "stop_external_agent", "review_id", "json", "reason"}},
	}
}

// knownGoals are the goals the stand-in's configuration "supports"
// (cruisecontrol.properties goals=).
func knownGoals() []string {
	return []string{
		"ReplicaCapacityGoal", "DiskCapacityGoal", "NetworkInboundCapacityGoal", "NetworkOutboundCapacityGoal",
		"CpuCapacityGoal", "ReplicaDistributionGoal", "PotentialNwOutGoal", "DiskUsageDistributionGoal",
		"NetworkInboundUsageDistributionGoal", "NetworkOutboundUsageDistributionGoal", "CpuUsageDistributionGoal",
		"TopicReplicaDistributionGoal", "LeaderReplicaDistributionGoal", "LeaderBytesInDistributionGoal",
		"PreferredLeaderElectionGoal",
	}
}

const goalPackage = "com.linkedin.kafka.cruisecontrol.analyzer.goals."

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutPrefix(r.URL.Path, "/kafkacruisecontrol/")
	ep, known := endpoints()[name]
	taskID := r.Header.Get("User-Task-ID")

	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, Request{Method: r.Method, Endpoint: name, Query: r.URL.Query(), UserTaskID: taskID})

	if !ok || !known {
		writeError(w, http.StatusNotFound, fmt.Sprintf("Unsupported endpoint %s", r.URL.Path))
		return
	}
	if r.Method != ep.method {
		writeError(w, http.StatusNotFound, fmt.Sprintf("Unsupported %s request for endpoint %s", r.Method, name))
		return
	}
	q := r.URL.Query()
	if !strings.EqualFold(q.Get("json"), "true") {
		// Cruise Control's default answer format is plain text.
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "%s: plain text answer (pass json=true for JSON)\n", name)
		return
	}
	if taskID != "" {
		s.poll(w, r, taskID)
		return
	}
	if f, ok := s.cfg.Fail[name]; ok {
		if f.Raw {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(f.Status)
			fmt.Fprint(w, f.Message)
			return
		}
		writeError(w, f.Status, f.Message)
		return
	}
	var unknown []string
	for k := range q {
		if !slices.Contains(ep.params, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		writeError(w, http.StatusBadRequest, fmt.Sprintf("Unrecognized endpoint parameters in %s %s request: %v.", name, r.Method, unknown))
		return
	}

	status, body, exec, bad := s.answer(name, q)
	if bad != "" {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("Bad %s request '/%s' due to '%s'.", r.Method, name, bad))
		return
	}
	if status == http.StatusInternalServerError {
		writeJSON(w, status, body)
		return
	}
	failed := false
	if f, ok := s.cfg.FailTask[name]; ok && ep.async {
		status, body, exec, failed = f.Status, errorBody(processingError(r.Method, name, f.Message)), nil, true
		if status == 0 {
			status = http.StatusInternalServerError
		}
	}
	if !ep.async {
		writeJSON(w, status, body)
		return
	}

	s.nextTaskID++
	t := &task{
		id:        fmt.Sprintf("5ce7c299-53b3-48b6-b72e-%012d", s.nextTaskID),
		method:    r.Method,
		target:    r.URL.RequestURI(),
		remaining: s.cfg.AsyncPolls,
		status:    status,
		body:      body,
		execution: exec != nil,
		failed:    failed,
	}
	s.tasks[t.id] = t
	s.taskOrder = append(s.taskOrder, t.id)
	if exec != nil {
		exec.UserTaskID = t.id
		s.executions = append(s.executions, *exec)
		s.executing = exec
	}
	s.reply(w, t)
}

func (s *Server) poll(w http.ResponseWriter, r *http.Request, id string) {
	t, ok := s.tasks[id]
	if !ok {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("No active user task with id %s.", id))
		return
	}
	// A task id belongs to one exact URL, parameters included.
	if t.method != r.Method || t.target != r.URL.RequestURI() {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("User task %s was created for %s %s, not for %s %s.",
			id, t.method, t.target, r.Method, r.URL.RequestURI()))
		return
	}
	if t.remaining > 0 {
		t.remaining--
	}
	s.reply(w, t)
}

func (s *Server) reply(w http.ResponseWriter, t *task) {
	if t.remaining > 0 {
		if !s.cfg.OmitTaskID {
			w.Header().Set("User-Task-ID", t.id)
		}
		writeJSON(w, http.StatusAccepted, []byte(progressBody))
		return
	}
	w.Header().Set("User-Task-ID", t.id)
	writeJSON(w, t.status, t.body)
}

// answer validates a fresh request and builds its final answer; a non-empty
// string is the message of a 400 answer, worded like Cruise Control's.
func (s *Server) answer(name string, q url.Values) (int, []byte, *Execution, string) {
	switch name {
	case "state":
		return http.StatusOK, s.stateBody(q.Get("substates")), nil, ""
	case "load":
		return http.StatusOK, []byte(`{"version":1,"hosts":[],"brokers":[` + brokerLoad(1, 41.5) + `,` + brokerLoad(2, 12.25) + `,` + brokerLoad(3, 40.0) + `]}`), nil, ""
	case "user_tasks":
		return http.StatusOK, s.userTasksBody(), nil, ""
	case "stop_proposal_execution":
		s.executing = nil
		return http.StatusOK, []byte(`{"message":"Proposal execution stopped.","version":1}`), nil, ""
	}

	goals, bad := parseGoals(q.Get("goals"))
	if bad != "" {
		return 0, nil, nil, bad
	}
	if name == "proposals" {
		return http.StatusOK, optimizationBody(6, 120, 3, goals), nil, ""
	}

	dryRun := true // documented default of every data-moving endpoint
	if v := q.Get("dryrun"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return 0, nil, nil, fmt.Sprintf("Invalid value %q for parameter dryrun.", v)
		}
		dryRun = b
	}
	var brokers []int
	if name != "rebalance" {
		raw := q.Get("brokerid")
		if raw == "" {
			return 0, nil, nil, fmt.Sprintf("Missing required parameter brokerid for endpoint %s.", name)
		}
		for _, f := range strings.Split(raw, ",") {
			id, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				return 0, nil, nil, fmt.Sprintf("Invalid broker id %q.", f)
			}
			brokers = append(brokers, id)
		}
	}
	if !dryRun && s.executing != nil {
		return http.StatusInternalServerError, errorBody(processingError(http.MethodPost, name,
			"java.lang.IllegalStateException: Cannot start a new execution while there is an ongoing execution. "+
				"Please use stop_ongoing_execution=true to stop ongoing execution and start a new one.")), nil, ""
	}

	var body []byte
	switch name {
	case "rebalance":
		body = optimizationBody(6, 120, 3, goals)
	case "add_broker":
		body = optimizationBody(14, 560, 4, goals)
	case "remove_broker":
		body = optimizationBody(20, 800, 7, goals)
	case "demote_broker":
		body = optimizationBody(0, 0, 5, []string{"PreferredLeaderElectionGoal"})
	}
	var exec *Execution
	if !dryRun {
		exec = &Execution{Endpoint: name, Brokers: brokers}
	}
	return http.StatusOK, body, exec, ""
}

func parseGoals(raw string) ([]string, string) {
	if raw == "" {
		return []string{"ReplicaCapacityGoal", "DiskCapacityGoal", "ReplicaDistributionGoal", "DiskUsageDistributionGoal", "LeaderReplicaDistributionGoal"}, ""
	}
	var goals []string
	for _, g := range strings.Split(raw, ",") {
		short := strings.TrimPrefix(strings.TrimSpace(g), goalPackage)
		if !slices.Contains(knownGoals(), short) {
			return nil, fmt.Sprintf("Goal %s is not supported. Supported goals: %v.", g, knownGoals())
		}
		goals = append(goals, short)
	}
	return goals, ""
}

func (s *Server) stateBody(substates string) []byte {
	want := func(sub string) bool {
		return substates == "" || slices.Contains(strings.Split(substates, ","), sub)
	}
	parts := []string{`"version":1`}
	if want("monitor") {
		parts = append(parts, `"MonitorState":{"state":"RUNNING","trained":true,"trainingPct":100.0,"numMonitoredWindows":3,`+
			`"monitoredWindows":{"1732543200000":100.0},"numValidPartitions":57,"numTotalPartitions":57,`+
			`"monitoringCoveragePct":100.0,"numFlawedPartitions":0}`)
	}
	if want("executor") {
		if e := s.executing; e != nil {
			parts = append(parts, `"ExecutorState":{"state":"INTER_BROKER_REPLICA_MOVEMENT_TASK_IN_PROGRESS",`+
				`"triggeredUserTaskId":"`+e.UserTaskID+`","triggeredTaskReason":"No reason provided",`+
				`"numTotalPartitionMovements":14,"numFinishedPartitionMovements":5,"numInProgressPartitionMovements":2,`+
				`"numPendingPartitionMovements":7,"finishedDataMovement":200,"totalDataToMove":560,`+
				`"numTotalLeadershipMovements":4,"numFinishedLeadershipMovements":0,"numPendingLeadershipMovements":4}`)
		} else {
			parts = append(parts, `"ExecutorState":{"state":"NO_TASK_IN_PROGRESS","recentlyRemovedBrokers":[],"recentlyDemotedBrokers":[]}`)
		}
	}
	if want("analyzer") {
		parts = append(parts, `"AnalyzerState":{"isProposalReady":true,"readyGoals":["`+
			goalPackage+`ReplicaDistributionGoal","`+goalPackage+`DiskCapacityGoal","`+goalPackage+`LeaderReplicaDistributionGoal"],`+
			`"goalReadiness":[{"name":"ReplicaDistributionGoal","status":"ready","modelCompleteRequirement":`+
			`{"requiredNumSnapshots":1,"minMonitoredPartitionsPercentage":0.0,"includeAllTopics":true}}]}`)
	}
	if want("anomaly_detector") {
		parts = append(parts, `"AnomalyDetectorState":{"selfHealingEnabled":[],"selfHealingDisabled":["GOAL_VIOLATION","BROKER_FAILURE",`+
			`"METRIC_ANOMALY","DISK_FAILURE","TOPIC_ANOMALY","MAINTENANCE_EVENT"],"selfHealingEnabledRatio":{},`+
			`"recentGoalViolations":[{"anomalyId":"a1","status":"IGNORED","detectionMs":1732543200000,"statusUpdateMs":1732543200000}],`+
			`"recentBrokerFailures":[],"recentMetricAnomalies":[],"recentDiskFailures":[],"recentTopicAnomalies":[],`+
			`"recentMaintenanceEvents":[],"metrics":{},"balancednessScore":87.5}`)
	}
	return []byte("{" + strings.Join(parts, ",") + "}")
}

func (s *Server) userTasksBody() []byte {
	type info struct {
		UserTaskID     string `json:"UserTaskId"`
		RequestURL     string `json:"RequestURL"`
		ClientIdentity string `json:"ClientIdentity"`
		StartMs        string `json:"StartMs"`
		Status         string `json:"Status"`
	}
	list := []info{}
	for i, id := range s.taskOrder {
		t := s.tasks[id]
		status := "Completed"
		switch {
		case t.remaining > 0:
			status = "Active"
		case t.failed:
			status = "CompletedWithError"
		case t.execution && s.executing != nil && s.executing.UserTaskID == id:
			status = "InExecution"
		}
		list = append(list, info{id, s.URL + t.target, "127.0.0.1", strconv.Itoa(1732543200000 + i*1000), status})
	}
	b, _ := json.Marshal(map[string]any{"userTasks": list, "version": 1})
	return b
}

func brokerLoad(id int, diskMB float64) string {
	return fmt.Sprintf(`{"Host":"kafka-%d","Broker":%d,"Rack":"kafka-%d","BrokerState":"ALIVE","DiskMB":%.2f,"DiskPct":%.3f,`+
		`"CpuPct":2.5,"LeaderNwInRate":12.0,"FollowerNwInRate":24.0,"NwOutRate":30.0,"PnwOutRate":60.0,"Replicas":57,`+
		`"Leaders":19,"DiskCapacityMB":100000.0,"NetworkInCapacity":10000.0,"NetworkOutCapacity":10000.0,"NumCore":1.0}`,
		id, id, id, diskMB, diskMB/1000)
}

func optimizationBody(replicaMoves, dataMB, leaderMoves int, goals []string) []byte {
	var gs []string
	for i, g := range goals {
		status := "NO-ACTION"
		switch {
		case replicaMoves > 0 && i%2 == 0:
			status = "FIXED"
		case replicaMoves == 0 && leaderMoves > 0:
			status = "FIXED"
		}
		gs = append(gs, fmt.Sprintf(`{"goal":"%s","status":"%s","optimizationTimeMs":%d,"clusterModelStats":{`+
			`"metadata":{"brokers":3,"replicas":171,"topics":9},"statistics":{"AVG":{"cpu":2.5,"networkInbound":36.0,`+
			`"networkOutbound":30.0,"disk":31.25,"potentialNwOut":60.0,"replicas":57.0,"leaderReplicas":19.0,"topicReplicas":6.3},`+
			`"MAX":{"cpu":3.0,"networkInbound":40.0,"networkOutbound":33.0,"disk":41.5,"potentialNwOut":66.0,"replicas":60,"leaderReplicas":21,"topicReplicas":7},`+
			`"MIN":{"cpu":2.0,"networkInbound":30.0,"networkOutbound":27.0,"disk":12.25,"potentialNwOut":54.0,"replicas":54,"leaderReplicas":17,"topicReplicas":6},`+
			`"STD":{"cpu":0.4,"networkInbound":4.1,"networkOutbound":2.4,"disk":13.6,"potentialNwOut":4.9,"replicas":2.4,"leaderReplicas":1.6,"topicReplicas":0.4}}}}`,
			goalPackage+g, status, 10+i*3))
	}
	return []byte(fmt.Sprintf(`{"version":1,"summary":{"numReplicaMovements":%d,"dataToMoveMB":%d,`+
		`"numIntraBrokerReplicaMovements":0,"intraBrokerDataToMoveMB":0,"numLeaderMovements":%d,"recentWindows":3,`+
		`"monitoredPartitionsPercentage":100.0,"excludedTopics":[],"excludedBrokersForReplicaMove":[],`+
		`"excludedBrokersForLeadership":[],"onDemandBalancednessScoreBefore":71.25,"onDemandBalancednessScoreAfter":93.5,`+
		`"provisionStatus":"RIGHT_SIZED","provisionRecommendation":""},"goalSummary":[%s],`+
		`"loadAfterOptimization":{"version":1,"hosts":[],"brokers":[%s,%s,%s]}}`,
		replicaMoves, dataMB, leaderMoves, strings.Join(gs, ","), brokerLoad(1, 31.25), brokerLoad(2, 31.25), brokerLoad(3, 31.25)))
}

const progressBody = `{"version":1,"progress":[{"operation":"Get customized proposals","operationProgress":[` +
	`{"step":"AGGREGATING_METRICS","description":"Retrieve the metrics of all the partitions from the Kafka cluster.",` +
	`"time-in-ms":12,"completionPercentage":100.0},{"step":"OPTIMIZING","description":"Optimizing the cluster model.",` +
	`"time-in-ms":340,"completionPercentage":40.0}]}]}`

// processingError words a failed operation like Cruise Control's servlet
// (KafkaCruiseControlServletUtils.handleException).
func processingError(method, endpoint, exception string) string {
	return fmt.Sprintf("Error processing %s request '/%s' due to: '%s'.", method, endpoint, exception)
}

func errorBody(msg string) []byte {
	b, _ := json.Marshal(map[string]any{
		"errorMessage": msg,
		"stackTrace":   "com.linkedin.kafka.cruisecontrol.servlet.UserRequestException: " + msg + "\n\tat ...",
		"version":      1,
	})
	return b
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody(msg))
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
