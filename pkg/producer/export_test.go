package producer

import "github.com/segmentio/kafka-go"

// WithRoundTripper returns cfg with the kafka-go Transport replaced, so that tests can put
// a fault injector in front of the real one.
func WithRoundTripper(cfg Config, rt kafka.RoundTripper) Config {
	cfg.roundTripper = rt
	return cfg
}
