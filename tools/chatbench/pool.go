package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kchat/kchat/tools/chatbench/internal/wsclient"
)

// pool is a set of client connections with one writer goroutine each, so that the
// open-loop scheduler never blocks on a socket (unless a connection's queue is full:
// then it waits, and the wait is charged to latency, as it must be).
type pool struct {
	conns     []*wsclient.Conn
	queues    []chan []byte
	writeErrs atomic.Int64
	wg        sync.WaitGroup
}

// dial opens one kchat connection per user, user i to urls[i%len(urls)], concurrency at once.
func dial(ctx context.Context, urls []string, users []user, concurrency int) (*pool, error) {
	return dialWith(ctx, urls, users, concurrency, dialKchat)
}

// dialer opens one connection for u.
type dialer func(ctx context.Context, url string, u user) (*wsclient.Conn, error)

func dialKchat(ctx context.Context, url string, u user) (*wsclient.Conn, error) {
	return wsclient.Dial(ctx, url, u.token)
}

// dialWith is dial with connections opened by open.
func dialWith(ctx context.Context, urls []string, users []user, concurrency int, open dialer) (*pool, error) {
	p := &pool{conns: make([]*wsclient.Conn, len(users)), queues: make([]chan []byte, len(users))}
	sem := make(chan struct{}, concurrency)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for i, u := range users {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			var c *wsclient.Conn
			var err error
			for attempt := 0; attempt < 3; attempt++ {
				dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				c, err = open(dctx, urls[i%len(urls)], u)
				cancel()
				if err == nil {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("dial %s as %s: %w", urls[i%len(urls)], u.id, err)
				}
				return
			}
			p.conns[i] = c
		}()
		if ctx.Err() != nil {
			break
		}
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		p.close()
		return nil, firstErr
	}
	return p, nil
}

// startWriters gives every connection a queue of depth frames and a writer.
func (p *pool) startWriters(depth int) {
	for i, c := range p.conns {
		q := make(chan []byte, depth)
		p.queues[i] = q
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for frame := range q {
				wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				if err := c.Write(wctx, frame); err != nil {
					p.writeErrs.Add(1)
				}
				cancel()
			}
		}()
	}
}

// send queues frame on connection i.
func (p *pool) send(i int, frame []byte) { p.queues[i%len(p.queues)] <- frame }

// setHandler installs a frame handler per connection.
func (p *pool) setHandler(h func(conn int, data []byte, at time.Time)) {
	for i, c := range p.conns {
		c.SetHandler(func(data []byte, at time.Time) { h(i, data, at) })
	}
}

func (p *pool) close() {
	for _, q := range p.queues {
		if q != nil {
			close(q)
		}
	}
	p.wg.Wait()
	for _, c := range p.conns {
		if c != nil {
			c.Close()
		}
	}
}

// alive counts connections whose read loop is still running.
func (p *pool) alive() int {
	n := 0
	for _, c := range p.conns {
		select {
		case <-c.Done():
		default:
			n++
		}
	}
	return n
}
