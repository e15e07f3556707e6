package chat_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/services/gateway/internal/auth"
	"github.com/kchat/kchat/services/gateway/internal/chat"
	"github.com/kchat/kchat/services/gateway/internal/store"
)

// fakeStore answers CheckSend and SessionUser from fields; the rest is unused here.
type fakeStore struct {
	chat.Store
	check   store.SendCheck
	target  *store.Message // MessageAt's answer (nil: not found)
	session struct {
		kind string
		exp  time.Time
		err  error
	}
}

func (f *fakeStore) CheckSend(context.Context, string, string, string) (store.SendCheck, error) {
	return f.check, nil
}

func (f *fakeStore) MessageAt(context.Context, string, int64) (store.Message, error) {
	if f.target == nil {
		return store.Message{}, store.ErrNotFound
	}
	return *f.target, nil
}

func (f *fakeStore) SessionUser(context.Context, []byte) (store.User, string, time.Time, error) {
	return store.User{ID: "u1", Username: "alice"}, f.session.kind, f.session.exp, f.session.err
}

type fakePub struct {
	err    error
	events []event.Envelope
	topics []string
}

func (p *fakePub) Publish(_ context.Context, topic, _ string, es ...event.Envelope) error {
	if p.err != nil {
		return p.err
	}
	p.topics = append(p.topics, topic)
	p.events = append(p.events, es...)
	return nil
}

func (p *fakePub) PublishAsync(ctx context.Context, topic, key string, e event.Envelope, done func(error)) error {
	done(p.Publish(ctx, topic, key, e))
	return nil
}

func newService(t *testing.T, st chat.Store, pub chat.Publisher) *chat.Service {
	t.Helper()
	s, err := chat.New(chat.Config{GatewayID: "gw-1", Limits: protocol.Limits{MaxTextBytes: 8}}, st, pub, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSend(t *testing.T) {
	t.Parallel()
	alice := chat.User{ID: "u1", Username: "alice"}
	member := store.SendCheck{RoomFound: true, Member: true, Kind: "room"}
	tests := []struct {
		name      string
		check     store.SendCheck
		pubErr    error
		req       chat.SendRequest
		code      string
		retryable bool
		status    string
		published bool
	}{
		{"accepted", member, nil, chat.SendRequest{Room: "r", ClientMsgID: "c", Text: "hi"}, "", false, protocol.AckAccepted, true},
		{"kafka down", member, errors.New("leader not available"), chat.SendRequest{Room: "r", ClientMsgID: "c", Text: "hi"}, protocol.CodeUnavailable, true, "", false},
		{"duplicate is not republished", store.SendCheck{RoomFound: true, Member: true, DupSeq: 7, DupID: "e7"}, nil, chat.SendRequest{Room: "r", ClientMsgID: "c", Text: "hi"}, "", false, protocol.AckDuplicate, false},
		{"unknown room", store.SendCheck{}, nil, chat.SendRequest{Room: "r", ClientMsgID: "c", Text: "hi"}, protocol.CodeNotFound, false, "", false},
		{"not a member", store.SendCheck{RoomFound: true}, nil, chat.SendRequest{Room: "r", ClientMsgID: "c", Text: "hi"}, protocol.CodeForbidden, false, "", false},
		{"too long", member, nil, chat.SendRequest{Room: "r", ClientMsgID: "c", Text: "123456789"}, protocol.CodeTooLarge, false, "", false},
		{"no client id", member, nil, chat.SendRequest{Room: "r", Text: "hi"}, protocol.CodeBadRequest, false, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pub := &fakePub{err: tc.pubErr}
			ack, err := newService(t, &fakeStore{check: tc.check}, pub).Send(context.Background(), alice, tc.req)
			if tc.code != "" {
				var pe *protocol.Error
				if !errors.As(err, &pe) || pe.Code != tc.code || pe.Retryable != tc.retryable {
					t.Fatalf("err = %v, want %s retryable=%v", err, tc.code, tc.retryable)
				}
			} else if err != nil || ack.Status != tc.status {
				t.Fatalf("ack %+v, err %v", ack, err)
			}
			if got := len(pub.events) > 0; got != tc.published {
				t.Fatalf("published = %v", got)
			}
			if tc.published {
				m, err := event.As[event.MessageSubmitted](pub.events[0])
				if err != nil || m.Sender != "u1" || pub.topics[0] != "chat.submitted" || ack.MessageID != pub.events[0].ID {
					t.Fatalf("event %+v on %v: %v", m, pub.topics, err)
				}
			}
			if tc.status == protocol.AckDuplicate && (ack.Seq != 7 || ack.MessageID != "e7") {
				t.Fatalf("duplicate ack %+v", ack)
			}
		})
	}
}

// Edits and deletes: the author or a room admin; only messages; not once deleted.
func TestSend_edit_and_delete_permissions(t *testing.T) {
	t.Parallel()
	alice := chat.User{ID: "u1", Username: "alice"}
	deleted := time.Now()
	byAlice := &store.Message{Seq: 3, Kind: event.KindMessage, Sender: "u1"}
	byBob := &store.Message{Seq: 3, Kind: event.KindMessage, Sender: "u2"}
	deletedByBob := &store.Message{Seq: 3, Kind: event.KindMessage, Sender: "u2", DeletedAt: &deleted}
	join := &store.Message{Seq: 3, Kind: event.KindJoin, Sender: "u1"}
	member := store.SendCheck{RoomFound: true, Member: true, Role: "member"}
	admin := store.SendCheck{RoomFound: true, Member: true, Role: "admin"}
	edit := chat.SendRequest{Room: "r", ClientMsgID: "e1", Text: "fixed", Kind: event.KindEdit, TargetSeq: 3}
	del := chat.SendRequest{Room: "r", ClientMsgID: "d1", Kind: event.KindDelete, TargetSeq: 3}
	tests := []struct {
		name   string
		check  store.SendCheck
		target *store.Message
		req    chat.SendRequest
		code   string // "" means accepted
	}{
		{"author edits", member, byAlice, edit, ""},
		{"author deletes", member, byAlice, del, ""},
		{"other member may not edit", member, byBob, edit, protocol.CodeForbidden},
		{"other member may not delete", member, byBob, del, protocol.CodeForbidden},
		{"admin edits someone else's", admin, byBob, edit, ""},
		{"admin deletes someone else's", admin, byBob, del, ""},
		{"deleting twice", admin, deletedByBob, del, protocol.CodeConflict},
		{"editing a deleted message", admin, deletedByBob, edit, protocol.CodeConflict},
		{"a join is not a message", member, join, edit, protocol.CodeBadRequest},
		{"no such seq", member, nil, del, protocol.CodeNotFound},
		{"not a member", store.SendCheck{RoomFound: true}, byAlice, del, protocol.CodeForbidden},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pub := &fakePub{}
			ack, err := newService(t, &fakeStore{check: tc.check, target: tc.target}, pub).Send(context.Background(), alice, tc.req)
			if tc.code == "" {
				if err != nil || ack.Status != protocol.AckAccepted || len(pub.events) != 1 {
					t.Fatalf("ack %+v, err %v, %d published", ack, err, len(pub.events))
				}
				m, _ := event.As[event.MessageSubmitted](pub.events[0])
				if m.Kind != tc.req.Kind || m.TargetSeq != 3 {
					t.Fatalf("published %+v", m)
				}
				return
			}
			var pe *protocol.Error
			if !errors.As(err, &pe) || pe.Code != tc.code {
				t.Fatalf("err = %v, want %s", err, tc.code)
			}
			if len(pub.events) != 0 {
				t.Fatal("a refused change was published")
			}
		})
	}
}

