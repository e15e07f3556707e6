package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// LoadConfig shapes the load. Every online user is a member of every room; so is every
// offline user, who never connects and is the one notifications are for.
type LoadConfig struct {
	Users   int     // online users, spread over the gateways
	Offline int     // members who never connect
	Rooms   int     // public rooms
	Rate    float64 // sends per second, all users together (open loop)
	// DMShare is the fraction of sends that are DMs (to the next online user in a ring,
	// or to an offline user); MentionEvery makes every n-th room message mention an
	// offline member.
	DMShare      float64
	MentionEvery int
}

// Population is what Setup created.
type Population struct {
	Online  []*User
	Offline []Account
	Rooms   []string          // public rooms
	DMs     map[string]string // "a|b" (usernames, sorted) -> DM room id
	Members map[string][]string
	// dmPeers lists, per online user, whom they DM (usernames).
	dmPeers map[string][]string
}

// Account is a registered, logged-in user.
type Account struct {
	Name, ID, Token string
}

// Setup registers the users, creates the rooms and the DMs over REST (the first
// gateway), and returns users ready to Run. Gateway i%len(gws) is user i's preferred one.
func Setup(ctx context.Context, httpBases, wsURLs []string, cfg LoadConfig, rec *Recorder) (*Population, error) {
	base := httpBases[0]
	pop := &Population{DMs: map[string]string{}, Members: map[string][]string{}, dmPeers: map[string][]string{}}
	var online []Account
	for i := range cfg.Users + cfg.Offline {
		name := fmt.Sprintf("u%02d", i)
		if i >= cfg.Users {
			name = fmt.Sprintf("off%02d", i-cfg.Users)
		}
		acc, err := register(ctx, base, name)
		if err != nil {
			return nil, err
		}
		if i < cfg.Users {
			online = append(online, acc)
		} else {
			pop.Offline = append(pop.Offline, acc)
		}
	}
	all := append(slices.Clone(online), pop.Offline...)
	for r := range cfg.Rooms {
		room := fmt.Sprintf("room-%d", r)
		if _, err := call(ctx, "POST", base+"/api/rooms", online[0].Token, map[string]string{"id": room}); err != nil {
			return nil, err
		}
		for _, a := range all[1:] {
			if _, err := call(ctx, "POST", base+"/api/rooms/"+room+"/join", a.Token, nil); err != nil {
				return nil, err
			}
		}
		pop.Rooms = append(pop.Rooms, room)
		for _, a := range all {
			pop.Members[a.Name] = append(pop.Members[a.Name], room)
		}
	}
	// DMs: a ring over the online users, and each online user with one offline user.
	openDM := func(a, b Account) error {
		out, err := call(ctx, "POST", base+"/api/dms/"+b.Name, a.Token, nil)
		if err != nil {
			return err
		}
		id, _ := out["room"].(map[string]any)["id"].(string)
		pop.DMs[dmKey(a.Name, b.Name)] = id
		pop.Members[a.Name] = append(pop.Members[a.Name], id)
		pop.Members[b.Name] = append(pop.Members[b.Name], id)
		pop.dmPeers[a.Name] = append(pop.dmPeers[a.Name], b.Name)
		return nil
	}
	for i, a := range online {
		if len(online) > 1 {
			b := online[(i+1)%len(online)]
			if _, done := pop.DMs[dmKey(a.Name, b.Name)]; !done {
				if err := openDM(a, b); err != nil {
					return nil, err
				}
			} else {
				pop.dmPeers[a.Name] = append(pop.dmPeers[a.Name], b.Name)
			}
		}
		if len(pop.Offline) > 0 {
			if err := openDM(a, pop.Offline[i%len(pop.Offline)]); err != nil {
				return nil, err
			}
		}
	}
	for i, a := range online {
		gws := make([]string, len(wsURLs))
		for j := range wsURLs {
			gws[j] = wsURLs[(i+j)%len(wsURLs)]
		}
		pop.Online = append(pop.Online, NewUser(a.Name, a.ID, a.Token, gws, pop.Members[a.Name], rec))
	}
	return pop, nil
}

func dmKey(a, b string) string {
	if a > b {
		a, b = b, a
	}
	return a + "|" + b
}

// Generate runs the open-loop schedule until ctx ends: send i is due at start+i/rate,
// whatever happened to the sends before it. Send i goes from online user i%n; a share
// of them are DMs; every MentionEvery-th room message mentions an offline member.
func Generate(ctx context.Context, pop *Population, cfg LoadConfig) int {
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	start := time.Now()
	n := len(pop.Online)
	i := 0
	for {
		due := start.Add(time.Duration(i) * interval)
		select {
		case <-ctx.Done():
			return i
		case <-time.After(time.Until(due)):
		}
		u := pop.Online[i%n]
		round := i / n
		cmid := fmt.Sprintf("%s-%d", u.Name, i)
		peers := pop.dmPeers[u.Name]
		// The DM share is spread evenly (every k-th round) rather than drawn at random, so
		// that runs are comparable.
		if len(peers) > 0 && cfg.DMShare > 0 && round%int(1/cfg.DMShare) == 0 {
			to := peers[(round/int(1/cfg.DMShare))%len(peers)]
			u.Send(cmid, pop.DMs[dmKey(u.Name, to)], to, fmt.Sprintf("dm %s from %s", cmid, u.Name))
		} else {
			room := pop.Rooms[round%len(pop.Rooms)]
			text := fmt.Sprintf("msg %s from %s", cmid, u.Name)
			if cfg.MentionEvery > 0 && len(pop.Offline) > 0 && i%cfg.MentionEvery == 0 {
				text += " @" + pop.Offline[(i/cfg.MentionEvery)%len(pop.Offline)].Name + " look"
			}
			u.Send(cmid, room, "", text)
		}
		i++
	}
}

// RunUsers starts every user's connection loop; the returned function stops them and
// waits.
func RunUsers(pop *Population) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, u := range pop.Online {
		wg.Add(1)
		go func() { defer wg.Done(); u.Run(ctx) }()
	}
	return func() { cancel(); wg.Wait() }
}

func register(ctx context.Context, base, name string) (Account, error) {
	pw := "chaos-pw-" + name
	if _, err := call(ctx, "POST", base+"/api/register", "", map[string]string{"username": name, "password": pw}); err != nil {
		return Account{}, err
	}
	out, err := call(ctx, "POST", base+"/api/login", "", map[string]string{"username": name, "password": pw})
	if err != nil {
		return Account{}, err
	}
	u, _ := out["user"].(map[string]any)
	id, _ := u["id"].(string)
	tok, _ := out["token"].(string)
	return Account{Name: name, ID: id, Token: tok}, nil
}

// call is a JSON REST call that retries `unavailable` answers for a while: setup runs
// against a platform that has just started.
func call(ctx context.Context, method, url, token string, body any) (map[string]any, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, err := http.NewRequestWithContext(ctx, method, url, rd)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		var out map[string]any
		status := 0
		if err == nil {
			raw, _ := io.ReadAll(res.Body)
			res.Body.Close()
			status = res.StatusCode
			_ = json.Unmarshal(raw, &out)
			if status < 300 {
				return out, nil
			}
			err = fmt.Errorf("%s %s: %d %s", method, url, status, strings.TrimSpace(string(raw)))
		}
		if (status != 0 && status != 503 && status != 429) || time.Now().After(deadline) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}
