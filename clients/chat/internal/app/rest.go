package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/kchat/kchat/clients/chat/internal/client"
	"github.com/kchat/kchat/pkg/backoff"
)

// session is what POST /api/login and /api/resume return.
type session struct {
	Token          string `json:"token"`
	ReconnectToken string `json:"reconnect_token"`
	User           struct {
		ID       string `json:"id"`
		Username string `json:"username"`
	} `json:"user"`
}

// apiError is a REST error body ({code, message}) with its status.
type apiError struct {
	Status  int
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *apiError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("HTTP %d", e.Status)
	}
	return e.Message
}

// retryable: the gateway is there but Kafka or PostgreSQL is not (503), or it failed (5xx).
func (e *apiError) retryable() bool { return e.Status >= 500 }

type rest struct{ http *http.Client }

func newREST() *rest { return &rest{http: &http.Client{Timeout: 10 * time.Second}} }

// post sends a JSON body and decodes a JSON answer into out; a non-2xx answer is an *apiError
// and a transport failure any other error.
func (r *rest) post(ctx context.Context, url, token string, body, out any) error {
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(raw))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return r.do(req, token, out)
}

// get is post for a GET of url (query included).
func (r *rest) get(ctx context.Context, url, token string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	return r.do(req, token, out)
}

func (r *rest) do(req *http.Request, token string, out any) error {
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := r.http.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return err
	}
	if res.StatusCode/100 != 2 {
		ae := &apiError{Status: res.StatusCode}
		_ = json.Unmarshal(data, ae)
		return ae
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// authenticate obtains a session: from a reconnect token (if useToken and one was given),
// or by password (registering first with -register). Gateways that cannot be reached are retried in turn with back-off
// for up to timeout; an answer that will not change (wrong password) ends it at once.
func (a *App) authenticate(ctx context.Context, useToken bool) (session, error) {
	deadline := time.Now().Add(a.opts.ConnectTimeout)
	var last error
	for attempt := 0; ; attempt++ {
		for _, u := range a.opts.URLs {
			base := client.HTTPBase(u)
			s, err := a.authOnce(ctx, base, useToken)
			if err == nil {
				return s, nil
			}
			var ae *apiError
			if errors.As(err, &ae) && !ae.retryable() {
				return session{}, describeAuthError(ae)
			}
			if ctx.Err() != nil {
				return session{}, ctx.Err()
			}
			if ae != nil {
				last = fmt.Errorf("%s: %s", base, ae.Error())
			} else {
				last = fmt.Errorf("%s: %s", base, client.DialProblem(err))
			}
			a.errf("cannot reach %v", last)
		}
		wait := backoff.Policy{Initial: 250 * time.Millisecond, Max: 5 * time.Second}.Delay(attempt)
		left := time.Until(deadline)
		if left <= 0 {
			return session{}, fmt.Errorf("no gateway answered within %s (last: %v)", a.opts.ConnectTimeout, last)
		}
		wait = min(wait, left)
		a.errf("retrying in %s", wait.Round(10*time.Millisecond))
		if err := backoff.Sleep(ctx, wait); err != nil {
			return session{}, err
		}
	}
}

func (a *App) authOnce(ctx context.Context, base string, useToken bool) (session, error) {
	var s session
	if useToken && a.opts.ReconnectToken != "" && a.opts.Password == "" {
		err := a.rest.post(ctx, base+"/api/resume", "", map[string]string{"reconnect_token": a.opts.ReconnectToken}, &s)
		return s, err
	}
	if a.opts.Register && !a.registered {
		err := a.rest.post(ctx, base+"/api/register", "", map[string]string{"username": a.opts.User, "password": a.opts.Password}, nil)
		var ae *apiError
		switch {
		case err == nil:
			a.errf("registered %s", a.opts.User)
		case errors.As(err, &ae) && ae.Code == "username_taken":
			// -register means "create the account if needed": the login below decides
			// whether the password is right.
		default:
			return s, err
		}
		a.registered = true
	}
	err := a.rest.post(ctx, base+"/api/login", "", map[string]string{"username": a.opts.User, "password": a.opts.Password}, &s)
	return s, err
}

// describeAuthError turns a refused login into a sentence that says what to do.
func describeAuthError(e *apiError) error {
	switch e.Code {
	case "invalid_credentials":
		return errors.New("login failed: wrong username or password (use -register to create the account)")
	case "invalid_token":
		return errors.New("the reconnect token is invalid or expired: log in with -user and -password")
	case "bad_request":
		return fmt.Errorf("refused: %s", e.Message)
	default:
		return fmt.Errorf("refused (HTTP %d): %s", e.Status, e.Error())
	}
}
