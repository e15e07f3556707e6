package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Part is a background part of a service (a compacted-topic follower, a presence view, a
// dispatcher): it runs until its context ends. An error it returns before the service's
// Ready channel closes fails the start; one after that is logged.
type Part struct {
	Name string
	Run  func(ctx context.Context) error
}

// Runner runs a consumer service in the order its shutdown needs. Run binds the admin
// endpoints first (a taken port fails the start), starts the background Parts, waits for
// Ready, and then runs Main until ctx ends. The admin server and the Parts outlive Main:
// they stop only after Main has returned (a consumer group has committed its last batch),
// so that its last batch still has what the Parts keep current and /metrics answers.
type Runner struct {
	Name     string // the service, for errors and logs
	HTTPAddr string // admin endpoints; empty: not served
	Admin    *Admin // required when HTTPAddr is set
	Logger   *slog.Logger
	Parts    []Part
	// Ready closes when Main may start (a follower caught up); nil: at once. ReadyWhat
	// names it in logs ("routing table").
	Ready     <-chan struct{}
	ReadyWhat string
	Main      func(ctx context.Context) error
}

// Run runs the service until ctx ends and Main returns; a stop before Ready is not an
// error.
func (r Runner) Run(ctx context.Context) error {
	log := r.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var srv *http.Server
	var ln net.Listener
	if r.HTTPAddr != "" {
		var err error
		if ln, err = net.Listen("tcp", r.HTTPAddr); err != nil {
			return fmt.Errorf("%s: admin endpoints: %w", r.Name, err)
		}
		srv = &http.Server{Handler: r.Admin.Handler(), ReadHeaderTimeout: 5 * time.Second}
		log.Info("admin endpoints listening", "addr", ln.Addr().String())
	}

	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	defer func() {
		stopBG()
		if srv != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}
		wg.Wait()
	}()
	if srv != nil {
		wg.Go(func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("admin endpoints failed", "error", err)
			}
		})
	}
	ready := r.Ready
	if ready == nil {
		c := make(chan struct{})
		close(c)
		ready = c
	}
	failed := make(chan error, len(r.Parts))
	for _, p := range r.Parts {
		wg.Go(func() {
			err := p.Run(bg)
			if err == nil || bg.Err() != nil {
				return
			}
			select {
			case <-ready:
				log.Error("background part failed", "part", p.Name, "error", err)
			default:
				failed <- fmt.Errorf("%s: %s: %w", r.Name, p.Name, err)
			}
		})
	}

	start := time.Now()
	select {
	case <-ready:
		if r.Ready != nil {
			log.Info(r.ReadyWhat+" ready; starting", "took", time.Since(start).String())
		}
	case err := <-failed:
		return err
	case <-ctx.Done():
		log.Info("stopped before the " + r.ReadyWhat + " caught up")
		return nil
	}
	return r.Main(ctx)
}
