package tracing

import (
	"go.opentelemetry.io/otel/attribute"

	"github.com/kchat/kchat/pkg/event"
)

// Span attribute keys shared by every service, so that one message's spans can be found
// and read alike wherever they were recorded. The message id is the id of the
// message.submitted event, which message.stored carries as message_id: search the
// backend for kchat.message_id=<id> to find a message's trace.
const (
	AttrRoom           = "kchat.room"
	AttrSeq            = "kchat.seq"
	AttrMessageID      = "kchat.message_id"
	AttrClientMsgID    = "kchat.client_msg_id"
	AttrUser           = "kchat.user"
	AttrNotificationID = "kchat.notification_id"
	AttrEventID        = "messaging.message.id"
	AttrEventType      = "kchat.event_type"
)

// EventAttrs describes an event for a span: its id and type, and the room, seq and
// message id of the payloads that have them. Call it only when Enabled.
func EventAttrs(e event.Envelope, p event.Payload) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 6)
	attrs = append(attrs, attribute.String(AttrEventID, e.ID), attribute.String(AttrEventType, e.Type))
	switch p := p.(type) {
	case event.MessageSubmitted:
		attrs = append(attrs, attribute.String(AttrRoom, p.RoomID), attribute.String(AttrMessageID, e.ID),
			attribute.String(AttrClientMsgID, p.ClientMsgID), attribute.String(AttrUser, p.Sender))
	case event.MessageStored:
		attrs = append(attrs, attribute.String(AttrRoom, p.RoomID), attribute.Int64(AttrSeq, p.Seq),
			attribute.String(AttrMessageID, p.MessageID), attribute.String(AttrUser, p.Sender))
	case event.NotificationCreated:
		attrs = append(attrs, attribute.String(AttrRoom, p.RoomID), attribute.Int64(AttrSeq, p.Seq),
			attribute.String(AttrNotificationID, p.NotificationID), attribute.String(AttrUser, p.User))
	case event.MembershipChanged:
		attrs = append(attrs, attribute.String(AttrRoom, p.RoomID), attribute.String(AttrUser, p.User))
	case event.Typing:
		attrs = append(attrs, attribute.String(AttrRoom, p.RoomID), attribute.String(AttrUser, p.User))
	}
	return attrs
}
