package app_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// matrixSummary collects what every case of an authorization matrix observed and logs
// it as one table (operation and room type × actor) once the matrix's parallel cases have
// all ended, for reviews and release notes to quote. A cell is what the actor got: an
// HTTP status for REST, "ok" (the reply) or the error's HTTP equivalent for WebSocket;
// "-" where the actor is not part of that column.
type matrixSummary struct {
	title string
	mu    sync.Mutex
	rows  []string // in the order the matrix declares them
	cells map[string]map[actor]string
}

// newMatrixSummary returns a summary that t logs when it and all its subtests are done.
func newMatrixSummary(t *testing.T, title string) *matrixSummary {
	m := &matrixSummary{title: title, cells: map[string]map[actor]string{}}
	t.Cleanup(func() { t.Log("\n" + m.table()) })
	return m
}

// row declares a row, fixing its place in the table before the cases run in parallel.
func (m *matrixSummary) row(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.cells[name]; !ok {
		m.rows = append(m.rows, name)
		m.cells[name] = map[actor]string{}
	}
}

// record notes what a saw in row.
func (m *matrixSummary) record(row string, a actor, cell string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cells[row][a] = cell
}

func (m *matrixSummary) table() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	head := map[actor]string{anon: "anon", wrongKind: "rc-tok", exMember: "left", nonMember: "outside", peer: "dm-peer"}
	width := len("operation")
	for _, r := range m.rows {
		width = max(width, len(r))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s (cells: what each actor got; - not in that column)\n%-*s", m.title, width, "operation")
	for _, a := range actorOrder {
		h := head[a]
		if h == "" {
			h = string(a)
		}
		fmt.Fprintf(&b, " %7s", h)
	}
	b.WriteString("\n")
	for _, r := range m.rows {
		fmt.Fprintf(&b, "%-*s", width, r)
		for _, a := range actorOrder {
			c := m.cells[r][a]
			if c == "" {
				c = "-"
			}
			fmt.Fprintf(&b, " %7s", c)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// wsCell is how a WebSocket answer reads in the summary: "ok" for the expected reply,
// "close:N" for a close, otherwise the error code's HTTP status (as REST would answer).
func wsCell(reply, code string) string {
	switch reply {
	case "error":
		status := map[string]string{"unauthorized": "401", "forbidden": "403", "not_found": "404", "bad_request": "400", "conflict": "409"}[code]
		if status == "" {
			return code
		}
		return status
	case "":
		return "ok"
	}
	if code, ok := strings.CutPrefix(reply, "close:"); ok {
		return "c:" + code
	}
	return "ok"
}
