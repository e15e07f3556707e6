package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kchat/kchat/tools/chatctl/internal/cli"
	"github.com/kchat/kchat/tools/chatctl/internal/cruisecontrol/cctest"
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
		{"cluster unknown subcommand", []string{"cluster", "status"}, nil, cli.ExitUsage, "chatctl cluster health"},
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

const diskRefusal = "java.util.concurrent.ExecutionException: com.linkedin.kafka.cruisecontrol.exception.OptimizationFailureException: " +
	"[DiskCapacityGoal] Insufficient healthy cluster capacity for resource:disk utilization 180000.00 > capacity 150000.00. Add at least 1 broker."

func TestCruiseControlCommands(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		cfg      *cctest.Config // default: one 202 answer per async request
		useEnv   bool           // pass the URL through CRUISE_CONTROL_URL instead of -url
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
		{name: "a followed task prints a progress line", args: []string{"cc", "rebalance"},
			wantOut: "DRY RUN", wantRequests: 2,
			wantErr: "cruise control rebalance: user task 5ce7c299-53b3-48b6-b72e-000000000001: Get customized proposals OPTIMIZING (40%)"},
		{name: "the old -dryrun switch is gone and fails closed", args: []string{"cc", "rebalance", "-dryrun=false"},
			wantCode: cli.ExitUsage, wantErr: "flag provided but not defined: -dryrun", wantRequests: 0},
		{name: "a space-separated bool is rejected, not ignored", args: []string{"cc", "rebalance", "-execute", "false"},
			wantCode: cli.ExitUsage, wantErr: `unexpected argument "false"`, wantRequests: 0},
		{name: "-execute executes", args: []string{"cc", "rebalance", "-execute", "-goals", "ReplicaDistributionGoal", "-reason", "drill"},
			wantOut: "EXECUTION STARTED", wantErr: "requesting a real Cruise Control execution", wantRequests: 2,
			wantQuery: map[string]string{"dryrun": "false", "goals": "ReplicaDistributionGoal", "reason": "drill"}, wantExecutions: 1},
		{name: "--execute works too", args: []string{"cc", "rebalance", "--execute"},
			wantOut: "EXECUTION STARTED", wantRequests: 2, wantQuery: map[string]string{"dryrun": "false"}, wantExecutions: 1},
		{name: "-execute=false is a dry run", args: []string{"cc", "rebalance", "-execute=false"},
			wantOut: "DRY RUN", wantRequests: 2, wantQuery: map[string]string{"dryrun": "true"}},
		{name: "add broker dry run", args: []string{"cc", "add-broker", "-brokers", "4"},
			wantOut: "replica movements  14", wantRequests: 2, wantQuery: map[string]string{"brokerid": "4", "dryrun": "true"}},
		{name: "add broker execute", args: []string{"cc", "add-broker", "-brokers", "4", "-execute"},
			wantOut: "EXECUTION STARTED", wantRequests: 2, wantQuery: map[string]string{"brokerid": "4", "dryrun": "false"}, wantExecutions: 1},
		{name: "remove broker dry run", args: []string{"cc", "remove-broker", "-brokers", "4"},
			wantOut: "DRY RUN", wantRequests: 2, wantQuery: map[string]string{"brokerid": "4", "dryrun": "true"}},
		{name: "remove broker execute", args: []string{"cc", "remove-broker", "-brokers", "2", "-execute", "-throttle", "10485760"},
			wantOut: "EXECUTION STARTED", wantRequests: 2,
			wantQuery: map[string]string{"brokerid": "2", "dryrun": "false", "replication_throttle": "10485760"}, wantExecutions: 1},
		{name: "broker commands need -brokers", args: []string{"cc", "remove-broker"}, wantCode: cli.ExitUsage, wantErr: "-brokers is required"},
		{name: "broker ids are numbers", args: []string{"cc", "add-broker", "-brokers", "four"}, wantCode: cli.ExitUsage, wantErr: `invalid broker id "four"`},
		{name: "demote takes no goals", args: []string{"cc", "demote-broker", "-brokers", "1", "-goals", "X"}, wantCode: cli.ExitUsage,
			wantErr: "flag provided but not defined: -goals"},
		{name: "demote broker", args: []string{"cc", "demote-broker", "-brokers", "1,2"}, wantOut: "leader movements   5", wantRequests: 2,
			wantQuery: map[string]string{"brokerid": "1,2", "dryrun": "true"}},
		{name: "a rejected request shows Cruise Control's message", args: []string{"cc", "proposals", "-goals", "NoSuchGoal"},
			wantCode: cli.ExitError, wantErr: "Cruise Control rejected the proposals request: Goal NoSuchGoal is not supported", wantRequests: 1},
		{name: "an error body is shown, not the wrapper", args: []string{"cc", "load"},
			cfg: &cctest.Config{Fail: map[string]cctest.Failure{"load": {Status: 500, Message: "Error processing GET request '/load' due to: " +
				"'com.linkedin.kafka.cruisecontrol.exception.NotEnoughValidWindowsException: There is no window available in range [-1, 1732543200000].'."}}},
			wantCode: cli.ExitError, wantErr: "Cruise Control failed load: There is no window available in range [-1, 1732543200000]. (HTTP 500)",
			wantRequests: 1},
		{name: "a proxy's error page is shown as text", args: []string{"cc", "state"},
			cfg:      &cctest.Config{Fail: map[string]cctest.Failure{"state": {Status: 502, Message: "<html>502 Bad Gateway</html>", Raw: true}}},
			wantCode: cli.ExitError, wantErr: "<html>502 Bad Gateway</html>", wantRequests: 1},
		{name: "a rebalance refused by Cruise Control shows its reason", args: []string{"cc", "rebalance", "-execute"},
			cfg:      &cctest.Config{AsyncPolls: 2, FailTask: map[string]cctest.Failure{"rebalance": {Message: diskRefusal}}},
			wantCode: cli.ExitError,
			wantErr: "Cruise Control refused rebalance: [DiskCapacityGoal] Insufficient healthy cluster capacity for resource:disk " +
				"utilization 180000.00 > capacity 150000.00. Add at least 1 broker. (HTTP 500, user task 5ce7c299-53b3-48b6-b72e-000000000001",
			wantRequests: 3, wantExecutions: 0},
		{name: "a failed remove-broker task is reported after its progress lines", args: []string{"cc", "remove-broker", "-brokers", "3"},
			cfg: &cctest.Config{AsyncPolls: 1, FailTask: map[string]cctest.Failure{"remove_broker": {Message: "java.util.concurrent.ExecutionException: " +
				"com.linkedin.kafka.cruisecontrol.exception.OptimizationFailureException: [ReplicaCapacityGoal] Insufficient capacity for replica: " +
				"3 partitions with replication factor 3 cannot be placed on 2 alive brokers."}}},
			wantCode:     cli.ExitError,
			wantErr:      "Cruise Control refused remove-broker: [ReplicaCapacityGoal] Insufficient capacity for replica",
			wantRequests: 2},
		{name: "stop", args: []string{"cc", "stop", "-force"}, wantOut: "Proposal execution stopped.", wantRequests: 1,
			wantQuery: map[string]string{"force_stop": "true"}},
		{name: "user tasks", args: []string{"cc", "user-tasks"}, wantOut: "USER TASK ID", wantRequests: 1},
		{name: "bad url", args: []string{"cc", "state", "-url", "localhost:9090"}, wantCode: cli.ExitUsage, wantErr: "want http(s)://host:port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := cctest.Config{AsyncPolls: 1}
			if tt.cfg != nil {
				cfg = *tt.cfg
			}
			srv := cctest.New(t, cfg)
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

// A second execution while one runs is refused by Cruise Control; chatctl
// shows why and exits non-zero.
func TestCruiseControlRefusesASecondExecution(t *testing.T) {
	srv := cctest.New(t, cctest.Config{})
	if r := run(t, nil, "cc", "add-broker", "-brokers", "4", "-execute", "-url", srv.URL); r.code != cli.ExitOK {
		t.Fatalf("first execution: exit %d\n%s", r.code, r.stderr)
	}
	r := run(t, nil, "cc", "rebalance", "-execute", "-url", srv.URL)
	if r.code != cli.ExitError {
		t.Fatalf("exit %d, want %d\n%s", r.code, cli.ExitError, r.stderr)
	}
	want := "Cruise Control refused rebalance: Cannot start a new execution while there is an ongoing execution."
	if !strings.Contains(r.stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
	}
	if n := len(srv.Executions()); n != 1 {
		t.Errorf("executions = %d, want only the first", n)
	}
}

// closedAddr is a local address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestUnreachableServersAreNamed(t *testing.T) {
	addr := closedAddr(t)
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"cruise control state", []string{"cc", "state", "-url", "http://" + addr},
			"cannot reach Cruise Control at http://" + addr + "/kafkacruisecontrol/"},
		{"cruise control rebalance", []string{"cc", "rebalance", "-execute", "-url", "http://" + addr},
			"cannot reach Cruise Control at http://" + addr + "/kafkacruisecontrol/"},
		{"cruise control add-broker", []string{"cc", "add-broker", "-brokers", "4", "-url", "http://" + addr},
			"cannot reach Cruise Control at http://" + addr},
		{"cruise control remove-broker", []string{"cc", "remove-broker", "-brokers", "4", "-url", "http://" + addr},
			"cannot reach Cruise Control at http://" + addr},
		{"cluster health", []string{"cluster", "health", "-brokers", addr, "-timeout", "2s"}, "cannot reach Kafka at " + addr},
		{"lag", []string{"lag", "-brokers", addr, "-timeout", "2s"}, "cannot reach Kafka at " + addr},
		{"topics plan", []string{"topics", "plan", "-brokers", addr, "-timeout", "2s", "-file", "../../../../deploy/topics.yaml"}, "cannot reach Kafka at " + addr},
		{"dlq list", []string{"dlq", "list", "-brokers", addr, "-timeout", "2s"}, "cannot reach Kafka at " + addr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, nil, tt.args...)
			if r.code != cli.ExitError {
				t.Errorf("exit %d, want %d\n%s", r.code, cli.ExitError, r.stderr)
			}
			if !strings.Contains(r.stderr, tt.wantErr) {
				t.Errorf("stderr lacks %q:\n%s", tt.wantErr, r.stderr)
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

// Every chatctl command line in docs/operations.md must parse: the command
// and subcommand exist and every flag is defined with a valid value. Each is
// run with -h appended, which stops after flag parsing, so nothing is sent
// anywhere.
func TestOperationsDocCommandsExist(t *testing.T) {
	root, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(root, "go.work")); err == nil {
			break
		}
		parent := filepath.Dir(root)
		if parent == root {
			t.Fatal("no go.work above the test")
		}
		root = parent
	}
	doc, err := os.ReadFile(filepath.Join(root, "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	placeholders := strings.NewReplacer("<room-id>", "room-1")
	checked := 0
	inCode := false
	for i, line := range strings.Split(string(doc), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "```") {
			inCode = !inCode
			continue
		}
		if !inCode {
			continue
		}
		if j := strings.Index(trimmed, " #"); j >= 0 {
			trimmed = strings.TrimSpace(trimmed[:j])
		}
		var args []string
		switch f := shellFields(placeholders.Replace(trimmed)); {
		case len(f) > 0 && (f[0] == "chatctl" || f[0] == "bin/chatctl"):
			args = f[1:]
		case slices.Contains(f, "topics-init") && len(f) > 0 && f[0] == "docker":
			// docker compose run ... topics-init <chatctl args>
			args = f[slices.Index(f, "topics-init")+1:]
		default:
			continue
		}
		if len(args) == 0 {
			continue // the service's own command
		}
		checked++
		r := run(t, nil, append(args, "-h")...)
		if r.code != cli.ExitOK {
			t.Errorf("docs/operations.md:%d: %q does not parse (exit %d):\n%s", i+1, trimmed, r.code, r.stderr)
		}
	}
	if checked < 30 {
		t.Errorf("only %d chatctl command lines found in docs/operations.md", checked)
	}
}

// shellFields splits a command line like a POSIX shell does for simple
// words: whitespace separates, single and double quotes group.
func shellFields(line string) []string {
	var out []string
	var cur strings.Builder
	inWord := false
	var quote rune
	for _, r := range line {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out
}
