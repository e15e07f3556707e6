// Snippets: ts_headline's marked text cut into segments around the first match.

package search

import (
	"strings"
	"unicode"
)

// Snippet sizes, in runes: how much text before the first match, and in all.
const (
	snippetLead  = 40
	snippetRunes = 200
)

// snippet returns text in segments, its matches marked, cut to a window of about
// snippetRunes around the first match (at spaces where there are any near the edges).
// marked is ts_headline's output for the indexed form of text (IndexedText) with
// HighlightAll: the whole text, each match between start and stop. ts_headline is asked
// for the whole text rather than its own fragments because fragments drop whatever the
// parser takes for markup. The marks are carried over to text by byte offset, which the
// indexed form keeps; should marked not be that form with marks added, text comes back
// unmarked rather than altered.
func snippet(text, marked, start, stop string) []Segment {
	var segs []Segment
	rest := marked
	for rest != "" {
		i := strings.Index(rest, start)
		if i < 0 {
			segs = appendSeg(segs, rest, false)
			break
		}
		segs = appendSeg(segs, rest[:i], false)
		rest = rest[i+len(start):]
		j := strings.Index(rest, stop)
		if j < 0 {
			segs = appendSeg(segs, rest, true)
			break
		}
		segs = appendSeg(segs, rest[:j], true)
		rest = rest[j+len(stop):]
	}
	var b strings.Builder
	for _, s := range segs {
		b.WriteString(s.Text)
	}
	if b.String() != indexedText(text) {
		return window([]Segment{{Text: text}})
	}
	off := 0
	for i := range segs {
		n := len(segs[i].Text)
		segs[i].Text = text[off : off+n]
		off += n
	}
	return window(segs)
}

// indexedText is IndexedText in Go.
func indexedText(s string) string { return strings.NewReplacer("<", " ", ">", " ").Replace(s) }

// appendSeg appends a segment, merging it into the previous one of the same kind
// (adjacent matches of a phrase come back as separate marks).
func appendSeg(segs []Segment, text string, match bool) []Segment {
	if text == "" {
		return segs
	}
	if n := len(segs); n > 0 && segs[n-1].Match == match {
		segs[n-1].Text += text
		return segs
	}
	return append(segs, Segment{Text: text, Match: match})
}

// window keeps the runes [from, from+snippetRunes) of the segments' text, where from is
// snippetLead runes before the first match (moved forward to the next word), and marks
// what it left out with "…".
func window(segs []Segment) []Segment {
	var total, first int
	first = -1
	for _, s := range segs {
		if s.Match && first < 0 {
			first = total
		}
		total += len([]rune(s.Text))
	}
	if total <= snippetRunes {
		return segs
	}
	from := 0
	if first > snippetLead {
		from = first - snippetLead
	}
	if from+snippetRunes > total {
		from = max(0, total-snippetRunes)
	}
	to := from + snippetRunes
	var out []Segment
	pos := 0
	for _, s := range segs {
		r := []rune(s.Text)
		lo, hi := max(from-pos, 0), min(to-pos, len(r))
		pos += len(r)
		if lo >= hi {
			continue
		}
		piece := r[lo:hi]
		if !s.Match {
			// Cut plain text at a space near the window's edges, not inside a word.
			if lo > 0 {
				piece = trimToSpace(piece, true)
			}
			if hi < len(r) {
				piece = trimToSpace(piece, false)
			}
		}
		out = appendSeg(out, string(piece), s.Match)
	}
	if from > 0 {
		out = prepend(out, "…")
	}
	if to < total {
		out = appendSeg(out, "…", false)
	}
	return out
}

// trimToSpace drops a partial word at the start (front) or end of r, if a space is
// within 15 runes of that edge.
func trimToSpace(r []rune, front bool) []rune {
	const reach = 15
	if front {
		for i := 0; i < len(r) && i < reach; i++ {
			if unicode.IsSpace(r[i]) {
				return r[i+1:]
			}
		}
		return r
	}
	for i := len(r) - 1; i >= 0 && i >= len(r)-reach; i-- {
		if unicode.IsSpace(r[i]) {
			return r[:i]
		}
	}
	return r
}

func prepend(segs []Segment, text string) []Segment {
	if len(segs) > 0 && !segs[0].Match {
		segs[0].Text = text + segs[0].Text
		return segs
	}
	return append([]Segment{{Text: text}}, segs...)
}
