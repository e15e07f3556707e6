// Package chaos is kchat's fault suite: a load client keeps users on both gateways
// sending room messages and DMs at a fixed open-loop rate and records every operation;
// faults are injected into the real platform (Kafka brokers and the controller leader,
// persistence and its outbox relay, fanout, notification, PostgreSQL, a gateway, a paused
// consumer); afterwards a checker reads the recorded history and the database and counts
// what must be zero. See docs/reliability.md for the method and the latest figures.
//
// The suite is a Go test (chaos_test.go): a short run is part of `make test`, the full
// one is `make chaos`.
package chaos

import (
	"bufio"
	"encoding/json"
	"os"
	"sync"
	"time"
)

// Op kinds, in the order a message meets them.
const (
	OpSend       = "send"       // the generator scheduled a send (open loop: the intent, at its time)
	OpWrite      = "write"      // a send frame was written to a connection (first try or retry)
	OpAck        = "ack"        // the gateway acknowledged a send (accepted or duplicate)
	OpError      = "error"      // an error frame
	OpDeliver    = "deliver"    // a timeline entry shown to the user (after the client's seq dedupe)
	OpDup        = "dup"        // a timeline entry at or below the client's cursor: dropped, counted
	OpGap        = "gap"        // an entry above cursor+1: the gateway skipped entries
	OpConnect    = "connect"    // a connection was welcomed
	OpDisconnect = "disconnect" // a connection ended
	OpSubscribed = "subscribed" // a subscription answer that could not recover (recovered:false)
	OpNotify     = "notification"
	OpFault      = "fault"   // a fault was injected
	OpRestore    = "restore" // the faulted part was restarted / resumed
	OpReady      = "ready"   // the faulted part answered healthy again
	// OpSample is the database's progress, once a second: Seq holds the stored messages,
	// Note "unrelayed=N" the outbox rows not yet published. With the acks and deliveries
	// it shows at which stage a fault held messages up.
	OpSample = "sample"
)

// Op is one recorded operation. T is the time since the run started.
type Op struct {
	T      time.Duration `json:"t"`
	Kind   string        `json:"kind"`
	User   string        `json:"user,omitempty"`
	Conn   int           `json:"conn,omitempty"`
	Gw     string        `json:"gw,omitempty"`
	Room   string        `json:"room,omitempty"`
	To     string        `json:"to,omitempty"`
	Seq    int64         `json:"seq,omitempty"`
	CMID   string        `json:"cmid,omitempty"`
	MsgID  string        `json:"msg_id,omitempty"`
	Sender string        `json:"sender,omitempty"`
	Status string        `json:"status,omitempty"`
	Code   string        `json:"code,omitempty"`
	Note   string        `json:"note,omitempty"`
}

// Recorder is the history of a run; safe for concurrent use.
type Recorder struct {
	start time.Time
	mu    sync.Mutex
	ops   []Op
}

// NewRecorder starts the run's clock.
func NewRecorder() *Recorder { return &Recorder{start: time.Now()} }

// Add records op, stamping it with the current time.
func (r *Recorder) Add(op Op) {
	now := time.Since(r.start)
	r.mu.Lock()
	op.T = now
	r.ops = append(r.ops, op)
	r.mu.Unlock()
}

// Now is the run clock.
func (r *Recorder) Now() time.Duration { return time.Since(r.start) }

// Ops returns a copy of the history so far.
func (r *Recorder) Ops() []Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Op(nil), r.ops...)
}

// WriteJSONL writes the history, one op per line, for inspection after a failed run.
func (r *Recorder) WriteJSONL(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, op := range r.Ops() {
		if err := enc.Encode(op); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
