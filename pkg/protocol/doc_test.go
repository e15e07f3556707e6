package protocol

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// docPath is the prose version of this package.
const docPath = "../../docs/protocol.md"

// TestDocMatchesPackage keeps docs/protocol.md and this package agreeing: every frame type,
// error code and close code declared here is documented there, and every one documented
// there is declared here (and decodes, for frame types).
func TestDocMatchesPackage(t *testing.T) {
	raw, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	consts := packageConsts(t)

	// Frame types: the constants against the Frames section's tables (first column of every
	// table, and every name in a "reply" column).
	frames := section(t, doc, "## Frames")
	documented := map[string]bool{}
	for _, row := range tableRows(frames) {
		if name, ok := soleCode(row[0]); ok {
			documented[name] = true
		}
	}
	mentioned := map[string]bool{}
	for _, m := range regexp.MustCompile("`([a-z_]+)`").FindAllStringSubmatch(frames, -1) {
		mentioned[m[1]] = true
	}
	types := valuesWithPrefix(consts, "Type")
	for name, v := range types {
		if !mentioned[v] {
			t.Errorf("frame type %s = %q is not in docs/protocol.md's Frames section", name, v)
		}
	}
	typeValues := invert(types)
	for d := range documented {
		if _, ok := typeValues[d]; !ok {
			t.Errorf("docs/protocol.md documents frame %q, which has no Type constant", d)
		}
	}
	// Every client frame in the client → server tables decodes, and every frame a server
	// sends (first column of server tables, and reply columns) has a struct for clients.
	for _, row := range tableRowsUnder(frames, "client → server") {
		name, ok := soleCode(row[0])
		if !ok {
			continue
		}
		if _, e := Decode([]byte(`{"type":"`+name+`"}`), Limits{}); e != nil && e.Code == CodeUnknownType {
			t.Errorf("documented client frame %q is unknown to Decode", name)
		}
		if len(row) > 2 {
			for _, m := range regexp.MustCompile("`([a-z_]+)`").FindAllStringSubmatch(row[2], -1) {
				if _, isType := typeValues[m[1]]; isType && newServerFrame(m[1]) == nil {
					t.Errorf("reply %q of %q has no struct in DecodeServer", m[1], name)
				}
			}
		}
	}
	for _, row := range tableRowsUnder(frames, "frame") {
		if name, ok := soleCode(row[0]); ok && newServerFrame(name) == nil {
			t.Errorf("documented server frame %q has no struct in DecodeServer", name)
		}
	}

	// Error codes: the Code constants against the first column of the Error codes table.
	codes := valuesWithPrefix(consts, "Code")
	docCodes := map[string]bool{}
	for _, row := range tableRows(section(t, doc, "## Error codes")) {
		if name, ok := soleCode(row[0]); ok {
			docCodes[name] = true
		}
	}
	compare(t, "error code", codes, docCodes)

	// Close codes and their reasons: the Close constants against the Close codes table.
	closes := valuesWithPrefix(consts, "Close")
	docCloses := map[string]bool{}
	docReasons := map[string]bool{}
	for _, row := range tableRows(section(t, doc, "## Close codes")) {
		if _, err := strconv.Atoi(strings.TrimSpace(row[0])); err == nil {
			docCloses[strings.TrimSpace(row[0])] = true
			if r, ok := soleCode(row[1]); ok {
				docReasons[r] = true
			}
		}
	}
	compare(t, "close code", closes, docCloses)
	compare(t, "close reason", valuesWithPrefix(consts, "Reason"), docReasons)
}

func compare(t *testing.T, what string, consts map[string]string, doc map[string]bool) {
	t.Helper()
	values := invert(consts)
	for name, v := range consts {
		if !doc[v] {
			t.Errorf("%s %s = %s is not in docs/protocol.md", what, name, v)
		}
	}
	for d := range doc {
		if _, ok := values[d]; !ok {
			t.Errorf("docs/protocol.md documents %s %s, which has no constant", what, d)
		}
	}
}

// packageConsts returns every constant of this package (test files excepted) whose value
// is a literal, name -> value (strings unquoted, numbers as written).
func packageConsts(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if i >= len(vs.Values) {
						continue
					}
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok {
						continue
					}
					v := lit.Value
					if lit.Kind == token.STRING {
						v, _ = strconv.Unquote(v)
					}
					out[n.Name] = v
				}
			}
		}
	}
	return out
}

// valuesWithPrefix keeps the constants named prefix + an upper-case letter.
func valuesWithPrefix(consts map[string]string, prefix string) map[string]string {
	out := map[string]string{}
	for n, v := range consts {
		if strings.HasPrefix(n, prefix) && len(n) > len(prefix) && n[len(prefix)] >= 'A' && n[len(prefix)] <= 'Z' {
			out[n] = v
		}
	}
	if len(out) == 0 {
		panic("no constants named " + prefix + "…")
	}
	return out
}

func invert(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[v] = k
	}
	return out
}

// section returns the text from a level-2 heading to the next one.
func section(t *testing.T, doc, heading string) string {
	t.Helper()
	i := strings.Index(doc, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("docs/protocol.md has no %q section", heading)
	}
	s := doc[i+1+len(heading):]
	if j := strings.Index(s, "\n## "); j >= 0 {
		s = s[:j]
	}
	return s
}

// tableRows returns the cells of every table body row of a Markdown text.
func tableRows(text string) [][]string {
	var rows [][]string
	for _, table := range tables(text) {
		rows = append(rows, table[1:]...)
	}
	return rows
}

// tableRowsUnder returns the body rows of the tables whose first header cell is header.
func tableRowsUnder(text, header string) [][]string {
	var rows [][]string
	for _, table := range tables(text) {
		if strings.TrimSpace(table[0][0]) == header {
			rows = append(rows, table[1:]...)
		}
	}
	return rows
}

// tables splits Markdown tables into rows of cells; row 0 is the header, the |---| line
// is dropped.
func tables(text string) [][][]string {
	var out [][][]string
	var cur [][]string
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, "|") {
			if cur != nil {
				out, cur = append(out, cur), nil
			}
			continue
		}
		if strings.HasPrefix(line, "|---") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		cur = append(cur, cells)
	}
	if cur != nil {
		out = append(out, cur)
	}
	return out
}

// soleCode returns name when a cell is exactly `name`.
func soleCode(cell string) (string, bool) {
	cell = strings.TrimSpace(cell)
	if len(cell) > 2 && cell[0] == '`' && cell[len(cell)-1] == '`' && !strings.Contains(cell[1:len(cell)-1], "`") {
		return cell[1 : len(cell)-1], true
	}
	return "", false
}

// TestDocTablesParse guards the parser above against a reformatted document silently
// making the comparison vacuous.
func TestDocTablesParse(t *testing.T) {
	raw, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	frames := section(t, string(raw), "## Frames")
	var names []string
	for _, row := range tableRows(frames) {
		if n, ok := soleCode(row[0]); ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	if len(names) < 25 {
		t.Fatalf("only %d frame rows found in docs/protocol.md: %v", len(names), names)
	}
}