func TestAuthenticate_token_rules(t *testing.T) {
	t.Parallel()
	tok, _ := auth.NewToken(auth.KindReconnect, time.Now(), time.Hour)
	tests := []struct {
		name  string
		token string
		kind  string
		exp   time.Time
		err   error
		want  string
		ok    bool
	}{
		{"valid", tok.Value, auth.KindReconnect, time.Now().Add(time.Hour), nil, auth.KindReconnect, true},
		{"expired", tok.Value, auth.KindReconnect, time.Now().Add(-time.Second), nil, auth.KindReconnect, false},
		{"wrong kind", tok.Value, auth.KindSession, time.Now().Add(time.Hour), nil, auth.KindReconnect, false},
		{"unknown", tok.Value, "", time.Time{}, store.ErrNotFound, auth.KindReconnect, false},
		{"malformed", "short", auth.KindReconnect, time.Now().Add(time.Hour), nil, auth.KindReconnect, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := &fakeStore{}
			st.session.kind, st.session.exp, st.session.err = tc.kind, tc.exp, tc.err
			u, err := newService(t, st, &fakePub{}).Authenticate(context.Background(), tc.token, tc.want)
			if tc.ok {
				if err != nil || u.Username != "alice" {
					t.Fatalf("u %+v err %v", u, err)
				}
				return
			}
			var pe *protocol.Error
			if !errors.As(err, &pe) || pe.Code != protocol.CodeInvalidToken {
				t.Fatalf("err = %v, want invalid_token", err)
			}
		})
	}
}

func TestDMRoomID_is_symmetric(t *testing.T) {
	t.Parallel()
	if a, b := chat.DMRoomID("u2", "u1"), chat.DMRoomID("u1", "u2"); a != b || a != "dm:u1:u2" {
		t.Fatalf("%s %s", a, b)
	}
}
