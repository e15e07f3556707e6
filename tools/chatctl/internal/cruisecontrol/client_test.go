package cruisecontrol_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kchat/kchat/tools/chatctl/internal/cruisecontrol"
	"github.com/kchat/kchat/tools/chatctl/internal/cruisecontrol/cctest"
)

// testCtx bounds every test: a client that stops sending its task id would
// otherwise poll a stand-in forever.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newClient(t *testing.T, srv *cctest.Server) *cruisecontrol.Client {
	t.Helper()
	c, err := cruisecontrol.New(srv.URL, cruisecontrol.WithPollInterval(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNewNormalisesBaseURL(t *testing.T) {
	tests := []struct {
		base    string
		wantErr bool
		want    string // request path of state
	}{
		{base: "http://cc:9090", want: "/kafkacruisecontrol/state"},
		{base: "http://cc:9090/", want: "/kafkacruisecontrol/state"},
		{base: "http://cc:9090/kafkacruisecontrol", want: "/kafkacruisecontrol/state"},
		{base: "http://cc:9090/kafkacruisecontrol/", want: "/kafkacruisecontrol/state"},
		{base: "cc:9090", wantErr: true},
		{base: "ftp://cc:9090", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.base, func(t *testing.T) {
			_, err := cruisecontrol.New(tt.base)
			if (err != nil) != tt.wantErr {
				t.Fatalf("New(%q) error = %v, want error %v", tt.base, err, tt.wantErr)
			}
		})
	}
	// The path joining is observable through the stand-in, which only
	// answers under /kafkacruisecontrol/.
	for _, suffix := range []string{"", "/", "/kafkacruisecontrol", "/kafkacruisecontrol/"} {
		t.Run("live"+suffix, func(t *testing.T) {
			srv := cctest.New(t, cctest.Config{})
			c, err := cruisecontrol.New(srv.URL + suffix)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.State(testCtx(t)); err != nil {
				t.Fatalf("State via %q: %v", srv.URL+suffix, err)
			}
		})
	}
}

func TestStateDecodesDocumentedShape(t *testing.T) {
	srv := cctest.New(t, cctest.Config{})
	s, err := newClient(t, srv).State(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name string
		ok   bool
	}{
		{"monitor state", s.MonitorState != nil && s.MonitorState.State == "RUNNING" && s.MonitorState.Trained},
		{"monitor partitions", s.MonitorState != nil && s.MonitorState.NumValidPartitions == 57 && s.MonitorState.NumTotalPartitions == 57},
		{"executor idle", s.ExecutorState != nil && s.ExecutorState.State == "NO_TASK_IN_PROGRESS"},
		{"analyzer ready", s.AnalyzerState != nil && s.AnalyzerState.IsProposalReady && len(s.AnalyzerState.ReadyGoals) == 3},
		{"anomaly detector", s.AnomalyDetectorState != nil && s.AnomalyDetectorState.BalancednessScore == 87.5 &&
			len(s.AnomalyDetectorState.RecentGoalViolations) == 1},
		{"version", s.Version == 1},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: not decoded as expected from %+v", c.name, s)
		}
	}
	reqs := srv.Requests()
	if len(reqs) != 1 {
		t.Fatalf("got %d requests, want 1", len(reqs))
	}
	if got := reqs[0].Query.Get("json"); got != "true" {
		t.Errorf("json parameter = %q, want true", got)
	}
	if got := reqs[0].Query.Get("substates"); got != "monitor,executor,analyzer,anomaly_detector" {
		t.Errorf("substates = %q", got)
	}
}

func TestAsyncRequestsPollWithUserTaskID(t *testing.T) {
	type call func(context.Context, *cruisecontrol.Client) (*cruisecontrol.OptimizationResult, error)
	calls := []struct {
		name         string
		endpoint     string
		call         call
		wantReplicas int
	}{
		{"proposals", "proposals", func(ctx context.Context, c *cruisecontrol.Client) (*cruisecontrol.OptimizationResult, error) {
			return c.Proposals(ctx, cruisecontrol.ProposalOptions{})
		}, 6},
		{"rebalance", "rebalance", func(ctx context.Context, c *cruisecontrol.Client) (*cruisecontrol.OptimizationResult, error) {
			return c.Rebalance(ctx, cruisecontrol.ExecutionOptions{Goals: []string{"ReplicaDistributionGoal"}})
		}, 6},
		{"add broker", "add_broker", func(ctx context.Context, c *cruisecontrol.Client) (*cruisecontrol.OptimizationResult, error) {
			return c.AddBrokers(ctx, []int{4}, cruisecontrol.ExecutionOptions{})
		}, 14},
		{"remove broker", "remove_broker", func(ctx context.Context, c *cruisecontrol.Client) (*cruisecontrol.OptimizationResult, error) {
			return c.RemoveBrokers(ctx, []int{2}, cruisecontrol.ExecutionOptions{})
		}, 20},
	}
	for _, polls := range []int{0, 1, 3} {
		for _, tc := range calls {
			t.Run(fmt.Sprintf("%s/polls=%d", tc.name, polls), func(t *testing.T) {
				srv := cctest.New(t, cctest.Config{AsyncPolls: polls})
				res, err := tc.call(testCtx(t), newClient(t, srv))
				if err != nil {
					t.Fatal(err)
				}
				if res.Summary.NumReplicaMovements != tc.wantReplicas {
					t.Errorf("numReplicaMovements = %d, want %d", res.Summary.NumReplicaMovements, tc.wantReplicas)
				}
				reqs := srv.Requests()
				if len(reqs) != 1+polls {
					t.Fatalf("got %d requests, want %d (1 + %d polls)", len(reqs), 1+polls, polls)
				}
				if reqs[0].UserTaskID != "" {
					t.Errorf("first request carried User-Task-ID %q", reqs[0].UserTaskID)
				}
				if res.UserTaskID == "" {
					t.Fatal("result has no user task id")
				}
				for i, r := range reqs[1:] {
					if r.UserTaskID != res.UserTaskID {
						t.Errorf("poll %d carried User-Task-ID %q, want %q", i+1, r.UserTaskID, res.UserTaskID)
					}
					if r.Endpoint != tc.endpoint || r.Query.Encode() != reqs[0].Query.Encode() {
						t.Errorf("poll %d was %s?%s, want the original %s?%s", i+1, r.Endpoint, r.Query.Encode(), tc.endpoint, reqs[0].Query.Encode())
					}
				}
			})
		}
	}
}

func TestDryRunIsTheDefaultAndExecutionNeedsConfirmation(t *testing.T) {
	type call func(context.Context, *cruisecontrol.Client, cruisecontrol.ExecutionOptions) (*cruisecontrol.OptimizationResult, error)
	endpoints := []struct {
		name        string
		call        call
		wantBrokers []int
	}{
		{"rebalance", func(ctx context.Context, c *cruisecontrol.Client, o cruisecontrol.ExecutionOptions) (*cruisecontrol.OptimizationResult, error) {
			return c.Rebalance(ctx, o)
		}, nil},
		{"add_broker", func(ctx context.Context, c *cruisecontrol.Client, o cruisecontrol.ExecutionOptions) (*cruisecontrol.OptimizationResult, error) {
			return c.AddBrokers(ctx, []int{4}, o)
		}, []int{4}},
		{"remove_broker", func(ctx context.Context, c *cruisecontrol.Client, o cruisecontrol.ExecutionOptions) (*cruisecontrol.OptimizationResult, error) {
			return c.RemoveBrokers(ctx, []int{2, 3}, o)
		}, []int{2, 3}},
		{"demote_broker", func(ctx context.Context, c *cruisecontrol.Client, o cruisecontrol.ExecutionOptions) (*cruisecontrol.OptimizationResult, error) {
			return c.DemoteBrokers(ctx, []int{1}, o)
		}, []int{1}},
	}
	modes := []struct {
		name         string
		opts         cruisecontrol.ExecutionOptions
		wantErr      error
		wantRequests int
		wantDryRun   string
		wantExecuted bool
	}{
		{name: "zero options", opts: cruisecontrol.ExecutionOptions{}, wantRequests: 1, wantDryRun: "true"},
		{name: "confirmed but not executing", opts: cruisecontrol.ExecutionOptions{Confirmed: true}, wantRequests: 1, wantDryRun: "true"},
		{name: "execute without confirmation", opts: cruisecontrol.ExecutionOptions{Execute: true}, wantErr: cruisecontrol.ErrConfirmationRequired},
		{name: "execute confirmed", opts: cruisecontrol.ExecutionOptions{Execute: true, Confirmed: true}, wantRequests: 1, wantDryRun: "false", wantExecuted: true},
	}
	for _, ep := range endpoints {
		for _, m := range modes {
			t.Run(ep.name+"/"+m.name, func(t *testing.T) {
				srv := cctest.New(t, cctest.Config{})
				res, err := ep.call(testCtx(t), newClient(t, srv), m.opts)
				if !errors.Is(err, m.wantErr) {
					t.Fatalf("error = %v, want %v", err, m.wantErr)
				}
				reqs := srv.Requests()
				if len(reqs) != m.wantRequests {
					t.Fatalf("got %d requests, want %d", len(reqs), m.wantRequests)
				}
				if m.wantRequests == 0 {
					return
				}
				if got := reqs[0].Query.Get("dryrun"); got != m.wantDryRun {
					t.Errorf("dryrun sent = %q, want %q", got, m.wantDryRun)
				}
				if res.DryRun != (m.wantDryRun == "true") {
					t.Errorf("result.DryRun = %v", res.DryRun)
				}
				execs := srv.Executions()
				if got := len(execs) == 1; got != m.wantExecuted {
					t.Fatalf("executions = %+v, want executed %v", execs, m.wantExecuted)
				}
				if m.wantExecuted {
					if ep.wantBrokers != nil && !slices.Equal(execs[0].Brokers, ep.wantBrokers) {
						t.Errorf("executed for brokers %v, want %v", execs[0].Brokers, ep.wantBrokers)
					}
					if execs[0].UserTaskID != res.UserTaskID {
						t.Errorf("execution task %q, result task %q", execs[0].UserTaskID, res.UserTaskID)
					}
				}
			})
		}
	}
}

func TestErrorsCarryCruiseControlMessage(t *testing.T) {
	tests := []struct {
		name        string
		cfg         cctest.Config
		call        func(context.Context, *cruisecontrol.Client) error
		wantStatus  int    // 0: not an APIError
		wantMessage string // substring of the error
		wantReqs    int
	}{
		{
			name: "server error with json body",
			cfg: cctest.Config{Fail: map[string]cctest.Failure{"rebalance": {Status: 500,
				Message: "Insufficient number of valid windows: 0 (required: 1)"}}},
			call: func(ctx context.Context, c *cruisecontrol.Client) error {
				_, err := c.Rebalance(ctx, cruisecontrol.ExecutionOptions{})
				return err
			},
			wantStatus: 500, wantMessage: "Insufficient number of valid windows", wantReqs: 1,
		},
		{
			name: "proxy error with html body",
			cfg:  cctest.Config{Fail: map[string]cctest.Failure{"state": {Status: 502, Message: "<html>502 Bad Gateway</html>", Raw: true}}},
			call: func(ctx context.Context, c *cruisecontrol.Client) error {
				_, err := c.State(ctx)
				return err
			},
			wantStatus: 502, wantMessage: "502 Bad Gateway", wantReqs: 1,
		},
		{
			name: "unknown goal rejected by cruise control",
			call: func(ctx context.Context, c *cruisecontrol.Client) error {
				_, err := c.Proposals(ctx, cruisecontrol.ProposalOptions{Goals: []string{"NoSuchGoal"}})
				return err
			},
			wantStatus: 400, wantMessage: "Goal NoSuchGoal is not supported", wantReqs: 1,
		},
		{
			name: "broker ids are required before anything is sent",
			call: func(ctx context.Context, c *cruisecontrol.Client) error {
				_, err := c.RemoveBrokers(ctx, nil, cruisecontrol.ExecutionOptions{})
				return err
			},
			wantMessage: "at least one broker id", wantReqs: 0,
		},
		{
			name: "202 without user task id cannot be followed",
			cfg:  cctest.Config{AsyncPolls: 2, OmitTaskID: true},
			call: func(ctx context.Context, c *cruisecontrol.Client) error {
				_, err := c.Proposals(ctx, cruisecontrol.ProposalOptions{})
				return err
			},
			wantMessage: "without a User-Task-ID header", wantReqs: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := cctest.New(t, tt.cfg)
			err := tt.call(testCtx(t), newClient(t, srv))
			if err == nil {
				t.Fatal("want an error")
			}
			if !strings.Contains(err.Error(), tt.wantMessage) {
				t.Errorf("error %q does not contain %q", err, tt.wantMessage)
			}
			var apiErr *cruisecontrol.APIError
			if got := errors.As(err, &apiErr); got != (tt.wantStatus != 0) {
				t.Fatalf("errors.As(APIError) = %v for %v", got, err)
			}
			if apiErr != nil && apiErr.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d", apiErr.StatusCode, tt.wantStatus)
			}
			if n := len(srv.Requests()); n != tt.wantReqs {
				t.Errorf("requests = %d, want %d", n, tt.wantReqs)
			}
		})
	}
}

