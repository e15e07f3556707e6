package main_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/services/gateway/internal/gwtest"
)

// TestSecurity_processes runs persistence, fanout and a gateway as real processes, the
// gateway at debug level, to check what only the whole path shows: secrets never reach
// the logs, and hostile message text is stored and returned byte for byte (escaping is
// the renderer's job; the web page's is tested by the browser test).
func TestSecurity_processes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole platform")
	}
	env := stacktest.Get(t)
	db := env.NewDatabase(t)
	prefix := env.Topics(t)("")
	common := []string{"-brokers", strings.Join(env.Brokers, ","), "-topic-prefix", prefix}
	addr := func() string { return fmt.Sprintf("127.0.0.1:%d", stacktest.FreePort(t)) }
	pAddr, fAddr, gAddr := addr(), addr(), addr()
	persistence := env.Start(t, "persistence", env.Build(t, "./services/persistence"), nil,
		append(common, "-database-url", db, "-http-addr", pAddr, "-log-level", "debug")...)
	env.Start(t, "fanout", env.Build(t, "./services/fanout"), nil,
		append(common, "-http-addr", fAddr, "-start-offset", "first", "-group", stacktest.UniqueName("fanout-"))...)
	gw := env.Start(t, "gateway", env.Build(t, "./services/gateway"), nil,
		append(common, "-id", "gw-sec", "-addr", gAddr, "-database-url", db, "-log-level", "debug")...)
	base, ws := "http://"+gAddr, "ws://"+gAddr+"/ws"
	for _, a := range []string{pAddr, fAddr, gAddr} {
		stacktest.WaitHTTP(t, "http://"+a+"/readyz", 2*time.Minute)
	}

	// Distinctive passwords, so that finding one in the logs cannot be a coincidence.
	const (
		good    = "pw-Good-7Qz3Xv9Lk2"
		wrong   = "pw-Wrong-4Hd8Nb1Mc6"
		unknown = "pw-Unknown-2Rt5Yp0Ws3"
		short   = "pw-Shrt"
	)
	var secrets []string
	if st, f := gwtest.Do(t, "POST", base+"/api/register", "", map[string]string{"username": "mallory", "password": good}); st != 201 {
		t.Fatalf("register: %d %v", st, f)
	}
	gwtest.Do(t, "POST", base+"/api/register", "", map[string]string{"username": "mallory", "password": good + "-again"}) // taken
	gwtest.Do(t, "POST", base+"/api/register", "", map[string]string{"username": "shorty", "password": short})            // too short
	gwtest.Do(t, "POST", base+"/api/login", "", map[string]string{"username": "mallory", "password": wrong})
	gwtest.Do(t, "POST", base+"/api/login", "", map[string]string{"username": "nobody-here", "password": unknown})
	gwtest.Do(t, "POST", base+"/api/login", "", `{"username":"mallory","password":"`+wrong+`"`) // malformed JSON
	st, login := gwtest.Do(t, "POST", base+"/api/login", "", map[string]string{"username": "mallory", "password": good})
	if st != 200 {
		t.Fatalf("login: %d %v", st, login)
	}
	secrets = append(secrets, good, good+"-again", wrong, unknown, short, login.Str("token"), login.Str("reconnect_token"))
	acc := gwtest.Account{ID: login["user"].(map[string]any)["id"].(string), Name: "mallory", Token: login.Str("token"), Reconnect: login.Str("reconnect_token")}

	// A bad bearer token and a bad WebSocket token are rejected, and not logged either.
	forged := strings.Repeat("F", 43)
	gwtest.Do(t, "GET", base+"/api/me", forged, nil)
	bad := gwtest.Dial(t, ws, nil)
	bad.Send(map[string]any{"type": "auth", "token": forged})
	bad.WaitClosed(10 * time.Second)
	secrets = append(secrets, forged)

	// Hostile texts go through the real write path (gateway, Kafka, persistence,
	// outbox, fanout) and come back unchanged, on the socket and from history.
	hostile := []string{
		`<script>alert(1)</script>`,
		`<img src=x onerror="alert(document.cookie)">`,
		`"><svg/onload=alert(1)>`,
		`javascript:alert(1)`,
		"</textarea><iframe srcdoc='<script>parent.alert(1)</script>'>",
		"\u202egnp.exe {{7*7}} ${7*7} '; DROP TABLE messages; --",
	}
	if st, f := gwtest.Do(t, "POST", base+"/api/rooms", acc.Token, map[string]string{"id": "xss", "name": "<b>bold</b> room"}); st != 201 {
		t.Fatalf("create: %d %v", st, f)
	}
	c := hello(t, ws, acc, map[string]int64{"xss": 0}, nil)
	for i, text := range hostile {
		id := fmt.Sprint("x", i)
		if i%2 == 0 {
			c.Send(map[string]any{"type": "send", "room": "xss", "client_msg_id": id, "text": text, "ref": id})
			if a := c.Expect("ack", id); a.Str("status") != "accepted" {
				t.Fatalf("send %q: %v", text, a)
			}
		} else if st, f := gwtest.Do(t, "POST", base+"/api/rooms/xss/messages", acc.Token, map[string]string{"client_msg_id": id, "text": text}); st != 202 {
			t.Fatalf("REST send %q: %d %v", text, st, f)
		}
	}
	// A NUL byte cannot be stored by PostgreSQL: it is refused up front rather than
	// acknowledged and then dead-lettered by persistence (which the first version of this
	// test caught: the ack was a promise the platform could not keep).
	c.Send(map[string]any{"type": "send", "room": "xss", "client_msg_id": "nul", "text": "a\u0000b", "ref": "nul"})
	if e := c.Expect("error", "nul"); e.Str("code") != "bad_request" {
		t.Fatalf("NUL over WebSocket: %v", e)
	}
	if st, f := gwtest.Do(t, "POST", base+"/api/rooms/xss/messages", acc.Token, map[string]string{"client_msg_id": "nul2", "text": "a\u0000b"}); st != 400 {
		t.Fatalf("NUL over REST: %d %v", st, f)
	}
	want := int64(1 + len(hostile)) // the creator's join, then the messages
	for _, e := range collect(t, c, "xss", want, 30*time.Second) {
		if e.seq == 1 {
			continue
		}
		if i := e.seq - 2; e.text != hostile[i] {
			t.Errorf("delivered %q, sent %q", e.text, hostile[i])
		}
	}
	res, err := http.DefaultClient.Do(authed(t, base+"/api/rooms/xss/messages", acc.Token))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("history Content-Type %q: a browser could sniff it as HTML", ct)
	}
	// encoding/json escapes <, > and & as \u003c..., so the body holds no markup even
	// if someone opens it in a browser.
	if strings.Contains(string(raw), "<script") || strings.Contains(string(raw), "<img") {
		t.Errorf("history body holds raw markup: %.200s", raw)
	}
	var page struct {
		Messages []struct {
			Seq  int64  `json:"seq"`
			Text string `json:"text"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(raw, &page); err != nil {
		t.Fatal(err)
	}
	got := 0
	for _, m := range page.Messages {
		if m.Seq < 2 {
			continue
		}
		got++
		if h := hostile[m.Seq-2]; m.Text != h {
			t.Errorf("history seq %d: %q, sent %q", m.Seq, m.Text, h)
		}
	}
	if got != len(hostile) {
		t.Fatalf("history has %d of %d messages: %s", got, len(hostile), raw)
	}

	// Finally the logs: no password, token or token-shaped secret in any line.
	// Stopped first, so that every line either wrote has been read from its pipe.
	gw.Stop(15 * time.Second)
	persistence.Stop(15 * time.Second)
	for name, p := range map[string]*stacktest.Process{"gateway": gw, "persistence": persistence} {
		out := p.Output()
		if !strings.Contains(out, "gateway") && name == "gateway" {
			t.Fatalf("captured no gateway output; the check would prove nothing:\n%s", out)
		}
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("%s logged a secret (%.6s...)", name, s)
			}
		}
	}
	t.Logf("gateway wrote %d log lines at debug level; none holds a password or token", strings.Count(gw.Output(), "\n"))
}

func authed(t *testing.T, url, token string) *http.Request {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	return req
}
