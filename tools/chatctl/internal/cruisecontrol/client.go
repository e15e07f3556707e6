// Package cruisecontrol is a small client for the Cruise Control REST API
// (/kafkacruisecontrol/...), covering what an operator of kchat needs: state,
// load, proposals, rebalance, add/remove/demote broker, stop and user tasks.
//
// Cruise Control answers slow requests with 202 Accepted and a User-Task-ID
// header; the client repeats the identical request with that header until the
// final answer arrives, so callers only ever see finished results.
package cruisecontrol

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// APIPrefix is where Cruise Control mounts its REST API by default
// (webserver.api.urlprefix).
const APIPrefix = "/kafkacruisecontrol/"

// UserTaskHeader carries the id of an asynchronous request in both directions.
const UserTaskHeader = "User-Task-ID"

// maxBody bounds what is read from one answer; a verbose proposal of a large
// cluster is a few MB, and an unbounded read would let a broken proxy eat memory.
const maxBody = 64 << 20

// ErrConfirmationRequired is returned, before anything is sent, when a request
// would really move replicas or leaders but the caller did not confirm it.
var ErrConfirmationRequired = errors.New("cruise control: refusing to execute without confirmation (ExecutionOptions.Execute needs Confirmed; chatctl sets both with -execute)")

// APIError is a non-2xx answer from Cruise Control: a request it rejected
// (400), or an operation that failed or that it refused to carry out (500,
// e.g. a hard goal that cannot be met or an execution already running). For
// a request that was first accepted (202) the failure arrives as the final
// answer of the user task, and UserTaskID names that task.
type APIError struct {
	Endpoint   string
	StatusCode int
	UserTaskID string
	// Message is Cruise Control's errorMessage, or the start of the body when
	// the answer did not come from Cruise Control itself (e.g. a proxy).
	Message string
}

func (e *APIError) Error() string {
	task := ""
	if e.UserTaskID != "" {
		task = " (user task " + e.UserTaskID + ")"
	}
	return fmt.Sprintf("cruise control %s%s: HTTP %d: %s", e.Endpoint, task, e.StatusCode, e.Reason())
}

// Reason is the cause Cruise Control gave, without the wrapper it puts around
// every error ("Error processing POST request '/rebalance' due to: '...'." or
// "Bad GET request '/proposals' due to '...'.") and without the Java
// exception class in front of the message.
func (e *APIError) Reason() string {
	msg := strings.TrimSpace(e.Message)
	for _, marker := range []string{" due to: '", " due to '"} {
		if i := strings.Index(msg, marker); i >= 0 && (strings.HasPrefix(msg, "Error processing ") ||
			strings.HasPrefix(msg, "Bad ") || strings.HasPrefix(msg, "Cannot process ")) {
			msg = strings.TrimSuffix(strings.TrimSuffix(msg[i+len(marker):], "."), "'")
			break
		}
	}
	// "java.util.concurrent.ExecutionException: com.linkedin...OptimizationFailureException: [Goal] text"
	for {
		head, rest, ok := strings.Cut(msg, ": ")
		if !ok || strings.ContainsAny(head, " []") || !strings.Contains(head, ".") ||
			!(strings.HasSuffix(head, "Exception") || strings.HasSuffix(head, "Error")) {
			break
		}
		msg = rest
	}
	return msg
}

