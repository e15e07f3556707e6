package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"

	"github.com/kchat/kchat/pkg/emailtoken"
	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/services/gateway/internal/api"
	"github.com/kchat/kchat/services/gateway/internal/chat"
)

// tokenChat authenticates "tok-<user>" as that user and nothing else; the e-mail routes
// need nothing more from the chat logic.
type tokenChat struct{ api.Chat }

func (tokenChat) Authenticate(_ context.Context, token, _ string) (chat.User, error) {
	if u, ok := strings.CutPrefix(token, "tok-"); ok {
		return chat.User{ID: u, Username: strings.TrimPrefix(u, "u-")}, nil
	}
	return chat.User{}, protocol.NewError(protocol.CodeInvalidToken, "invalid token")
}

const emailKey = "0123456789abcdef0123456789abcdef"

// emailServer is the e-mail routes on a fresh database with users bob and cat.
func emailServer(t *testing.T) (*httptest.Server, *pgxpool.Pool) {
	t.Helper()
	env := stacktest.Get(t)
	pool := env.NewDatabasePool(t,
		`INSERT INTO users (id, username, password_hash) VALUES ('u-bob', 'bob', 'x'), ('u-cat', 'cat', 'x')`)
	settings, err := chat.NewEmail(pool, []byte(emailKey), nil)
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	e.HTTPErrorHandler = api.ErrorHandler
	api.New(tokenChat{}, nil).RegisterEmail(e, settings)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv, pool
}

func call(t *testing.T, method, url, token, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		t.Fatalf("%s %s: %d, body not JSON: %v", method, url, res.StatusCode, err)
	}
	return res.StatusCode, out
}

func TestEmail_settings_are_validated_and_stored_as_given(t *testing.T) {
	srv, _ := emailServer(t)
	me := srv.URL + "/api/me/email"
	if st, body := call(t, "GET", me, "tok-u-bob", ""); st != 200 || body["address"] != "" || body["enabled"] != false {
		t.Fatalf("before any PUT: %d %v", st, body)
	}
	if st, body := call(t, "PUT", me, "tok-u-bob", `{"address":"Bob.Smith+chat@Example.com","enabled":true}`); st != 200 ||
		body["address"] != "Bob.Smith+chat@Example.com" || body["enabled"] != true {
		t.Fatalf("PUT: %d %v", st, body)
	}
	for _, tc := range []struct{ name, body, want string }{
		{"display name", `{"address":"Bob <bob@example.com>","enabled":true}`, "spaces"},
		{"no domain", `{"address":"bob","enabled":true}`, "plain address"},
		{"two addresses", `{"address":"a@example.com,b@example.com","enabled":true}`, "plain address"},
		{"surrounding space", `{"address":" bob@example.com","enabled":true}`, "spaces"},
		{"empty", `{"address":"","enabled":false}`, "required"},
		{"enabled missing", `{"address":"bob@example.com"}`, "enabled are required"},
		{"address missing", `{"enabled":false}`, "address and enabled"},
		{"wrong type", `{"address":"bob@example.com","enabled":"yes"}`, "wrong type"},
		{"not an object", `"bob@example.com"`, "JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, body := call(t, "PUT", me, "tok-u-bob", tc.body)
			msg, _ := body["message"].(string)
			if st != 400 || !strings.Contains(msg, tc.want) {
				t.Fatalf("got %d %v, want 400 mentioning %q", st, body, tc.want)
			}
		})
	}
	// Nothing refused changed what was stored.
	if st, body := call(t, "GET", me, "tok-u-bob", ""); st != 200 || body["address"] != "Bob.Smith+chat@Example.com" || body["enabled"] != true {
		t.Fatalf("after refused PUTs: %d %v", st, body)
	}
	// Settings are per user.
	if st, body := call(t, "GET", me, "tok-u-cat", ""); st != 200 || body["address"] != "" {
		t.Fatalf("cat sees %d %v", st, body)
	}
	for _, method := range []string{"GET", "PUT"} {
		if st, body := call(t, method, me, "", `{"address":"x@example.com","enabled":true}`); st != 401 || body["code"] != "unauthorized" {
			t.Errorf("%s without a token: %d %v", method, st, body)
		}
	}
}

func TestEmail_unsubscribe_link_turns_email_off(t *testing.T) {
	srv, pool := emailServer(t)
	me := srv.URL + "/api/me/email"
	for _, u := range []string{"u-bob", "u-cat"} {
		if st, body := call(t, "PUT", me, "tok-"+u, `{"address":"`+strings.TrimPrefix(u, "u-")+`@example.com","enabled":true}`); st != 200 {
			t.Fatalf("PUT %s: %d %v", u, st, body)
		}
	}
	link := srv.URL + "/api/email/unsubscribe?token=" + url.QueryEscape(emailtoken.Sign([]byte(emailKey), "u-bob"))
	forged := srv.URL + "/api/email/unsubscribe?token=" + url.QueryEscape(emailtoken.Sign([]byte(strings.Repeat("k", 32)), "u-cat"))
	for _, tc := range []struct {
		name, url string
		status    int
		code      string
	}{
		{"no token", srv.URL + "/api/email/unsubscribe", 400, "bad_request"},
		{"garbage", srv.URL + "/api/email/unsubscribe?token=v1.abc.def", 400, "bad_request"},
		{"signed with another key", forged, 400, "bad_request"},
		{"bob's link", link, 200, ""},
		{"bob's link again", link, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, body := call(t, "GET", tc.url, "", "")
			if st != tc.status || tc.code != "" && body["code"] != tc.code {
				t.Fatalf("got %d %v, want %d %s", st, body, tc.status, tc.code)
			}
		})
	}
	var bob, cat bool
	if err := pool.QueryRow(context.Background(), `SELECT
		(SELECT enabled FROM email_settings WHERE user_id = 'u-bob'), (SELECT enabled FROM email_settings WHERE user_id = 'u-cat')`).Scan(&bob, &cat); err != nil {
		t.Fatal(err)
	}
	if bob || !cat {
		t.Fatalf("after bob's link: bob enabled=%v (want false), cat enabled=%v (want true)", bob, cat)
	}
	// A mail client's browser gets a page, not JSON.
	req, _ := http.NewRequest("GET", link, nil)
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("browser: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	// Turning e-mail on again is the user's own PUT.
	if st, body := call(t, "PUT", me, "tok-u-bob", `{"address":"bob@example.com","enabled":true}`); st != 200 || body["enabled"] != true {
		t.Fatalf("on again: %d %v", st, body)
	}
}
