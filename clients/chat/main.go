// Command chat is kchat's terminal client: it logs in to a gateway, follows your rooms over
// a WebSocket that survives gateway restarts, and reads messages and /commands line by line
// from standard input, so it works interactively and in scripts alike. Run with -h for the
// flags; /help lists the commands. The work is done in internal/app.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/kchat/kchat/clients/chat/internal/app"
	"github.com/kchat/kchat/clients/chat/internal/client"
	"github.com/kchat/kchat/clients/chat/internal/command"
)

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

func main() {
	fs := flag.NewFlagSet("chat", flag.ContinueOnError)
	urls := fs.String("url", env("CHAT_URL", "ws://127.0.0.1:8081/ws"), "gateway WebSocket URL(s), comma-separated: tried in turn when one is down (CHAT_URL)")
	user := fs.String("user", env("CHAT_USER", ""), "username (CHAT_USER)")
	password := fs.String("password", env("CHAT_PASSWORD", ""), "password (CHAT_PASSWORD; prefer the variable: flags show up in ps)")
	register := fs.Bool("register", false, "create the account first if it does not exist")
	token := fs.String("reconnect-token", env("CHAT_RECONNECT_TOKEN", ""), "continue a session with a token from /token instead of a password (CHAT_RECONNECT_TOKEN)")
	room := fs.String("room", env("CHAT_ROOM", ""), "join (or create) this room at start (CHAT_ROOM)")
	timeout := fs.Duration("connect-timeout", durationEnv("CHAT_CONNECT_TIMEOUT", 30*time.Second), "give up when no gateway answers for this long (CHAT_CONNECT_TIMEOUT)")
	verbose := fs.Bool("v", false, "also report acks and typing on stderr")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: chat [flags] < script\n\nReads messages and commands from standard input, one per line:\n\n%s\n\nFlags:\n", command.Usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	var list []string
	for _, u := range strings.Split(*urls, ",") {
		if strings.TrimSpace(u) == "" {
			continue
		}
		n, err := client.NormalizeURL(u)
		if err != nil {
			fmt.Fprintln(os.Stderr, "chat:", err)
			os.Exit(2)
		}
		list = append(list, n)
	}
	switch {
	case len(list) == 0:
		fmt.Fprintln(os.Stderr, "chat: -url is empty")
		os.Exit(2)
	case *token == "" && (*user == "" || *password == ""):
		fmt.Fprintln(os.Stderr, "chat: give -user and -password (or CHAT_USER and CHAT_PASSWORD), or -reconnect-token")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(app.Run(ctx, app.Options{
		URLs: list, User: *user, Password: *password, Register: *register, ReconnectToken: *token,
		Room: *room, ConnectTimeout: *timeout, Verbose: *verbose,
		In: os.Stdin, Out: os.Stdout, Err: os.Stderr,
	}))
}

func durationEnv(name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
		fmt.Fprintf(os.Stderr, "chat: ignoring %s=%q: not a duration\n", name, v)
	}
	return def
}
