package report

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/kchat/kchat/tools/chatbench/internal/harness"
)

// num renders a value with at most 4 significant digits and no exponent for common sizes.
func num(v float64) string {
	r := harness.Round(v)
	switch {
	case r == 0:
		return "0"
	case r >= 1e6 || r <= -1e6:
		return fmt.Sprintf("%.0f", r)
	default:
		s := fmt.Sprintf("%.4f", r)
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
		return s
	}
}

func cells(f harness.Figure) []string {
	base := "—"
	if f.Baseline != nil {
		base = num(*f.Baseline) + " " + f.Unit
		if f.BaselineName != "" {
			base += " (" + f.BaselineName + ")"
		}
	} else if f.BaselineName != "" {
		base = f.BaselineName
	}
	ratio := "—"
	if f.Ratio != nil {
		ratio = num(*f.Ratio) + "×"
	}
	value := num(f.Value) + " " + f.Unit
	if strings.HasPrefix(f.Note, "NO DATA") {
		value = "no data"
	}
	return []string{f.Scenario, f.Name, value, base, ratio, f.TargetString(), f.MetString()}
}

var header = []string{"scenario", "figure", "value", "baseline", "ratio", "target", "met"}

// PrintTable writes the figures as an aligned text table.
func PrintTable(w io.Writer, figs []harness.Figure) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, f := range figs {
		fmt.Fprintln(tw, strings.Join(cells(f), "\t"))
	}
	_ = tw.Flush()
	if notes := notes(figs); notes != "" {
		fmt.Fprint(w, "\nnotes:\n"+notes)
	}
}

func notes(figs []harness.Figure) string {
	var b strings.Builder
	for _, f := range figs {
		if f.Note != "" {
			fmt.Fprintf(&b, "- %s / %s: %s\n", f.Scenario, f.Name, f.Note)
		}
	}
	return b.String()
}

// Markdown renders the figures as a Markdown table (for the README).
func Markdown(figs []harness.Figure) string {
	var b strings.Builder
	b.WriteString("| " + strings.Join(header, " | ") + " |\n")
	b.WriteString("|" + strings.Repeat("---|", len(header)) + "\n")
	for _, f := range figs {
		c := cells(f)
		for i := range c {
			c[i] = strings.ReplaceAll(c[i], "|", "\\|")
		}
		b.WriteString("| " + strings.Join(c, " | ") + " |\n")
	}
	if n := notes(figs); n != "" {
		b.WriteString("\nNotes:\n\n" + n)
	}
	return b.String()
}

// MachineLine is a one-line description of the machine and code.
func (r *Result) MachineLine() string {
	m := r.Machine
	dirty := ""
	if r.Git.Dirty {
		dirty = " (dirty)"
	}
	commit := r.Git.Commit
	if len(commit) > 12 {
		commit = commit[:12]
	}
	return fmt.Sprintf("%d cores %s, %s, %s, kernel %s, commit %s%s, %s mode, %s",
		m.Cores, m.CPUModel, m.MemTotal, m.GoVersion, m.Kernel, commit, dirty, r.Mode, r.StartedAt.Format("2006-01-02 15:04 MST"))
}
