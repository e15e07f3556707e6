package search

import (
	"slices"
	"strings"
	"testing"
)

func TestSnippet(t *testing.T) {
	const s, e = "<S>", "<E>" // markers; the real ones are random per query
	long := strings.Repeat("aaaa ", 30) + "hit " + strings.Repeat("bbbb ", 60)
	tests := []struct {
		name, text, marked string
		want               []Segment
	}{
		{"plain", "a needle here", "a <S>needle<E> here",
			[]Segment{{Text: "a "}, {Text: "needle", Match: true}, {Text: " here"}}},
		{"angle brackets come back from the stored text", "vector<int> x", "vector " + s + "int" + e + "  x",
			[]Segment{{Text: "vector<"}, {Text: "int", Match: true}, {Text: "> x"}}},
		{"adjacent matches merge", "big red", "<S>big<E><S> <E><S>red<E>", []Segment{{Text: "big red", Match: true}}},
		{"no match marked", "nothing", "nothing", []Segment{{Text: "nothing"}}},
		{"marked text that is not the text: unmarked, unaltered", "what was stored", "what <S>is<E> shown",
			[]Segment{{Text: "what was stored"}}},
		{"long: a window around the match", long, strings.Replace(long, "hit", s+"hit"+e, 1), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := snippet(tc.text, tc.marked, s, e)
			if tc.want != nil {
				if !slices.Equal(got, tc.want) {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
				return
			}
			var all strings.Builder
			for _, g := range got {
				all.WriteString(g.Text)
			}
			w := all.String()
			if !strings.HasPrefix(w, "…") || !strings.HasSuffix(w, "…") || len([]rune(w)) > snippetRunes+2 ||
				!strings.Contains(long, strings.Trim(w, "…")) || !slices.Contains(got, Segment{Text: "hit", Match: true}) {
				t.Fatalf("window %q", w)
			}
			if i := strings.Index(w, "hit"); i < 10 || i > snippetLead+5 {
				t.Fatalf("the match is at %d of the window %q", i, w)
			}
		})
	}
}
