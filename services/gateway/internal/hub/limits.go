// Rate limits on the frames of one connection (and its user), and the close for a client
// that keeps going far over them.

package hub

import (
	"time"

	"github.com/kchat/kchat/pkg/protocol"
)

// isMessageFrame reports whether f asks for a timeline entry: those are what the message
// limits (per connection and per user) count.
func isMessageFrame(f protocol.Frame) bool {
	switch f.(type) {
	case *protocol.Send, *protocol.Edit, *protocol.Delete, *protocol.React, *protocol.DM:
		return true
	}
	return false
}

// limited applies the rate limits to one frame (f nil: a frame that did not decode) and
// reports whether it was refused. A refused frame gets error{code:"rate_limited",
// retry_after_ms} (typing is dropped silently: it is a hint, and an answer per signal
// would only add traffic); nothing refused was accepted, so nothing accepted is dropped.
// A connection that keeps going far over its limits is closed with 1008.
func (s *Session) limited(now time.Time, f protocol.Frame, ref string) bool {
	msg := f != nil && isMessageFrame(f)
	abusive := s.frameAbuse.Attempt(now)
	if msg {
		abusive = s.msgAbuse.Attempt(now) || abusive
	}
	if abusive {
		s.closeAbusive()
		return true
	}
	_, typing := f.(*protocol.Typing)
	if ok, wait := s.frameBucket.Allow(now); !ok {
		s.hub.metrics.Limited("frames")
		if !typing {
			s.replyLimited(f, ref, wait, "too many frames")
		}
		return true
	}
	if !msg {
		return false
	}
	if ok, wait := s.msgBucket.Allow(now); !ok {
		s.hub.metrics.Limited("conn")
		s.replyLimited(f, ref, wait, "too many messages on this connection")
		return true
	}
	if u := s.User(); u != nil {
		if ok, wait := s.hub.cfg.UserLimiter.Allow(u.ID, now); !ok {
			// The connection's token was not used after all.
			s.msgBucket.Refund()
			s.hub.metrics.Limited("user")
			s.replyLimited(f, ref, wait, "too many messages from this user")
			return true
		}
	}
	return false
}

func (s *Session) replyLimited(f protocol.Frame, ref string, wait time.Duration, why string) {
	e := protocol.NewError(protocol.CodeRateLimited, why+"; retry after retry_after_ms").Retry()
	e.RetryAfter = RetryAfterMs(wait)
	e.For(f)
	s.replyErr(ref, e)
}

// RetryAfterMs rounds a wait up to whole milliseconds, at least 1: "retry in 0 ms" would
// invite a client to retry at once and be refused again.
func RetryAfterMs(wait time.Duration) int64 {
	return max(1, int64((wait+time.Millisecond-1)/time.Millisecond))
}

// closeAbusive closes the connection with 1008 (policy violation) and a final error
// frame. Queued frames are thrown away: the client is not listening to them anyway.
func (s *Session) closeAbusive() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return
	}
	s.closing = true
	s.hub.metrics.Inc(abuseClose)
	s.log.Warn("closing connection far over its rate limits", "user", userID(s.user))
	final := protocol.NewError(protocol.CodeRateLimited, "far over the rate limits for too long; connection closed")
	s.out.Close(protocol.ClosePolicy, protocol.ReasonAbuse, protocol.Encode(final), false)
}
