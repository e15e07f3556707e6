package service

import (
	"context"
	"flag"
	"log/slog"
	"time"

	"github.com/kchat/kchat/pkg/kafkasec"
)

// KafkaSecurityFlags registers the Kafka security flags (kafkasec.RegisterFlags: TLS
// files, SASL mechanism and user, password from the environment) on flag.CommandLine.
// After flag.Parse, MustKafkaSecurity resolves them.
func KafkaSecurityFlags() *kafkasec.Flags { return kafkasec.RegisterFlags(flag.CommandLine) }

// MustKafkaSecurity resolves parsed security flags; a malformed or inconsistent value
// (an unreadable CA file, a user without a password) stops the program with a message
// naming the variable, like any malformed flag.
func MustKafkaSecurity(f *kafkasec.Flags) kafkasec.Security { return must(f.Security()) }

// KafkaPreflight checks, before a service starts its consumers, that the cluster accepts
// its credentials and certificates: kafka-go's readers retry a refused login forever,
// logging at debug level, so a wrong password would otherwise look like a service that
// never receives anything. It returns an error only for a permanent refusal
// (kafkasec.ErrAuthentication, kafkasec.ErrTLS); a cluster that does not answer yet is
// logged and left to the ordinary retries. On PLAINTEXT it does nothing, as before.
func KafkaPreflight(ctx context.Context, brokers []string, sec kafkasec.Security, log *slog.Logger) error {
	if !sec.Enabled() {
		return nil
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	err := sec.VerifyAny(ctx, brokers, 10*time.Second)
	switch {
	case err == nil:
		log.Info("kafka security verified", "tls", sec.TLS != nil, "sasl_user", sec.User())
		return nil
	case sec.IsPermanent(err):
		return err
	}
	log.Warn("kafka not reachable yet; security not verified", "error", err)
	return nil
}