func TestPollingStopsWhenContextEnds(t *testing.T) {
	srv := cctest.New(t, cctest.Config{AsyncPolls: 1 << 20})
	c, err := cruisecontrol.New(srv.URL, cruisecontrol.WithPollInterval(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Millisecond)
	defer cancel()
	_, err = c.Proposals(ctx, cruisecontrol.ProposalOptions{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error = %v, want deadline exceeded", err)
	}
	if n := len(srv.Requests()); n < 2 {
		t.Errorf("only %d requests: the client did not poll", n)
	}
}

func TestExecutionLifecycle(t *testing.T) {
	srv := cctest.New(t, cctest.Config{AsyncPolls: 1})
	c := newClient(t, srv)
	ctx := testCtx(t)

	res, err := c.AddBrokers(ctx, []int{4}, cruisecontrol.ExecutionOptions{Execute: true, Confirmed: true, Reason: "scale out"})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name  string
		check func() error
	}{
		{"executor reports the task", func() error {
			s, err := c.State(ctx)
			if err != nil {
				return err
			}
			if s.ExecutorState.State != "INTER_BROKER_REPLICA_MOVEMENT_TASK_IN_PROGRESS" || s.ExecutorState.TriggeredUserTaskID != res.UserTaskID {
				return errors.New("executor state " + s.ExecutorState.State + " task " + s.ExecutorState.TriggeredUserTaskID)
			}
			return nil
		}},
		{"a second execution is refused while one runs", func() error {
			_, err := c.Rebalance(ctx, cruisecontrol.ExecutionOptions{Execute: true, Confirmed: true})
			var apiErr *cruisecontrol.APIError
			if !errors.As(err, &apiErr) || apiErr.StatusCode != 500 ||
				!strings.HasPrefix(apiErr.Reason(), "Cannot start a new execution while there is an ongoing execution") {
				return errors.New("want 500 ongoing execution, got " + errString(err))
			}
			return nil
		}},
		{"user tasks list it in execution", func() error {
			u, err := c.UserTasks(ctx)
			if err != nil {
				return err
			}
			for _, task := range u.UserTasks {
				if task.UserTaskID == res.UserTaskID && task.Status == "InExecution" && strings.Contains(task.RequestURL, "add_broker") {
					return nil
				}
			}
			return errors.New("task not listed as InExecution")
		}},
		{"stop ends it", func() error {
			r, err := c.StopExecution(ctx, false)
			if err != nil {
				return err
			}
			if r.Message == "" {
				return errors.New("empty stop message")
			}
			s, err := c.State(ctx)
			if err != nil {
				return err
			}
			if s.ExecutorState.State != "NO_TASK_IN_PROGRESS" {
				return errors.New("executor still " + s.ExecutorState.State)
			}
			return nil
		}},
	}
	for _, st := range steps {
		if err := st.check(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
	}
	if got := srv.Requests()[0].Query.Get("reason"); got != "scale out" {
		t.Errorf("reason sent = %q", got)
	}
}

func TestRenderOptimization(t *testing.T) {
	srv := cctest.New(t, cctest.Config{})
	c := newClient(t, srv)
	tests := []struct {
		name string
		run  func() (*cruisecontrol.OptimizationResult, error)
		want []string
	}{
		{
			name: "proposal",
			run: func() (*cruisecontrol.OptimizationResult, error) {
				return c.Proposals(testCtx(t), cruisecontrol.ProposalOptions{
					Goals: []string{"ReplicaDistributionGoal", "LeaderReplicaDistributionGoal", "DiskUsageDistributionGoal"}})
			},
			want: []string{
				"DRY RUN",
				"replica movements  6",
				"data to move       120 MB",
				"leader movements   3",
				"balancedness       71.25 -> 93.50",
				"ReplicaDistributionGoal        FIXED",
				"LeaderReplicaDistributionGoal  NO-ACTION",
				"DiskUsageDistributionGoal      FIXED",
			},
		},
		{
			name: "execution",
			run: func() (*cruisecontrol.OptimizationResult, error) {
				return c.DemoteBrokers(testCtx(t), []int{1}, cruisecontrol.ExecutionOptions{Execute: true, Confirmed: true})
			},
			want: []string{"EXECUTION STARTED", "user task: 5ce7c299-", "leader movements   5", "PreferredLeaderElectionGoal  FIXED"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := tt.run()
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := cruisecontrol.RenderOptimization(&buf, res); err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(buf.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, buf.String())
				}
			}
		})
	}
}