// UnreachableError means no HTTP answer came back from Cruise Control at all.
type UnreachableError struct {
	URL string
	Err error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach Cruise Control at %s (set -url or CRUISE_CONTROL_URL): %v", e.URL, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// Progress is one 202 answer while Cruise Control works on a request.
type Progress struct {
	Endpoint   string
	UserTaskID string
	// Poll counts the 202 answers so far, from 1.
	Poll    int
	Elapsed time.Duration
	// Operation, Step and Percent describe the last step Cruise Control
	// reported (empty when the answer carried no progress).
	Operation   string
	Step        string
	Description string
	Percent     float64
}

// String is a one-line summary for a terminal.
func (p Progress) String() string {
	step := "waiting"
	if p.Step != "" {
		step = fmt.Sprintf("%s %s (%.0f%%)", p.Operation, p.Step, p.Percent)
	}
	return fmt.Sprintf("cruise control %s: user task %s: %s, %s elapsed", p.Endpoint, p.UserTaskID, step, p.Elapsed.Round(time.Second))
}

// Client talks to one Cruise Control instance. It is safe for concurrent use.
type Client struct {
	base         *url.URL
	http         *http.Client
	logger       *slog.Logger
	pollInterval time.Duration
	progress     func(Progress)
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient replaces the default HTTP client (30 s per request).
func WithHTTPClient(h *http.Client) Option { return func(c *Client) { c.http = h } }

// WithPollInterval sets how long to wait between polls of an async request.
func WithPollInterval(d time.Duration) Option { return func(c *Client) { c.pollInterval = d } }

// WithLogger sets where progress of async requests is logged.
func WithLogger(l *slog.Logger) Option { return func(c *Client) { c.logger = l } }

// WithProgress calls fn for every 202 answer of a request being followed.
func WithProgress(fn func(Progress)) Option { return func(c *Client) { c.progress = fn } }

// New returns a client for the Cruise Control at baseURL, either the server
// root (http://host:9090) or the API prefix itself.
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("cruise control url %q: %w", baseURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("cruise control url %q: want http(s)://host:port", baseURL)
	}
	if !strings.HasSuffix(strings.TrimSuffix(u.Path, "/")+"/", APIPrefix) {
		u.Path = strings.TrimSuffix(u.Path, "/") + APIPrefix
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	c := &Client{
		base:         u,
		http:         &http.Client{Timeout: 30 * time.Second},
		logger:       slog.New(slog.DiscardHandler),
		pollInterval: 2 * time.Second,
	}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// ExecutionOptions are shared by every request that can move data.
type ExecutionOptions struct {
	// Execute asks Cruise Control to really move replicas/leaders. The zero
	// value is a dry run, so forgetting to set anything is always safe.
	Execute bool
	// Confirmed must accompany Execute; it is the operator's explicit yes.
	Confirmed bool
	// Goals limits the optimisation to these goals (short class names);
	// empty means Cruise Control's default.goals.
	Goals []string
	// Reason is recorded by Cruise Control with the task.
	Reason string
	// ExcludedTopics is a regular expression of topics whose replicas must not move.
	ExcludedTopics string
	// ReplicationThrottle caps replica movement in bytes/s (0: Cruise Control's default).
	ReplicationThrottle int64
}

func (o ExecutionOptions) query() (url.Values, error) {
	if o.Execute && !o.Confirmed {
		return nil, ErrConfirmationRequired
	}
	q := url.Values{}
	// Always sent explicitly: relying on the server default would make a
	// future default change silently start executions.
	q.Set("dryrun", strconv.FormatBool(!o.Execute))
	if len(o.Goals) > 0 {
		q.Set("goals", strings.Join(o.Goals, ","))
	}
	if o.Reason != "" {
		q.Set("reason", o.Reason)
	}
	if o.ExcludedTopics != "" {
		q.Set("excluded_topics", o.ExcludedTopics)
	}
	if o.ReplicationThrottle > 0 {
		q.Set("replication_throttle", strconv.FormatInt(o.ReplicationThrottle, 10))
	}
	return q, nil
}

// ProposalOptions tune GET proposals.
type ProposalOptions struct {
	Goals []string
	// IgnoreCache makes Cruise Control compute a fresh proposal instead of
	// returning the one it precomputed in the background.
	IgnoreCache    bool
	ExcludedTopics string
}

// State returns the state of every Cruise Control component.
func (c *Client) State(ctx context.Context) (*State, error) {
	q := url.Values{"substates": {"monitor,executor,analyzer,anomaly_detector"}}
	var s State
	if _, err := c.do(ctx, http.MethodGet, "state", q, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Load returns the modelled load of every broker.
func (c *Client) Load(ctx context.Context) (*BrokerStats, error) {
	var s BrokerStats
	if _, err := c.do(ctx, http.MethodGet, "load", url.Values{}, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Proposals returns the optimisation Cruise Control would perform; it never
// moves anything.
func (c *Client) Proposals(ctx context.Context, o ProposalOptions) (*OptimizationResult, error) {
	q := url.Values{}
	if len(o.Goals) > 0 {
		q.Set("goals", strings.Join(o.Goals, ","))
	}
	if o.IgnoreCache {
		q.Set("ignore_proposal_cache", "true")
	}
	if o.ExcludedTopics != "" {
		q.Set("excluded_topics", o.ExcludedTopics)
	}
	var r OptimizationResult
	id, err := c.do(ctx, http.MethodGet, "proposals", q, &r)
	if err != nil {
		return nil, err
	}
	r.UserTaskID, r.DryRun = id, true
	return &r, nil
}

// Rebalance computes, and with o.Execute starts, a cluster-wide rebalance.
func (c *Client) Rebalance(ctx context.Context, o ExecutionOptions) (*OptimizationResult, error) {
	return c.execute(ctx, "rebalance", nil, o)
}

// AddBrokers moves replicas onto newly added brokers.
func (c *Client) AddBrokers(ctx context.Context, brokers []int, o ExecutionOptions) (*OptimizationResult, error) {
	return c.execute(ctx, "add_broker", brokers, o)
}

// RemoveBrokers moves every replica off the given brokers so they can be
// decommissioned.
func (c *Client) RemoveBrokers(ctx context.Context, brokers []int, o ExecutionOptions) (*OptimizationResult, error) {
	return c.execute(ctx, "remove_broker", brokers, o)
}

// DemoteBrokers moves partition leadership away from the given brokers
// (replicas stay), e.g. before restarting them.
func (c *Client) DemoteBrokers(ctx context.Context, brokers []int, o ExecutionOptions) (*OptimizationResult, error) {
	// demote_broker has no goals parameter: it always uses leader election.
	o.Goals = nil
	return c.execute(ctx, "demote_broker", brokers, o)
}

func (c *Client) execute(ctx context.Context, endpoint string, brokers []int, o ExecutionOptions) (*OptimizationResult, error) {
	q, err := o.query()
	if err != nil {
		return nil, err
	}
	if endpoint != "rebalance" {
		if len(brokers) == 0 {
			return nil, fmt.Errorf("cruise control %s: at least one broker id is required", endpoint)
		}
		ids := make([]string, len(brokers))
		for i, b := range brokers {
			if b < 0 {
				return nil, fmt.Errorf("cruise control %s: invalid broker id %d", endpoint, b)
			}
			ids[i] = strconv.Itoa(b)
		}
		q.Set("brokerid", strings.Join(ids, ","))
	}
	var r OptimizationResult
	id, err := c.do(ctx, http.MethodPost, endpoint, q, &r)
	if err != nil {
		return nil, err
	}
	r.UserTaskID, r.DryRun = id, !o.Execute
	if o.Execute {
		c.logger.Warn("cruise control execution started", "endpoint", endpoint, "user_task_id", id,
			"replica_movements", r.Summary.NumReplicaMovements, "leader_movements", r.Summary.NumLeaderMovements)
	}
	return &r, nil
}

// StopExecution stops the ongoing execution. Cruise Control lets the batch of
// movements already handed to Kafka finish; force also cancels those.
func (c *Client) StopExecution(ctx context.Context, force bool) (*StopResult, error) {
	q := url.Values{}
	if force {
		q.Set("force_stop", "true")
	}
	var r StopResult
	if _, err := c.do(ctx, http.MethodPost, "stop_proposal_execution", q, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// UserTasks lists the requests Cruise Control remembers, newest executions included.
func (c *Client) UserTasks(ctx context.Context) (*UserTasks, error) {
	var r UserTasks
	if _, err := c.do(ctx, http.MethodGet, "user_tasks", url.Values{}, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// do sends one logical request, following the 202/User-Task-ID protocol until
// the final answer, and decodes it into out. It returns the user task id.
func (c *Client) do(ctx context.Context, method, endpoint string, q url.Values, out any) (string, error) {
	q.Set("json", "true")
	u := *c.base
	u.Path += endpoint
	u.RawQuery = q.Encode()
	target := u.String()

	start := time.Now()
	var taskID string
	for attempt := 1; ; attempt++ {
		status, header, body, err := c.roundTrip(ctx, method, target, taskID)
		if err != nil {
			if ctx.Err() != nil {
				return taskID, fmt.Errorf("cruise control %s: %w", endpoint, err)
			}
			base := *c.base
			return taskID, fmt.Errorf("cruise control %s: %w", endpoint, &UnreachableError{URL: base.String(), Err: err})
		}
		if id := header.Get(UserTaskHeader); id != "" {
			taskID = id
		}
		switch {
		case status == http.StatusAccepted:
			if header.Get(UserTaskHeader) == "" {
				// Without the id the only way back to the result is the
				// session cookie, which this client deliberately does not keep.
				return "", fmt.Errorf("cruise control %s: 202 Accepted without a %s header", endpoint, UserTaskHeader)
			}
			c.reportProgress(endpoint, taskID, attempt, time.Since(start), body)
			select {
			case <-ctx.Done():
				return taskID, fmt.Errorf("cruise control %s: gave up waiting for user task %s: %w", endpoint, taskID, ctx.Err())
			case <-time.After(c.pollInterval):
			}
		case status >= 200 && status < 300:
			if err := json.Unmarshal(body, out); err != nil {
				return taskID, fmt.Errorf("cruise control %s: decode answer: %w", endpoint, err)
			}
			return taskID, nil
		default:
			apiErr := newAPIError(endpoint, status, body)
			// Only a task that was followed has an id worth naming: it is
			// the one `chatctl cc user-tasks` lists as CompletedWithError.
			if attempt > 1 {
				apiErr.UserTaskID = taskID
			}
			return taskID, apiErr
		}
	}
}

func (c *Client) roundTrip(ctx context.Context, method, target, taskID string) (int, http.Header, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, target, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Accept", "application/json")
	if taskID != "" {
		req.Header.Set(UserTaskHeader, taskID)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("read answer: %w", err)
	}
	return resp.StatusCode, resp.Header, body, nil
}

func (c *Client) reportProgress(endpoint, taskID string, attempt int, elapsed time.Duration, body []byte) {
	p := Progress{Endpoint: endpoint, UserTaskID: taskID, Poll: attempt, Elapsed: elapsed}
	var pb progress
	if json.Unmarshal(body, &pb) == nil {
		for _, op := range pb.Progress {
			if n := len(op.OperationProgress); n > 0 {
				last := op.OperationProgress[n-1]
				p.Operation, p.Step, p.Description, p.Percent = op.Operation, last.Step, last.Description, last.CompletionPercentage
			}
		}
	}
	c.logger.Debug("cruise control still working", "endpoint", endpoint, "user_task_id", taskID, "poll", attempt,
		"operation", p.Operation, "step", p.Step, "percent", p.Percent)
	if c.progress != nil {
		c.progress(p)
	}
}

func newAPIError(endpoint string, status int, body []byte) *APIError {
	var eb errorBody
	msg := ""
	if json.Unmarshal(body, &eb) == nil && eb.ErrorMessage != "" {
		msg = eb.ErrorMessage
	} else {
		msg = strings.TrimSpace(string(body))
		if len(msg) > 300 {
			msg = msg[:300] + "..."
		}
		if msg == "" {
			msg = http.StatusText(status)
		}
	}
	return &APIError{Endpoint: endpoint, StatusCode: status, Message: msg}
}
