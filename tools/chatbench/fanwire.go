package main

import (
	"time"

	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/tools/chatbench/internal/wsclient"
)

// fanKind is what a message a member reads means to fanRun.
type fanKind int

const (
	fanOther      fanKind = iota
	fanSubscribed         // the room is followed
	fanMessage            // a message of the room
)

// fanWire is what fanRun needs of the protocol a server speaks.
type fanWire struct {
	open dialer
	// subscribe is the frame a member sends to follow room; nil: members follow it from
	// the start.
	subscribe func(room string) []byte
	send      func(ref, room, clientMsgID, text string) []byte
	// answer reads a frame a sender got: which send it answers and how (nil: the
	// protocol's answers name no send, as Centrifugo's publish replies name a command id).
	answer func(frame []byte) (clientMsgID string, a sendAnswer, retryAfter time.Duration)
	// read calls fn on each message a frame carries.
	read func(frame []byte, fn func(kind fanKind, msg []byte))
}

// kchatWire is kchat's protocol; the raw broadcaster speaks it too.
var kchatWire = fanWire{open: dialKchat, subscribe: subscribeFrame, send: sendFrame, answer: kchatAnswer,
	read: func(frame []byte, fn func(fanKind, []byte)) {
		typ, err := wsclient.StringField(frame, "type")
		if err != nil {
			return
		}
		switch string(typ) {
		case protocol.TypeSynced, protocol.TypeSubscribed:
			// The gateway may have subscribed the connection on its own (a join entry)
			// before ours arrived (then ours only gets "subscribed"): either means
			// the room is followed; the warm-up proves delivery.
			fn(fanSubscribed, frame)
		case protocol.TypeMessage:
			fn(fanMessage, frame)
		}
	}}

// sendAnswer is what a server said to one send.
type sendAnswer int

const (
	answerNone     sendAnswer = iota // not an answer to a send
	answerAccepted                   // acknowledged
	answerRetry                      // refused for now: send it again later
	answerRefused                    // refused for good
)

// kchatAnswer reads an ack or a refusal naming a client_msg_id.
func kchatAnswer(frame []byte) (clientMsgID string, a sendAnswer, retryAfter time.Duration) {
	typ, err := wsclient.StringField(frame, "type")
	if err != nil {
		return "", answerNone, 0
	}
	switch string(typ) {
	case protocol.TypeAck:
		cid, err := wsclient.StringField(frame, "client_msg_id")
		if err != nil {
			return "", answerNone, 0
		}
		return string(cid), answerAccepted, 0
	case protocol.TypeError:
		f, err := protocol.DecodeServer(frame)
		e, ok := f.(*protocol.Error)
		if err != nil || !ok || e.ClientMsgID == "" {
			return "", answerNone, 0
		}
		if e.Retryable {
			return e.ClientMsgID, answerRetry, time.Duration(e.RetryAfter) * time.Millisecond
		}
		return e.ClientMsgID, answerRefused, 0
	}
	return "", answerNone, 0
}
