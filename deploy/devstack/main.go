// Command devstack runs the local platform without Docker: `up [-services] [-gateways N]
// [-plaintext] [-tracing]`, `down`, `status`, `logs`, `kill-broker N`, `start-broker N`, `reset-kafka`,
// `install-jaeger` (builds the trace backend into .cache/bin if missing; make test runs it).
// Kafka runs secured (SASL_SSL, SCRAM-SHA-512, ACLs) unless up is given -plaintext; -secure,
// the opt-in of old, is still accepted and changes nothing. See README.md, "Local stack",
// and docs/operations.md, "Kafka security".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/kchat/kchat/pkg/localstack"
)

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], logger); err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage: devstack [-root DIR] up [-services] [-gateways N] [-plaintext] [-tracing]|down|status|logs [NAME]|kill-broker N|start-broker N|reset-kafka|install-jaeger")

func run(ctx context.Context, args []string, logger *slog.Logger) error {
	fs := flag.NewFlagSet("devstack", flag.ContinueOnError)
	root := fs.String("root", envOr("KCHAT_ROOT", "."), "repository root")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() == 0 {
		return errUsage
	}
	m, err := newManager(*root, logger)
	if err != nil {
		return err
	}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	switch cmd {
	case "up":
		return m.up(ctx, rest)
	case "down":
		return m.down(ctx)
	case "status":
		return m.status(ctx)
	case "logs":
		return m.logs(rest)
	case "install-jaeger":
		// make test runs it first, so that the tracing test does not spend its package's
		// timeout building Jaeger on a fresh machine.
		bin, err := localstack.InstallJaeger(ctx, m.root, filepath.Join(m.root, ".cache"), logger)
		if err == nil {
			fmt.Println(bin)
		}
		return err
	case "reset-kafka":
		// The way between a PLAINTEXT and a secured stack: a cluster is formatted for one.
		return m.stack.ResetKafka()
	case "kill-broker", "start-broker":
		if len(rest) != 1 {
			return errUsage
		}
		var id int
		if _, err := fmt.Sscan(rest[0], &id); err != nil || id < 1 || id > 3 {
			return fmt.Errorf("broker id must be 1, 2 or 3, got %q", rest[0])
		}
		if cmd == "kill-broker" {
			return m.stack.KillBroker(id)
		}
		return m.stack.StartBroker(ctx, id)
	default:
		return errUsage
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
