package service

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/kafkasec"
)

// ConsumerFlags are the flags every Kafka consumer service has: where the cluster and its
// admin endpoints are, its topics' prefix, its consumer group and where a new group starts,
// its log level, and -healthcheck. Register them with NewConsumerFlags before flag.Parse;
// Main parses them.
type ConsumerFlags struct {
	name        string
	brokers     *string
	httpAddr    *string
	topicPrefix *string
	group       *string
	startOffset *string
	logLevel    *string
	healthcheck *bool
	security    *kafkasec.Flags

	// Set by Main once the flags are parsed.
	Brokers     []string
	HTTPAddr    string
	TopicPrefix string
	Group       string
	StartOffset int64 // kafka.FirstOffset or kafka.LastOffset
	Security    kafkasec.Security
}

// NewConsumerFlags registers the common flags of service name on flag.CommandLine with
// their environment defaults: KAFKA_BROKERS, HTTP_ADDR (default httpAddr), TOPIC_PREFIX,
// groupEnv (default group: the service's name), START_OFFSET (default last), LOG_LEVEL,
// and the Kafka security flags (KafkaSecurityFlags; none set: PLAINTEXT).
func NewConsumerFlags(name, httpAddr, groupEnv string) *ConsumerFlags {
	return &ConsumerFlags{
		name:        name,
		brokers:     flag.String("brokers", Env("KAFKA_BROKERS", DefaultBrokers), "Kafka bootstrap brokers, comma-separated (KAFKA_BROKERS)"),
		httpAddr:    flag.String("http-addr", Env("HTTP_ADDR", httpAddr), "address of /healthz, /readyz and /metrics (HTTP_ADDR)"),
		topicPrefix: flag.String("topic-prefix", Env("TOPIC_PREFIX", ""), "prefix of every topic name (TOPIC_PREFIX)"),
		group:       flag.String("group", Env(groupEnv, name), "Kafka consumer group ("+groupEnv+")"),
		startOffset: flag.String("start-offset", Env("START_OFFSET", "last"), "where a group without committed offsets starts: first or last (START_OFFSET)"),
		logLevel:    flag.String("log-level", Env("LOG_LEVEL", "info"), "debug, info, warn or error (LOG_LEVEL)"),
		healthcheck: flag.Bool("healthcheck", false, "probe -http-addr's /healthz and exit 0 if healthy (for container healthchecks)"),
		security:    KafkaSecurityFlags(),
	}
}

// Main parses the flags and runs the service: with -healthcheck it only probes a running
// instance; otherwise it builds the logger, runs run in a context that SIGINT or SIGTERM
// cancels, and exits 1 if run fails (2 for a malformed flag), 0 once it returns nil.
func Main(f *ConsumerFlags, run func(ctx context.Context, logger *slog.Logger) error) {
	flag.Parse()
	if *f.healthcheck {
		Healthcheck(*f.httpAddr)
	}
	logger := NewLogger(f.name, *f.logLevel)
	start, err := ParseStartOffset(*f.startOffset)
	if err != nil {
		exit(fmt.Errorf("-start-offset: %w", err))
	}
	f.Brokers, f.HTTPAddr, f.TopicPrefix, f.Group, f.StartOffset =
		SplitList(*f.brokers), *f.httpAddr, *f.topicPrefix, *f.group, start
	f.Security = MustKafkaSecurity(f.security)

	flushTraces := StartTracing(f.name, "", logger)
	ctx, stop := SignalContext()
	err = run(ctx, logger)
	stop()
	flushTraces()
	if err != nil {
		logger.Error(f.name+" failed", "error", err)
		os.Exit(1)
	}
	logger.Info(f.name + " stopped")
}

// ParseStartOffset maps a flag value ("first", "last") to a kafka-go offset.
func ParseStartOffset(s string) (int64, error) {
	switch strings.ToLower(s) {
	case "first", "earliest":
		return kafka.FirstOffset, nil
	case "last", "latest", "":
		return kafka.LastOffset, nil
	default:
		return 0, fmt.Errorf("start offset must be first or last, not %q", s)
	}
}
