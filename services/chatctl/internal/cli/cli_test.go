package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kchat/kchat/services/chatctl/internal/cli"
	"github.com/kchat/kchat/services/chatctl/internal/cruisecontrol/cctest"
)

type result struct {
	code           int
	stdout, stderr string
}

func run(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	code := cli.Run(ctx, args, cli.Env{Stdout: &out, Stderr: &errOut, Getenv: func(k string) string { return env[k] }})
	return result{code, out.String(), errOut.String()}
}

func TestUsage(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		env        map[string]string
		wantCode   int
		wantStderr string
	}{
		{"no arguments", nil, nil, cli.ExitUsage, "usage: chatctl <command>"},
		{"help", []string{"help"}, nil, cli.ExitOK, "commands:"},
		{"unknown command", []string{"frobnicate"}, nil, cli.ExitUsage, `unknown command "frobnicate"`},
		{"cc without subcommand", []string{"cc"}, nil, cli.ExitUsage, "missing subcommand: chatctl cc state|load|proposals"},
		{"cc unknown subcommand", []string{"cc", "explode"}, nil, cli.ExitUsage, `unknown subcommand "explode"`},
		{"cluster without subcommand", []string{"cluster"}, nil, cli.ExitUsage, "chatctl cluster health"},
		{"cluster health without brokers", []string{"cluster", "health", "-brokers", " , "}, nil, cli.ExitUsage, "no Kafka brokers"},
		{"lag rejects positional arguments", []string{"lag", "chat-fanout"}, nil, cli.ExitUsage, `unexpected argument "chat-fanout"`},
		{"topics without subcommand", []string{"topics"}, nil, cli.ExitUsage, "plan|apply"},
		{"topics with a missing file", []string{"topics", "plan", "-file", "/nonexistent/topics.yaml"}, nil, cli.ExitError, "/nonexistent/topics.yaml"},
		{"migrate without a database", []string{"migrate"}, nil, cli.ExitUsage, "DATABASE_URL"},
		{"flag help", []string{"lag", "-h"}, nil, cli.ExitOK, "-group"},
		{"bad flag value", []string{"cluster", "health", "-wait", "soon"}, nil, cli.ExitUsage, "invalid value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, tt.env, tt.args...)
			if r.code != tt.wantCode {
				t.Errorf("exit code = %d, want %d\nstderr: %s", r.code, tt.wantCode, r.stderr)
			}
			if !strings.Contains(r.stderr, tt.wantStderr) {
				t.Errorf("stderr lacks %q:\n%s", tt.wantStderr, r.stderr)
			}
		})
	}
}

