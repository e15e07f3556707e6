package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kchat/kchat/pkg/localstack"
	"github.com/kchat/kchat/pkg/topics"
)

func runTopics(ctx context.Context, a *app, args []string) error {
	sub, rest, err := subcommand("topics", args, "plan", "apply")
	if err != nil {
		return err
	}
	fs := a.newFlagSet("topics "+sub, "topics "+sub+" [-file deploy/topics.yaml] [-brokers list] [-wait 0]")
	brokers := a.brokersFlag(fs)
	file := fs.String("file", a.envOr("TOPICS_FILE", DefaultTopicsFile), "topics file (env TOPICS_FILE)")
	wait := fs.Duration("wait", 0, "retry while the cluster is unreachable or still forming, for up to this long (e.g. 2m)")
	timeout := fs.Duration("timeout", 10*time.Second, "timeout of each Kafka request")
	withACLs := false
	var prefix *string
	if sub == "apply" {
		fs.BoolVar(&withACLs, "acls", false, "also create the services' ACL matrix (chatctl acls apply) on a secured cluster")
		prefix = fs.String("topic-prefix", a.env.Getenv("TOPIC_PREFIX"), "with -acls: prefix of the topic names the ACLs name (env TOPIC_PREFIX)")
	}
	if err := parse(fs, rest); err != nil {
		return err
	}
	spec, err := topics.Load(*file)
	if err != nil {
		return err
	}
	conn, err := a.dialKafka(*brokers, *timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	client := conn.Client

	err = retryUntil(ctx, a, *wait, "topics "+sub, func() error {
		if sub == "plan" {
			plan, err := topics.MakePlan(ctx, client, spec)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(a.env.Stdout, plan.String())
			return err
		}
		applied, err := topics.Apply(ctx, client, spec)
		if err != nil {
			return err
		}
		if len(applied) == 0 {
			_, err = fmt.Fprintln(a.env.Stdout, applied.String())
			return err
		}
		_, err = fmt.Fprintf(a.env.Stdout, "applied %d changes:\n%s\n", len(applied), applied.String())
		return err
	}, permanentTopicsError)
	if err != nil || !withACLs {
		return conn.wrap(err)
	}
	return a.applyACLs(ctx, *brokers, localstack.ServiceACLs(topics.Names{Prefix: *prefix}), *wait, *timeout)
}

// permanentTopicsError tells errors that waiting cannot fix: the file asks for
// something the cluster must never be made to do.
func permanentTopicsError(err error) bool {
	return errors.Is(err, topics.ErrPartitionsLowered) || errors.Is(err, topics.ErrReplicationFactorChange)
}

// retryUntil runs fn until it succeeds, fails permanently, or wait has passed.
// One-shot containers start right after their dependencies report healthy,
// which for a Kafka cluster is before every broker is registered everywhere.
func retryUntil(ctx context.Context, a *app, wait time.Duration, what string, fn func() error, permanent func(error) bool) error {
	deadline := time.Now().Add(wait)
	for {
		err := fn()
		if err == nil || permanent(err) || !time.Now().Before(deadline) {
			return err
		}
		a.logger.Warn("retrying", "command", what, "error", err, "until", deadline.Format(time.TimeOnly))
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(2 * time.Second):
		}
	}
}
