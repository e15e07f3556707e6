package service

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/kchat/kchat/pkg/tracing"
)

// StartTracing enables OpenTelemetry tracing when the OTEL_* environment asks for it
// (pkg/tracing; off without an OTLP endpoint) and returns the function that flushes the
// spans still buffered: call it once the service has stopped. A malformed OTEL_* value
// stops the program, like a malformed flag. instance, if set, names this process among
// several of the service (a gateway's id).
func StartTracing(serviceName, instance string, logger *slog.Logger) (flush func()) {
	shutdown, err := tracing.Setup(context.Background(), serviceName, instance, logger)
	if err != nil {
		exit(err)
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdown(ctx); err != nil {
			logger.Warn("spans not flushed", "error", fmt.Sprint(err))
		}
	}
}
