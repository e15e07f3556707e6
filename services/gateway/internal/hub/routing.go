// Routing of what this gateway reads from Kafka to its sessions: stored entries to the
// connections following their room (and membership changes to the user's connections),
// typing, notifications and read markers; and the tail re-check once the timeline reader
// is positioned.

package hub

import (
	"context"
	"strings"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/services/gateway/internal/chat"
	"github.com/kchat/kchat/services/gateway/internal/transport"
)

// Deliver implements broker.Sink: events from this gateway's deliveries partition and
// from chat.presence. Called from the reader goroutines; it never blocks on a client.
func (h *Hub) Deliver(ctx context.Context, e event.Envelope, p event.Payload) {
	switch p := p.(type) {
	case event.MessageStored:
		h.followMembership(p)
		subs := h.subscribers(p.RoomID)
		if len(subs) == 0 {
			return
		}
		// Encoded once here, not per connection: every subscriber gets the same bytes.
		entry := entryOf(chat.FrameOfStored(p))
		entry.trace = transport.TraceOf(ctx, e, p)
		for _, s := range subs {
			s.deliverStored(entry)
		}
	case event.Typing:
		var data []byte
		for _, s := range h.subscribers(p.RoomID) {
			if u := s.User(); u != nil && u.ID != p.User {
				if data == nil {
					data = protocol.Encode(protocol.TypingNotice{Base: protocol.Base{Type: protocol.TypeTyping}, Room: p.RoomID, User: p.User, UserName: p.UserName})
				}
				s.deliverEphemeralFrame(protocol.TypeTyping, data)
			}
		}
	case event.NotificationCreated:
		// Fanout sends notifications to every gateway; only the recipient's connections here
		// take it. A connection that got it at hello already (a race with the live copy)
		// does not get it twice.
		frame := protocol.Notification{Base: protocol.Base{Type: protocol.TypeNotification}, NotificationID: p.NotificationID,
			Room: p.RoomID, Seq: p.Seq, Reason: p.Reason, Sender: p.Sender, Preview: p.Preview, CreatedAt: p.CreatedAt}
		for _, s := range h.sessionsOf(p.User) {
			s.deliverNotification(frame, false)
		}
	default:
		h.log.Debug("ignoring event", "event_id", e.ID, "type", e.Type)
	}
}

// ReadMarked tells userID's connections on this gateway, except the one that asked (nil:
// all of them), that a room was read, so that every open tab clears its unread count.
// Connections on other gateways see it on their next rooms fetch.
func (h *Hub) ReadMarked(userID string, m protocol.ReadMarker, except *Session) {
	m.Ref = ""
	for _, s := range h.sessionsOf(userID) {
		if s != except {
			s.deliverEphemeral(protocol.TypeRead, m)
		}
	}
}

// Wants implements broker.StoredSink: an entry is decoded only if a connection here
// follows its room or it names a user connected here (a join, a leave, a DM), whose
// connections may have to start following the room.
func (h *Hub) Wants(room, users string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.rooms[room]) > 0 {
		return true
	}
	for users != "" {
		var u string
		u, users, _ = strings.Cut(users, ",")
		if len(h.byUser[u]) > 0 {
			return true
		}
	}
	return false
}

// Positioned implements broker.StoredSink. A connection that subscribed before the
// timeline reader fixed its start offsets read the room from PostgreSQL before entries
// that the reader will never see were committed; re-reading those rooms' tails now
// closes that window (an entry committed after this read is at or past the start
// offsets, so it is read live).
func (h *Hub) Positioned(ctx context.Context) {
	h.mu.Lock()
	rooms := make([]string, 0, len(h.rooms))
	for room := range h.rooms {
		rooms = append(rooms, room)
	}
	h.mu.Unlock()
	h.recheck(ctx, rooms)
}

func (h *Hub) recheck(ctx context.Context, rooms []string) {
	if ctx.Err() != nil || len(rooms) == 0 {
		return
	}
	seqs, err := h.timeline.LastSeqs(ctx, rooms)
	if err != nil {
		h.log.Warn("tail re-check failed", "error", err)
		return
	}
	for room, seq := range seqs {
		for _, s := range h.subscribers(room) {
			s.observeTail(room, seq)
		}
	}
}

// followMembership starts this gateway's connections of a user on a room that the user
// entered through another gateway or another user's action, as the timeline says: a
// join entry names who joined (followed from that entry on), a DM entry its members (a
// new DM is followed from its start). Leaving is handled where the leave entry is
// delivered to the connection (pushTimelineLocked), after the entry itself.
func (h *Hub) followMembership(p event.MessageStored) {
	switch {
	case p.Kind == event.KindJoin:
		for _, s := range h.sessionsOf(p.Sender) {
			s.follow(p.RoomID, p.Seq-1, p.Seq, false)
		}
	case p.RoomKind == event.RoomKindDM:
		for _, member := range p.Members {
			for _, s := range h.sessionsOf(member) {
				s.follow(p.RoomID, 0, p.Seq, false)
			}
		}
	}
}
