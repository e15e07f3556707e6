package localstack

import (
	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/topics"
)

// The services' SCRAM principals, as in deploy/kubernetes/base/kafka-users.yaml.
const (
	GatewayUser      = "kchat-gateway"
	PersistenceUser  = "kchat-persistence"
	FanoutUser       = "kchat-fanout"
	NotificationUser = "kchat-notification"
)

var (
	read      = []kafka.ACLOperationType{kafka.ACLOperationTypeRead}
	write     = []kafka.ACLOperationType{kafka.ACLOperationTypeWrite}
	readWrite = []kafka.ACLOperationType{kafka.ACLOperationTypeRead, kafka.ACLOperationTypeWrite}
)

// ServiceACLs is the ACL matrix: each service's principal gets exactly the rights its
// code uses, on topics named by names and on its default consumer group. Read and Write
// imply Describe (metadata, offsets); no producer here is idempotent or transactional
// (kafka-go), so there are no cluster or transactional-id rights. It must say what
// deploy/kubernetes/base/kafka-users.yaml says (TestServiceACLs_match_kubernetes_users).
//
//   - gateway writes submissions, typing, subscription announcements and presence
//     heartbeats; reads every partition of chat.stored, its chat.deliveries partition and
//     chat.presence, all without a consumer group.
//   - persistence consumes chat.submitted in group persistence and is the only writer of
//     chat.stored; its outbox relay also publishes the rows others commit (the gateway's
//     membership events to chat.submitted, notification's chat.notifications); dead
//     letters to chat.dlq.
//   - fanout consumes chat.ephemeral and chat.notifications in group fanout; follows
//     chat.subscriptions and chat.presence without a group; writes chat.deliveries,
//     tombstones in chat.subscriptions and dead letters.
//   - notification consumes chat.stored in group notification; follows chat.presence;
//     dead letters. Its notifications reach Kafka through persistence's relay.
func ServiceACLs(names topics.Names) []ACL {
	topic := func(user, declared string, ops []kafka.ACLOperationType) ACL {
		return ACL{Principal: user, ResourceType: kafka.ResourceTypeTopic, Name: names.Of(declared), Operations: ops}
	}
	group := func(user, name string) ACL {
		return ACL{Principal: user, ResourceType: kafka.ResourceTypeGroup, Name: name, Operations: read}
	}
	return []ACL{
		topic(GatewayUser, topics.Submitted, write),
		topic(GatewayUser, topics.Ephemeral, write),
		topic(GatewayUser, topics.Subscriptions, write),
		topic(GatewayUser, topics.Presence, readWrite),
		topic(GatewayUser, topics.Stored, read),
		topic(GatewayUser, topics.Deliveries, read),

		topic(PersistenceUser, topics.Submitted, readWrite),
		group(PersistenceUser, "persistence"),
		topic(PersistenceUser, topics.Stored, write),
		topic(PersistenceUser, topics.Notifications, write),
		topic(PersistenceUser, topics.DLQ, write),

		topic(FanoutUser, topics.Ephemeral, read),
		topic(FanoutUser, topics.Notifications, read),
		group(FanoutUser, "fanout"),
		topic(FanoutUser, topics.Subscriptions, readWrite),
		topic(FanoutUser, topics.Presence, read),
		topic(FanoutUser, topics.Deliveries, write),
		topic(FanoutUser, topics.DLQ, write),

		topic(NotificationUser, topics.Stored, read),
		group(NotificationUser, "notification"),
		topic(NotificationUser, topics.Presence, read),
		topic(NotificationUser, topics.DLQ, write),
	}
}