func TestRenderStateAndLoad(t *testing.T) {
	srv := cctest.New(t, cctest.Config{})
	c := newClient(t, srv)
	ctx := testCtx(t)
	state, err := c.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	load, err := c.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		render func(*bytes.Buffer) error
		want   []string
	}{
		{"state", func(b *bytes.Buffer) error { return cruisecontrol.RenderState(b, state) }, []string{
			"monitor           RUNNING",
			"valid partitions 57/57",
			"executor          NO_TASK_IN_PROGRESS  idle",
			"analyzer          PROPOSAL_READY",
			"DiskCapacityGoal, LeaderReplicaDistributionGoal, ReplicaDistributionGoal",
			"balancedness 87.5, goal violations 1",
		}},
		{"load", func(b *bytes.Buffer) error { return cruisecontrol.RenderLoad(b, load) }, []string{
			"BROKER  HOST     STATE  REPLICAS",
			"1       kafka-1  ALIVE  57",
			"2       kafka-2  ALIVE  57        19       12.2",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := tt.render(&buf); err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(buf.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, buf.String())
				}
			}
		})
	}
}

func TestShortGoal(t *testing.T) {
	tests := map[string]string{
		"com.linkedin.kafka.cruisecontrol.analyzer.goals.ReplicaDistributionGoal": "ReplicaDistributionGoal",
		"DiskCapacityGoal": "DiskCapacityGoal",
		"":                 "",
	}
	for in, want := range tests {
		if got := cruisecontrol.ShortGoal(in); got != want {
			t.Errorf("ShortGoal(%q) = %q, want %q", in, got, want)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}

func TestFailedTaskReportsTheFailureInItsFinalAnswer(t *testing.T) {
	const cause = "com.linkedin.kafka.cruisecontrol.exception.OptimizationFailureException: [DiskCapacityGoal] " +
		"Insufficient healthy cluster capacity for resource:disk utilization 180000.00 > capacity 150000.00. Add at least 1 broker."
	srv := cctest.New(t, cctest.Config{AsyncPolls: 2, FailTask: map[string]cctest.Failure{"rebalance": {Message: cause}}})
	c := newClient(t, srv)
	ctx := testCtx(t)
	var polls []cruisecontrol.Progress
	c2, err := cruisecontrol.New(srv.URL, cruisecontrol.WithPollInterval(time.Millisecond),
		cruisecontrol.WithProgress(func(p cruisecontrol.Progress) { polls = append(polls, p) }))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c2.Rebalance(ctx, cruisecontrol.ExecutionOptions{Execute: true, Confirmed: true})
	var apiErr *cruisecontrol.APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("error = %v, want an APIError", err)
	}
	if apiErr.StatusCode != 500 || apiErr.UserTaskID == "" {
		t.Errorf("status %d task %q, want 500 and the task id", apiErr.StatusCode, apiErr.UserTaskID)
	}
	wantReason := "[DiskCapacityGoal] Insufficient healthy cluster capacity for resource:disk utilization 180000.00 > capacity 150000.00. Add at least 1 broker."
	if apiErr.Reason() != wantReason {
		t.Errorf("reason = %q, want %q", apiErr.Reason(), wantReason)
	}
	if !strings.Contains(err.Error(), "user task "+apiErr.UserTaskID) || !strings.Contains(err.Error(), wantReason) {
		t.Errorf("error text %q lacks the task or the reason", err)
	}
	if len(polls) != 2 || polls[0].UserTaskID != apiErr.UserTaskID {
		t.Errorf("progress reports %+v, want 2 for task %s", polls, apiErr.UserTaskID)
	}
	if n := len(srv.Executions()); n != 0 {
		t.Errorf("a failed task started %d executions", n)
	}
	u, err := c.UserTasks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(u.UserTasks) != 1 || u.UserTasks[0].Status != "CompletedWithError" || u.UserTasks[0].UserTaskID != apiErr.UserTaskID {
		t.Errorf("user tasks = %+v, want the task CompletedWithError", u.UserTasks)
	}
}

func TestProgressIsReportedForEveryPoll(t *testing.T) {
	srv := cctest.New(t, cctest.Config{AsyncPolls: 3})
	var got []cruisecontrol.Progress
	c, err := cruisecontrol.New(srv.URL, cruisecontrol.WithPollInterval(time.Millisecond),
		cruisecontrol.WithProgress(func(p cruisecontrol.Progress) { got = append(got, p) }))
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.AddBrokers(testCtx(t), []int{4}, cruisecontrol.ExecutionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("progress reported %d times, want 3", len(got))
	}
	for i, p := range got {
		if p.Poll != i+1 || p.UserTaskID != res.UserTaskID || p.Endpoint != "add_broker" ||
			p.Step != "OPTIMIZING" || p.Percent != 40 || p.Operation != "Get customized proposals" {
			t.Errorf("progress %d = %+v", i, p)
		}
	}
	line := got[0].String()
	for _, want := range []string{"add_broker", res.UserTaskID, "OPTIMIZING (40%)"} {
		if !strings.Contains(line, want) {
			t.Errorf("progress line %q lacks %q", line, want)
		}
	}
}

func TestUnreachableCruiseControlNamesTheAddress(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there any more
	c, err := cruisecontrol.New("http://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Rebalance(testCtx(t), cruisecontrol.ExecutionOptions{})
	var unreachable *cruisecontrol.UnreachableError
	if !errors.As(err, &unreachable) {
		t.Fatalf("error = %v, want UnreachableError", err)
	}
	if !strings.Contains(err.Error(), "http://"+addr+"/kafkacruisecontrol/") {
		t.Errorf("error %q does not name the address", err)
	}
}

func TestAPIErrorReason(t *testing.T) {
	tests := []struct{ msg, want string }{
		{"Error processing POST request '/rebalance' due to: 'java.lang.IllegalStateException: Cannot start a new execution while there is an ongoing execution.'.",
			"Cannot start a new execution while there is an ongoing execution."},
		{"Error processing POST request '/remove_broker' due to: 'java.util.concurrent.ExecutionException: " +
			"com.linkedin.kafka.cruisecontrol.exception.OptimizationFailureException: [ReplicaCapacityGoal] Insufficient capacity: 3 brokers.'.",
			"[ReplicaCapacityGoal] Insufficient capacity: 3 brokers."},
		{"Bad GET request '/proposals' due to 'Goal NoSuchGoal is not supported.'.", "Goal NoSuchGoal is not supported."},
		{"Unrecognized endpoint parameters in rebalance POST request: [x].", "Unrecognized endpoint parameters in rebalance POST request: [x]."},
		{"<html>502 Bad Gateway</html>", "<html>502 Bad Gateway</html>"},
	}
	for _, tt := range tests {
		e := &cruisecontrol.APIError{Endpoint: "x", StatusCode: 500, Message: tt.msg}
		if got := e.Reason(); got != tt.want {
			t.Errorf("Reason(%q) = %q, want %q", tt.msg, got, tt.want)
		}
	}
}
