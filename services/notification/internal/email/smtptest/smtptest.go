// Package smtptest is a real SMTP server (go-smtp) for tests: it accepts every message,
// as a mail server does, including a second copy of one it already has, and records them
// parsed. Recognising copies by Message-ID is the receiving end's job; tests count them.
package smtptest

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Message is one message an SMTP client handed to the receiver.
type Message struct {
	MessageID string
	To        []string
	Subject   string
	Text      string // the text/plain part, decoded
	HTML      string
	Header    mail.Header
}

// Receiver is the server. Set OnData before the first message arrives.
type Receiver struct {
	t    testing.TB
	srv  *smtp.Server
	addr string
	got  chan Message
	mu   sync.Mutex
	all  []Message
	byID map[string]int // Message-ID → copies accepted
	// OnData, when set, sees each message before it is accepted; an error refuses it
	// (an *smtp.SMTPError sets the reply).
	OnData func(m Message) error
}

// New starts a receiver on addr ("127.0.0.1:0": any free port) until the test ends.
func New(t testing.TB, addr string) *Receiver {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	r := &Receiver{t: t, addr: ln.Addr().String(), got: make(chan Message, 100), byID: map[string]int{}}
	r.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &session{r: r}, nil }))
	r.srv.Domain = "receiver.test"
	r.srv.ReadTimeout, r.srv.WriteTimeout = 10*time.Second, 10*time.Second
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = r.srv.Close()
		<-done
	})
	return r
}

// Port is the receiver's TCP port.
func (r *Receiver) Port() int {
	_, p, _ := net.SplitHostPort(r.addr)
	n, _ := strconv.Atoi(p)
	return n
}

// Next waits for the next accepted message and fails the test if none comes in time.
func (r *Receiver) Next(timeout time.Duration) Message {
	r.t.Helper()
	select {
	case m := <-r.got:
		return m
	case <-time.After(timeout):
		r.t.Fatalf("no e-mail within %s", timeout)
		return Message{}
	}
}

// Copies returns how many times a Message-ID was accepted.
func (r *Receiver) Copies(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byID[id]
}

// Messages returns everything accepted so far.
func (r *Receiver) Messages() []Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Message(nil), r.all...)
}

type session struct {
	r  *Receiver
	to []string
}

func (s *session) Reset()        { s.to = nil }
func (s *session) Logout() error { return nil }
func (s *session) Mail(string, *smtp.MailOptions) error {
	return nil
}
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}

func (s *session) Data(body io.Reader) error {
	raw, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	m, err := parse(raw)
	if err != nil {
		s.r.t.Errorf("receiver: unparsable message: %v\n%s", err, raw)
		return err
	}
	m.To = s.to
	if s.r.OnData != nil {
		if err := s.r.OnData(m); err != nil {
			return err
		}
	}
	s.r.mu.Lock()
	s.r.all = append(s.r.all, m)
	s.r.byID[m.MessageID]++
	s.r.mu.Unlock()
	s.r.got <- m
	return nil
}

func parse(raw []byte) (Message, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return Message{}, err
	}
	dec := new(mime.WordDecoder)
	subject, err := dec.DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		return Message{}, err
	}
	m := Message{MessageID: msg.Header.Get("Message-Id"), Subject: subject, Header: msg.Header}
	if err := walk(msg.Header.Get("Content-Type"), msg.Header.Get("Content-Transfer-Encoding"), msg.Body, &m); err != nil {
		return Message{}, err
	}
	if m.Text == "" {
		return Message{}, errors.New("no text/plain part")
	}
	return m, nil
}

// walk collects the text/plain and text/html parts of a (possibly multipart) body.
func walk(contentType, encoding string, body io.Reader, m *Message) error {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return err
	}
	if strings.HasPrefix(mt, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			if err := walk(p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p, m); err != nil {
				return err
			}
		}
	}
	if strings.EqualFold(encoding, "quoted-printable") {
		body = quotedprintable.NewReader(body)
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	switch mt {
	case "text/plain":
		m.Text = string(b)
	case "text/html":
		m.HTML = string(b)
	}
	return nil
}
