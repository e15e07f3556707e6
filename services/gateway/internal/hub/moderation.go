// Removal of a user from a room by one of its admins.

package hub

// UserRemoved is UserLeft for a kick or ban: the user's connections on this gateway stop
// following room at once, and their unsubscribed frame says why (reason "kicked" or
// "banned"), since they no longer follow the room when its leave entry arrives. Other
// gateways stop at the leave entry (pushTimelineLocked), with reason "left".
func (h *Hub) UserRemoved(userID, room, reason string) {
	for _, s := range h.sessionsOf(userID) {
		s.mu.Lock()
		s.unsubscribeLocked(room, reason)
		s.mu.Unlock()
	}
}