func TestCruiseControlCommands(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		useEnv   bool // pass the URL through CRUISE_CONTROL_URL instead of -url
		wantCode int
		// wantOut and wantErr are substrings of stdout and stderr.
		wantOut, wantErr string
		// wantRequests is how many requests reached Cruise Control.
		wantRequests int
		// wantQuery are query parameters the first request must carry.
		wantQuery map[string]string
		// wantExecutions is how many real executions Cruise Control accepted.
		wantExecutions int
	}{
		{name: "state table", args: []string{"cc", "state"}, wantOut: "analyzer          PROPOSAL_READY", wantRequests: 1},
		{name: "url from environment", args: []string{"cc", "state"}, useEnv: true, wantOut: "monitor", wantRequests: 1},
		{name: "load table", args: []string{"cc", "load"}, wantOut: "kafka-3", wantRequests: 1},
		{name: "proposals", args: []string{"cc", "proposals", "-goals", "ReplicaDistributionGoal,LeaderReplicaDistributionGoal"},
			wantOut: "LeaderReplicaDistributionGoal  NO-ACTION", wantRequests: 2,
			wantQuery: map[string]string{"goals": "ReplicaDistributionGoal,LeaderReplicaDistributionGoal", "json": "true"}},
		{name: "rebalance is a dry run by default", args: []string{"cc", "rebalance"},
			wantOut: "DRY RUN", wantRequests: 2, wantQuery: map[string]string{"dryrun": "true"}},
		{name: "execution without -yes is refused before any request", args: []string{"cc", "rebalance", "-dryrun=false"},
			wantCode: cli.ExitUsage, wantErr: "-yes", wantRequests: 0},
		{name: "-yes alone keeps the dry run", args: []string{"cc", "rebalance", "-yes"},
			wantOut: "DRY RUN", wantRequests: 2, wantQuery: map[string]string{"dryrun": "true"}},
		{name: "a space-separated bool is rejected, not ignored", args: []string{"cc", "rebalance", "-dryrun", "false", "-yes"},
			wantCode: cli.ExitUsage, wantErr: `unexpected argument "false"`, wantRequests: 0},
		{name: "confirmed execution", args: []string{"cc", "rebalance", "-dryrun=false", "-yes", "-goals", "ReplicaDistributionGoal", "-reason", "drill"},
			wantOut: "EXECUTION STARTED", wantErr: "requesting a real Cruise Control execution", wantRequests: 2,
			wantQuery: map[string]string{"dryrun": "false", "goals": "ReplicaDistributionGoal", "reason": "drill"}, wantExecutions: 1},
		{name: "add broker dry run", args: []string{"cc", "add-broker", "-brokers", "4"},
			wantOut: "replica movements  14", wantRequests: 2, wantQuery: map[string]string{"brokerid": "4", "dryrun": "true"}},
		{name: "remove broker confirmed", args: []string{"cc", "remove-broker", "-brokers", "2", "-dryrun=false", "-yes", "-throttle", "10485760"},
			wantOut: "EXECUTION STARTED", wantRequests: 2,
			wantQuery: map[string]string{"brokerid": "2", "dryrun": "false", "replication_throttle": "10485760"}, wantExecutions: 1},
		{name: "broker commands need -brokers", args: []string{"cc", "remove-broker"}, wantCode: cli.ExitUsage, wantErr: "-brokers is required"},
		{name: "broker ids are numbers", args: []string{"cc", "add-broker", "-brokers", "four"}, wantCode: cli.ExitUsage, wantErr: `invalid broker id "four"`},
		{name: "demote takes no goals", args: []string{"cc", "demote-broker", "-brokers", "1", "-goals", "X"}, wantCode: cli.ExitUsage,
			wantErr: "flag provided but not defined: -goals"},
		{name: "demote broker", args: []string{"cc", "demote-broker", "-brokers", "1,2"}, wantOut: "leader movements   5", wantRequests: 2,
			wantQuery: map[string]string{"brokerid": "1,2"}},
		{name: "cruise control error is shown", args: []string{"cc", "proposals", "-goals", "NoSuchGoal"},
			wantCode: cli.ExitError, wantErr: "HTTP 400: Goal NoSuchGoal is not supported", wantRequests: 1},
		{name: "stop", args: []string{"cc", "stop", "-force"}, wantOut: "Proposal execution stopped.", wantRequests: 1,
			wantQuery: map[string]string{"force_stop": "true"}},
		{name: "user tasks", args: []string{"cc", "user-tasks"}, wantOut: "USER TASK ID", wantRequests: 1},
		{name: "bad url", args: []string{"cc", "state", "-url", "localhost:9090"}, wantCode: cli.ExitUsage, wantErr: "want http(s)://host:port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := cctest.New(t, cctest.Config{AsyncPolls: 1})
			args := append([]string(nil), tt.args...)
			env := map[string]string{}
			if tt.useEnv {
				env["CRUISE_CONTROL_URL"] = srv.URL
			} else if !hasFlag(args, "-url") {
				args = append(args, "-url", srv.URL)
			}
			args = append(args, "-poll", "1ms")
			r := run(t, env, args...)
			if r.code != tt.wantCode {
				t.Fatalf("exit code = %d, want %d\nstdout: %s\nstderr: %s", r.code, tt.wantCode, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stdout, tt.wantOut) {
				t.Errorf("stdout lacks %q:\n%s", tt.wantOut, r.stdout)
			}
			if !strings.Contains(r.stderr, tt.wantErr) {
				t.Errorf("stderr lacks %q:\n%s", tt.wantErr, r.stderr)
			}
			reqs := srv.Requests()
			if len(reqs) != tt.wantRequests {
				t.Fatalf("Cruise Control saw %d requests, want %d", len(reqs), tt.wantRequests)
			}
			for k, v := range tt.wantQuery {
				if got := reqs[0].Query.Get(k); got != v {
					t.Errorf("query %s = %q, want %q", k, got, v)
				}
			}
			if n := len(srv.Executions()); n != tt.wantExecutions {
				t.Errorf("executions = %d, want %d", n, tt.wantExecutions)
			}
		})
	}
}

func TestCruiseControlJSONOutput(t *testing.T) {
	tests := []struct {
		args    []string
		wantKey string
	}{
		{[]string{"cc", "state", "-json"}, "MonitorState"},
		{[]string{"cc", "proposals", "-json"}, "goalSummary"},
		{[]string{"cc", "user-tasks", "-json"}, "userTasks"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			srv := cctest.New(t, cctest.Config{})
			r := run(t, nil, append(tt.args, "-url", srv.URL)...)
			if r.code != cli.ExitOK {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			var doc map[string]any
			if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
				t.Fatalf("stdout is not JSON: %v\n%s", err, r.stdout)
			}
			if _, ok := doc[tt.wantKey]; !ok {
				t.Errorf("JSON lacks %q: %s", tt.wantKey, r.stdout)
			}
		})
	}
}

func hasFlag(args []string, flag string) bool {
	for _, a := range args {
		if a == flag || strings.HasPrefix(a, flag+"=") {
			return true
		}
	}
	return false
}
