package topics

// The platform's topics as declared in deploy/topics.yaml. Services address them through
// Names so that tests can run against prefixed copies on a shared cluster.
const (
	Submitted     = "chat.submitted"     // room-keyed: message.submitted, membership.changed
	Stored        = "chat.stored"        // room-keyed: message.stored (from the outbox relay)
	Ephemeral     = "chat.ephemeral"     // room-keyed: typing
	Deliveries    = "chat.deliveries"    // keyed by gateway id: events addressed to one gateway
	Subscriptions = "chat.subscriptions" // compacted, key "<gateway>/<room>": subscription.changed
	Presence      = "chat.presence"      // compacted, key "<user>@<gateway>" (and "gw/<id>" heartbeats)
	Notifications = "chat.notifications" // user-keyed: notification.created
	DLQ           = "chat.dlq"           // dead letters
)

// Names maps declared topic names to real ones.
type Names struct{ Prefix string }

// Of returns the real name of a declared topic.
func (n Names) Of(name string) string { return n.Prefix + name }
