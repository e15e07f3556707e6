package chaos

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Report is a whole suite's results, as written to chaos/results.
type Report struct {
	Started  time.Time   `json:"started"`
	Duration string      `json:"duration"`
	Host     string      `json:"host"`
	Race     bool        `json:"race_detector"`
	Runs     []RunResult `json:"runs"`
}

// WriteJSON writes the report to dir/<name>.json.
func (r Report) WriteJSON(dir, name string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, name+".json")
	return path, os.WriteFile(path, append(b, '\n'), 0o644)
}

// Table renders the fault table of docs/reliability.md.
func (r Report) Table() string {
	var b strings.Builder
	b.WriteString("| fault (injections) | sends | acked | lost | stored twice | seq gaps / reordered | to non-members | deliveries missing | dupes shown (raw) | notifications missing / dup (ok) | reconnects | first ack after fault p50 / max | first delivery after fault p50 / max | worst send→ack p50 / max | worst send→delivery p50 / max |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, run := range r.Runs {
		c := run.Counts
		rs := run.Recovery
		fmt.Fprintf(&b, "| %s (%d) | %d | %d | %d | %d | %d / %d | %d | %d | %d (%d) | %d / %d (%d) | %d | %s / %s | %s / %s | %s / %s | %s / %s |\n",
			run.Name, len(run.Recoveries), c.Sends, c.Acked, c.Lost, c.StoredTwice, c.SeqGaps, c.Reordered, c.NonMember,
			c.MissingDelivery, c.ShownDupes, c.RawDupes, c.NotifMissing, c.NotifDuplicated, c.Notifications, c.Reconnects,
			dur(rs.AckP50), dur(rs.AckMax), dur(rs.DeliveryP50), dur(rs.DeliveryMax),
			dur(rs.WorstAckP50), dur(rs.WorstAckMax), dur(rs.WorstDeliveryP50), dur(rs.WorstDeliveryMax))
	}
	return b.String()
}

func dur(d time.Duration) string {
	switch {
	case d < 0:
		return "never"
	case d < time.Second:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	default:
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
}
