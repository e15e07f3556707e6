// Package fault injects crashes for crash-safety tests. A crash here is SIGKILL of the
// process itself: no deferred function, flush or graceful shutdown runs, exactly as when
// the machine dies.
package fault

import (
	"log/slog"
	"os"
	"syscall"
)

// KillAt returns a hook that kills the process when it is called with n, and logs what
// it is about to interrupt. It returns nil when n < 1, which disables the hook.
func KillAt(n int64, what string, logger *slog.Logger) func(int64) {
	if n < 1 {
		return nil
	}
	return func(count int64) {
		if count != n {
			return
		}
		logger.Warn("fault injection: SIGKILL", "fault", what, "count", count)
		Kill()
	}
}

// Kill sends SIGKILL to the process itself and never returns.
func Kill() {
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is asynchronous; nothing may run after it was sent
}
