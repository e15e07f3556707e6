package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kchat/kchat/pkg/backoff"
)

// maxUnanswered is how many sends a sender connection leaves unanswered before it waits,
// the bound the gateway itself keeps per connection (hub.maxSendsInFlight).
const maxUnanswered = 64

// refusedRetry bounds the wait before a refused send is written again: at least what
// the server asked for, growing per refusal of the same send.
var refusedRetry = backoff.Policy{Initial: 100 * time.Millisecond, Max: 2 * time.Second}

// fanSender writes a room's sends over a pool of sender connections as a client that
// follows the protocol does: at most maxUnanswered unanswered sends per connection (a
// send waits for room, and the wait counts as latency), and a send refused for now
// written again after the wait the refusal asks for. A server without answers (nil
// answer) gets every send written once.
type fanSender struct {
	pool   *pool
	answer func(frame []byte) (string, sendAnswer, time.Duration)
	window []chan struct{}

	mu      sync.Mutex
	pending map[string]*pendingSend
	closed  bool

	resent, refused atomic.Int64
}

type pendingSend struct {
	conn     int
	frame    []byte
	refusals int
}

func newFanSender(p *pool, answer func([]byte) (string, sendAnswer, time.Duration)) *fanSender {
	s := &fanSender{pool: p, answer: answer, pending: map[string]*pendingSend{}}
	if answer == nil {
		return s
	}
	s.window = make([]chan struct{}, len(p.conns))
	for i := range s.window {
		s.window[i] = make(chan struct{}, maxUnanswered)
	}
	p.setHandler(func(conn int, frame []byte, _ time.Time) { s.read(frame) })
	return s
}

// send writes frame, the send named clientMsgID, on connection i (modulo the pool). A
// send that finds its connection closed, or ctx ended, while it waits for room is not
// written: it counts as undelivered.
func (s *fanSender) send(ctx context.Context, i int, clientMsgID string, frame []byte) {
	conn := i % len(s.pool.conns)
	if s.answer == nil {
		s.pool.send(conn, frame)
		return
	}
	select {
	case s.window[conn] <- struct{}{}:
	case <-s.pool.conns[conn].Done():
		return
	case <-ctx.Done():
		return
	}
	s.mu.Lock()
	s.pending[clientMsgID] = &pendingSend{conn: conn, frame: frame}
	s.mu.Unlock()
	s.pool.send(conn, frame)
}

func (s *fanSender) read(frame []byte) {
	cid, a, after := s.answer(frame)
	if a == answerNone {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pending[cid]
	if p == nil {
		return
	}
	switch a {
	case answerAccepted, answerRefused:
		delete(s.pending, cid)
		<-s.window[p.conn]
		if a == answerRefused {
			s.refused.Add(1)
		}
	case answerRetry:
		p.refusals++
		wait := refusedRetry.Step(p.refusals - 1)
		time.AfterFunc(max(wait, after), func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if !s.closed {
				s.resent.Add(1)
				s.pool.send(p.conn, p.frame)
			}
		})
	}
}

// close stops resends; call it before closing the pool.
func (s *fanSender) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}
