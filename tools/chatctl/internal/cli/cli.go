// Package cli implements chatctl's subcommands. Each command group lives in
// its own file; main.go only wires the process to Run.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

// Exit codes. Scripts (compose one-shots, CI waits) branch on them.
const (
	ExitOK        = 0
	ExitError     = 1 // the command could not do its job
	ExitUsage     = 2 // bad flags or arguments, or a refused unsafe request
	ExitDegraded  = 3 // cluster health: under-replicated but writable
	ExitUnhealthy = 4 // cluster health: writes fail somewhere
)

// Defaults match the local stack (deploy/localstack) and docker-compose's host ports.
const (
	DefaultBrokers          = "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094"
	DefaultCruiseControlURL = "http://127.0.0.1:9090"
	DefaultTopicsFile       = "deploy/topics.yaml"
)

// Env is everything a run may touch outside itself, so tests can supply it.
type Env struct {
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
}

// app carries what every command needs.
type app struct {
	env    Env
	logger *slog.Logger
}

// exitError ends a run with a specific code after its output was written.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// usageError is reported with exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, a *app, args []string) error
}

func commands() []command {
	return []command{
		{"topics", "plan|apply: reconcile Kafka topics with the topics file", runTopics},
		{"migrate", "apply the embedded SQL migrations to DATABASE_URL", runMigrate},
		{"cluster", "[health|elect-leaders]: brokers, controller, leader/replica spread per broker, under-replicated, below-min-ISR and offline partitions", runCluster},
		{"lag", "committed offset, log end and lag per consumer group and partition", runLag},
		{"cc", "Cruise Control: state|load|proposals|rebalance|add-broker|remove-broker|demote-broker|stop|user-tasks", runCC},
		{"dlq", "list|replay: dead letters in chat.dlq, and producing them again to their original topic", runDLQ},
		{"replay", "print (or re-emit) one room's stored events from an offset or a time", runReplay},
		{"rebuild", "notifications: rebuild the notifications read model from chat.stored and compare it with the live table", runRebuild},
		{"acls", "print|apply: the services' ACL matrix (localstack.ServiceACLs), created as the logged-in super user", runACLs},
		{"kafka-secrets", "write the secured compose stack's CA, broker certificate and SCRAM passwords into a directory (keeps existing ones)", runKafkaSecrets},
		{"vapid-keys", "print a new Web Push VAPID key pair (VAPID_PUBLIC_KEY, VAPID_PRIVATE_KEY, VAPID_SUBJECT)", runVapidKeys},
	}
}

// Run executes chatctl with args (without the program name) and returns the
// process exit code.
func Run(ctx context.Context, args []string, env Env) int {
	if env.Getenv == nil {
		env.Getenv = func(string) string { return "" }
	}
	a := &app{env: env, logger: newLogger(env.Stderr, env.Getenv("LOG_LEVEL"))}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		printUsage(env.Stderr)
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, a, args[1:])
		var ue *usageError
		var ee *exitError
		switch {
		case err == nil:
			return ExitOK
		case errors.Is(err, flag.ErrHelp):
			return ExitOK
		case errors.As(err, &ue):
			fmt.Fprintf(env.Stderr, "chatctl %s: %s\n", c.name, ue.msg)
			return ExitUsage
		case errors.As(err, &ee):
			if ee.msg != "" {
				fmt.Fprintf(env.Stderr, "chatctl %s: %s\n", c.name, ee.msg)
			}
			return ee.code
		default:
			fmt.Fprintf(env.Stderr, "chatctl %s: %v\n", c.name, err)
			return ExitError
		}
	}
	fmt.Fprintf(env.Stderr, "chatctl: unknown command %q\n\n", args[0])
	printUsage(env.Stderr)
	return ExitUsage
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: chatctl <command> [subcommand] [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-13s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "environment: KAFKA_BROKERS, CRUISE_CONTROL_URL, TOPICS_FILE, TOPIC_PREFIX, DATABASE_URL, LOG_LEVEL")
	fmt.Fprintln(w, "Kafka security (as the services): KAFKA_TLS, KAFKA_TLS_CA_FILE, KAFKA_TLS_CERT_FILE, KAFKA_TLS_KEY_FILE,")
	fmt.Fprintln(w, "  KAFKA_TLS_SERVER_NAME, KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD(_FILE)")
	fmt.Fprintln(w, "run `chatctl <command> -h` for the flags of a command")
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil || level == "" {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

// envOr returns the environment value of key, or def when it is unset.
func (a *app) envOr(key, def string) string {
	if v := a.env.Getenv(key); v != "" {
		return v
	}
	return def
}

// newFlagSet returns a flag set that reports errors instead of exiting.
func (a *app) newFlagSet(name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet("chatctl "+name, flag.ContinueOnError)
	fs.SetOutput(a.env.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(a.env.Stderr, "usage: chatctl %s\n\nflags:\n", usage)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags and turns flag errors into usage errors; it rejects
// positional leftovers because a misplaced flag would otherwise be ignored.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q (a bool flag is set with -flag=false, not -flag false)", fs.Arg(0))
	}
	return nil
}

// brokersFlag registers -brokers with the KAFKA_BROKERS default.
func (a *app) brokersFlag(fs *flag.FlagSet) *string {
	return fs.String("brokers", a.envOr("KAFKA_BROKERS", DefaultBrokers), "comma-separated Kafka bootstrap addresses (env KAFKA_BROKERS)")
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func parseIDs(s string) ([]int, error) {
	var ids []int
	for _, f := range splitList(s) {
		id, err := strconv.Atoi(f)
		if err != nil || id < 0 {
			return nil, fmt.Errorf("invalid broker id %q", f)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// kafkaClient returns a client for the comma-separated bootstrap list, secured as
// the environment says (kafkaSecurity).
func (a *app) kafkaClient(brokers string, timeout time.Duration) (*kafka.Client, error) {
	addrs := splitList(brokers)
	if len(addrs) == 0 {
		return nil, usagef("no Kafka brokers given (-brokers or KAFKA_BROKERS)")
	}
	sec, err := a.kafkaSecurity()
	if err != nil {
		return nil, err
	}
	return &kafka.Client{Addr: kafka.TCP(addrs...), Timeout: timeout, Transport: sec.RoundTripper()}, nil
}

// subcommand splits "group sub [flags]" and checks sub against the known ones.
func subcommand(group string, args []string, known ...string) (string, []string, error) {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return "", nil, usagef("missing subcommand: chatctl %s %s", group, strings.Join(known, "|"))
	}
	for _, k := range known {
		if args[0] == k {
			return k, args[1:], nil
		}
	}
	return "", nil, usagef("unknown subcommand %q: chatctl %s %s", args[0], group, strings.Join(known, "|"))
}
