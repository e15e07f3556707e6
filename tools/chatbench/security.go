package main

import (
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/kchat/kchat/pkg/kafkasec"
)

// franzSecurity turns the Kafka security settings (the kafkasec flags and variables every
// kchat program reads) into franz-go options, for the franz-go clients chatbench compares
// with kafka-go; the kafka-go ones take Config.KafkaSecurity as the services do. The zero
// Config gives no options: PLAINTEXT.
func franzSecurity(c kafkasec.Config) ([]kgo.Opt, error) {
	var opts []kgo.Opt
	t, err := c.TLSConfig()
	if err != nil {
		return nil, err
	}
	if t != nil {
		opts = append(opts, kgo.DialTLSConfig(t))
	}
	switch strings.ToUpper(c.SASLMechanism) {
	case "":
	case kafkasec.ScramSHA512:
		opts = append(opts, kgo.SASL(scram.Auth{User: c.SASLUsername, Pass: c.SASLPassword}.AsSha512Mechanism()))
	case kafkasec.ScramSHA256:
		opts = append(opts, kgo.SASL(scram.Auth{User: c.SASLUsername, Pass: c.SASLPassword}.AsSha256Mechanism()))
	case kafkasec.Plain:
		opts = append(opts, kgo.SASL(plain.Auth{User: c.SASLUsername, Pass: c.SASLPassword}.AsMechanism()))
	default:
		return nil, fmt.Errorf("%s %q: want %s, %s or %s", kafkasec.EnvSASLMechanism, c.SASLMechanism, kafkasec.ScramSHA512, kafkasec.ScramSHA256, kafkasec.Plain)
	}
	return opts, nil
}

// franzSecured appends the security options to opts.
func (b *Bench) franzSecured(opts ...kgo.Opt) ([]kgo.Opt, error) {
	sec, err := franzSecurity(b.cfg.KafkaSecurityConfig)
	if err != nil {
		return nil, err
	}
	return append(opts, sec...), nil
}
