package email

import (
	"bytes"
	"fmt"
	htmltemplate "html/template"
	"net/url"
	"strconv"
	"strings"
	texttemplate "text/template"
	"time"

	gomail "github.com/wneessen/go-mail"

	"github.com/kchat/kchat/pkg/emailtoken"
	"github.com/kchat/kchat/pkg/event"
)

// Digest is one planned e-mail: its id (which makes its Message-ID), its recipient and the
// notifications it covers, oldest first.
type Digest struct {
	ID       string
	UserID   string
	Username string
	Address  string
	Items    []Item
}

// Item is one notification of a digest, with the names the e-mail shows.
type Item struct {
	NotificationID string
	RoomID         string
	RoomName       string
	RoomKind       string
	Seq            int64
	Reason         string
	Sender         string // the sender's username (their id if the account is gone)
	Preview        string
	CreatedAt      time.Time
}

// MessageID is the digest's Message-ID without angle brackets: the same digest always gets
// the same one, however often it is sent.
func MessageID(digestID, domain string) string { return digestID + "@" + domain }

// links builds the URLs an e-mail carries.
type links struct {
	base *url.URL
	key  []byte
}

// room is the page with the room opened at the notified entry.
func (l links) room(roomID string, seq int64) string {
	u := l.base.JoinPath("/")
	u.RawQuery = url.Values{"room": {roomID}, "seq": {strconv.FormatInt(seq, 10)}}.Encode()
	return u.String()
}

// unsubscribe is the gateway endpoint that turns e-mail off for userID.
func (l links) unsubscribe(userID string) string {
	u := l.base.JoinPath("api", "email", "unsubscribe")
	u.RawQuery = url.Values{"token": {emailtoken.Sign(l.key, userID)}}.Encode()
	return u.String()
}

// view is what the templates see.
type view struct {
	Username    string
	Count       int
	Items       []viewItem
	Unsubscribe string
}

type viewItem struct {
	Heading string
	Preview string
	Link    string
	At      string
}

// heading says where and why, as the notification list does: a DM, a mention, a room.
func heading(it Item) string {
	room := "#" + it.RoomName
	switch {
	case it.RoomKind == event.RoomKindDM || it.Reason == event.ReasonDM:
		return "Direct message from " + it.Sender
	case it.Reason == event.ReasonMention:
		return it.Sender + " mentioned you in " + room
	case it.Reason == event.ReasonThread:
		return it.Sender + " replied in a thread in " + room
	default:
		return it.Sender + " in " + room
	}
}

func subject(d Digest) string {
	if len(d.Items) == 1 {
		return heading(d.Items[0])
	}
	return fmt.Sprintf("%d new notifications on kchat", len(d.Items))
}

var textBody = texttemplate.Must(texttemplate.New("text").Parse(`Hello {{.Username}},

{{if eq .Count 1}}You have a new notification{{else}}You have {{.Count}} new notifications{{end}} on kchat.
{{range .Items}}
{{.Heading}} ({{.At}}):
  {{.Preview}}
  Open: {{.Link}}
{{end}}
--
You get this e-mail because e-mail notifications are on for your kchat account.
Turn them off: {{.Unsubscribe}}
`))

var htmlBody = htmltemplate.Must(htmltemplate.New("html").Parse(`<!DOCTYPE html>
<html><body>
<p>Hello {{.Username}},</p>
<p>{{if eq .Count 1}}You have a new notification{{else}}You have {{.Count}} new notifications{{end}} on kchat.</p>
<ul>
{{range .Items}}<li><p><strong>{{.Heading}}</strong> <small>{{.At}}</small><br>{{.Preview}}<br><a href="{{.Link}}">Open the room</a></p></li>
{{end}}</ul>
<p><small>You get this e-mail because e-mail notifications are on for your kchat account.
<a href="{{.Unsubscribe}}">Turn them off</a>.</small></p>
</body></html>
`))

// build renders d as a message from "from" whose Message-ID has domain on its right.
func build(d Digest, from, domain string, l links) (*gomail.Msg, error) {
	v := view{Username: d.Username, Count: len(d.Items), Unsubscribe: l.unsubscribe(d.UserID)}
	for _, it := range d.Items {
		// Previews are one line in the store already; a line break here would break the
		// text layout, so any that slipped in become spaces.
		preview := strings.Join(strings.Fields(it.Preview), " ")
		v.Items = append(v.Items, viewItem{Heading: heading(it), Preview: preview, Link: l.room(it.RoomID, it.Seq),
			At: it.CreatedAt.UTC().Format("2006-01-02 15:04 UTC")})
	}
	var text, html bytes.Buffer
	if err := textBody.Execute(&text, v); err != nil {
		return nil, err
	}
	if err := htmlBody.Execute(&html, v); err != nil {
		return nil, err
	}
	m := gomail.NewMsg()
	if err := m.From(from); err != nil {
		return nil, fmt.Errorf("sender %q: %w", from, err)
	}
	if err := m.To(d.Address); err != nil {
		return nil, fmt.Errorf("recipient %q: %w", d.Address, err)
	}
	m.Subject(subject(d))
	m.SetMessageIDWithValue(MessageID(d.ID, domain))
	m.SetDate()
	m.SetBulk() // no out-of-office replies to a notification
	m.SetGenHeader(gomail.HeaderListUnsubscribe, "<"+v.Unsubscribe+">")
	m.SetGenHeader("Auto-Submitted", "auto-generated")
	m.SetBodyString(gomail.TypeTextPlain, text.String())
	m.AddAlternativeString(gomail.TypeTextHTML, html.String())
	return m, nil
}
