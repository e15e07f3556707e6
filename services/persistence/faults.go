//go:build faults

package main

// Fault injection, compiled only into test builds (go build -tags faults; the tests build
// persistence that way through stacktest.Env.Build). Production binaries (make build,
// the Dockerfile) have neither these flags nor internal/fault.

import (
	"flag"
	"log/slog"

	"github.com/kchat/kchat/services/persistence/internal/fault"
)

func registerFaultFlags(c *config) {
	flag.Int64Var(&c.crashAfterPublish, "fault-crash-after-publish", 0,
		"tests only: SIGKILL after the Nth acknowledged outbox publish, before marking the rows")
	flag.Int64Var(&c.crashInBatch, "fault-crash-in-batch", 0,
		"tests only: SIGKILL inside the Nth batch transaction, after its writes, before commit")
}

// faultHook kills the process when it is called with n (n < 1: no hook).
func faultHook(n int64, what string, logger *slog.Logger) func(int64) {
	return fault.KillAt(n, what, logger)
}
