package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/kchat/kchat/pkg/localstack"
	"github.com/kchat/kchat/pkg/topics"
)

// runACLs prints or creates the services' ACL matrix, localstack.ServiceACLs: the one
// matrix the local stack (make dev), docker-compose.yml (topics-init) and the
// Kubernetes KafkaUsers share.
func runACLs(ctx context.Context, a *app, args []string) error {
	sub, rest, err := subcommand("acls", args, "print", "apply")
	if err != nil {
		return err
	}
	fs := a.newFlagSet("acls "+sub, "acls "+sub+" [-topic-prefix p] [-brokers list] [-wait 0]")
	brokers := a.brokersFlag(fs)
	prefix := fs.String("topic-prefix", a.env.Getenv("TOPIC_PREFIX"), "prefix of every topic name, as the services' -topic-prefix (env TOPIC_PREFIX)")
	wait := fs.Duration("wait", 0, "retry while the cluster is unreachable or still forming, for up to this long (e.g. 2m)")
	timeout := fs.Duration("timeout", 10*time.Second, "timeout of each Kafka request")
	if err := parse(fs, rest); err != nil {
		return err
	}
	acls := localstack.ServiceACLs(topics.Names{Prefix: *prefix})
	if sub == "print" {
		_, err := fmt.Fprint(a.env.Stdout, formatACLs(acls))
		return err
	}
	return a.applyACLs(ctx, *brokers, acls, *wait, *timeout)
}

// applyACLs creates acls as the principal the environment logs in as (the super user).
// Creating an existing ACL changes nothing, so it runs on every start.
func (a *app) applyACLs(ctx context.Context, brokers string, acls []localstack.ACL, wait, timeout time.Duration) error {
	conn, err := a.dialKafka(brokers, timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	err = retryUntil(ctx, a, wait, "acls apply", func() error {
		return localstack.CreateACLs(ctx, conn.Client, acls)
	}, func(error) bool { return false })
	if err != nil {
		return conn.wrap(fmt.Errorf("cannot create ACLs: %w", err))
	}
	_, err = fmt.Fprintf(a.env.Stdout, "ACLs: %d entries for %d rules applied\n", len(localstack.ACLEntries(acls)), len(acls))
	return err
}

// formatACLs is one line per rule: principal, resource, operations.
func formatACLs(acls []localstack.ACL) string {
	var b strings.Builder
	for _, acl := range acls {
		ops := make([]string, len(acl.Operations))
		for i, op := range acl.Operations {
			ops[i] = op.String()
		}
		fmt.Fprintf(&b, "User:%-20s %-6s %-22s %s\n", acl.Principal, acl.ResourceType, acl.Name, strings.Join(ops, ","))
	}
	return b.String()
}
