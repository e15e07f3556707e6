// Announcing which rooms this gateway follows (chat.subscriptions), so that fanout routes
// typing and notifications here: state, not transitions, from one goroutine.

package hub

import (
	"context"
	"time"

	"github.com/kchat/kchat/services/gateway/internal/broker"
)

func (h *Hub) poke() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// Run announces subscription changes as they happen and re-announces them periodically,
// until ctx ends. Then it publishes the final state (after Shutdown: nothing subscribed)
// before returning.
func (h *Hub) Run(ctx context.Context) {
	reannounce := time.NewTicker(h.cfg.Reannounce)
	defer reannounce.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			h.flush(fctx)
			cancel()
			return
		case <-h.wake:
			h.flush(ctx)
		case <-reannounce.C:
			h.reannounce(ctx)
		}
	}
}

// flush publishes the current state of every dirty room. It publishes state, not
// transitions, from this one goroutine, so the last write for a key is always right.
// Only typing is routed by these announcements; the timeline needs none of them.
func (h *Hub) flush(ctx context.Context) {
	h.mu.Lock()
	var changes []broker.SubscriptionChange
	for room := range h.dirtyRoom {
		on := len(h.rooms[room]) > 0
		if room == UsersRoom {
			on = len(h.byUser) > 0
		}
		changes = append(changes, broker.SubscriptionChange{Room: room, Subscribed: on})
	}
	clear(h.dirtyRoom)
	h.mu.Unlock()
	if len(changes) == 0 {
		return
	}
	if err := h.ann.AnnounceSubscriptions(ctx, changes); err != nil {
		h.log.Warn("cannot announce subscriptions; will retry", "rooms", len(changes), "error", err)
		h.mu.Lock()
		for _, c := range changes {
			h.dirtyRoom[c.Room] = true
		}
		h.mu.Unlock()
		h.retryLater(ctx)
	}
}

func (h *Hub) retryLater(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	time.AfterFunc(time.Second, h.poke)
}

func (h *Hub) reannounce(ctx context.Context) {
	h.mu.Lock()
	for room := range h.rooms {
		h.dirtyRoom[room] = true
	}
	if len(h.byUser) > 0 {
		h.dirtyRoom[UsersRoom] = true
	}
	h.mu.Unlock()
	h.flush(ctx)
}
