package event

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// TestParseObject holds parseObject to what map[string]json.RawMessage gave Decode
// before it: exact names, the last of a repeated name, escaped names unescaped, values
// as their raw bytes.
func TestParseObject(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
	}{
		{"empty", `{}`},
		{"spaced", " {\n\t\"a\" : 1 ,\r\n \"b\":[1, {\"c\": \"}\"}] } "},
		{"repeated name", `{"a":1,"a":"two"}`},
		{"escaped name", `{"\u0061":true,"a\"b":null}`},
		{"names differ in case", `{"ID":"x","id":"y"}`},
		{"strings with brackets and escapes", `{"s":"a\"]}\\","t":"\\"}`},
		{"numbers", `{"n":-1.5e3,"m":0}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var want map[string]json.RawMessage
			if err := json.Unmarshal([]byte(tc.doc), &want); err != nil {
				t.Fatal(err)
			}
			obj, ok := parseObject([]byte(tc.doc))
			if !ok {
				t.Fatalf("parseObject refused %q", tc.doc)
			}
			got := map[string]json.RawMessage{}
			for _, m := range obj {
				raw, _ := obj.get(string(m.name))
				got[string(m.name)] = json.RawMessage(raw)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("members = %q, want %q", got, want)
			}
		})
	}
	for _, doc := range []string{``, `null`, `[]`, `"x"`, `{"a":1`, `{"a":1}{}`, `{"a" 1}`} {
		if _, ok := parseObject([]byte(doc)); ok {
			t.Errorf("parseObject(%q) accepted it", doc)
		}
	}
}

func TestAppendCompact(t *testing.T) {
	for _, doc := range []string{`{}`, `{"a":[1,2]}`, "{ \"a b\" : [ 1 ,\n2 ] , \"c\":\"x y\" }"} {
		want := bytes.NewBufferString("prefix")
		if err := json.Compact(want, []byte(doc)); err != nil {
			t.Fatal(err)
		}
		got, err := appendCompact([]byte("prefix"), []byte(doc))
		if err != nil || string(got) != want.String() {
			t.Errorf("appendCompact(%q) = %q, %v; want %q", doc, got, err, want)
		}
	}
}
