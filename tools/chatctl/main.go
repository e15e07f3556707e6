// Command chatctl is the kchat operator CLI: topics, migrations, cluster
// health, consumer lag, Cruise Control and dead letters. See docs/operations.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/kchat/kchat/tools/chatctl/internal/cli"
)

func main() {
	// Ctrl-C cancels a running command (e.g. a long Cruise Control poll)
	// instead of killing it mid-write.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], cli.Env{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv})
	stop()
	os.Exit(code)
}
