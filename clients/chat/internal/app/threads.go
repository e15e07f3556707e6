// Threads: /thread shows a thread of the current room and marks it read; /reply is a send
// (execute).

package app

import (
	"context"

	"github.com/kchat/kchat/pkg/protocol"
)

// thread prints the thread rooted at root of the current room (its first page of the
// gateway's largest size) and moves the thread's read marker to its last reply shown; it
// returns false when the client itself has ended.
func (a *App) thread(ctx context.Context, root int64) bool {
	room := a.currentRoom()
	if room == "" {
		a.errf("no current room: /join ROOM first")
		return true
	}
	f, err := ask[*protocol.ThreadPage](ctx, a, &protocol.Thread{Base: reqBase(protocol.TypeThread), Room: room, Root: root, Limit: 200})
	if err != nil {
		return a.reportErr("/thread", err)
	}
	a.printLines(a.render.ThreadPage(f))
	if n := len(f.Messages); n > 0 {
		last := f.Messages[n-1].Seq
		if _, err := ask[*protocol.ThreadReadMarker](ctx, a, &protocol.ThreadRead{Base: reqBase(protocol.TypeThreadRead), Room: room, Root: root, Seq: &last}); err != nil {
			return a.reportErr("/thread (marking it read)", err)
		}
	}
	return true
}
