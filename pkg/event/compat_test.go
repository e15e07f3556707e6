package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// compatProblems reports the ways in which schema current fails to read
// every document valid under baseline, following the BACKWARD policy in
// schemas/README.md: properties may be added, but none may be removed or
// change type, no field may become required, enum values may not be
// removed, and the object may not be closed to additional properties.
//
// Subschemas are matched by position (properties by name, allOf and then
// by index), so reordering allOf reads as a change; that errs on the safe
// side. Tightened bounds such as minLength are not detected.
func compatProblems(baseline, current map[string]any) []string {
	var problems []string
	compatWalk("#", baseline, current, &problems)
	return problems
}

func compatWalk(path string, oldNode, curNode any, problems *[]string) {
	report := func(format string, args ...any) {
		*problems = append(*problems, path+": "+fmt.Sprintf(format, args...))
	}
	old, cur := asSchemaObject(oldNode), asSchemaObject(curNode)
	if cur == nil {
		report("schema became false")
		return
	}
	if old == nil {
		return // nothing was valid before, so nothing can break
	}

	if ct, ok := cur["type"]; ok && !sameSet(old["type"], ct) {
		report("type changed from %v to %v", old["type"], ct)
	}
	if cc, ok := cur["const"]; ok && !reflect.DeepEqual(old["const"], cc) {
		report("const changed from %v to %v", old["const"], cc)
	}
	if ce, ok := cur["enum"].([]any); ok {
		oe, had := old["enum"].([]any)
		if !had {
			report("enum %v added", ce)
		}
		for _, v := range oe {
			if !slices.ContainsFunc(ce, func(c any) bool { return reflect.DeepEqual(c, v) }) {
				report("enum value %v removed", v)
			}
		}
	}
	oldRequired := stringList(old["required"])
	for _, r := range stringList(cur["required"]) {
		if !slices.Contains(oldRequired, r) {
			report("%q became required", r)
		}
	}
	if cur["additionalProperties"] == false && old["additionalProperties"] != false {
		report("closed to additional properties")
	}

	oldProps, _ := old["properties"].(map[string]any)
	curProps, _ := cur["properties"].(map[string]any)
	for _, name := range sortedKeys(oldProps) {
		next, ok := curProps[name]
		if !ok {
			report("property %q removed", name)
			continue
		}
		compatWalk(path+"/properties/"+name, oldProps[name], next, problems)
	}
	if ci, ok := cur["items"]; ok {
		compatWalk(path+"/items", valueOr(old["items"]), ci, problems)
	}
	// A new allOf entry is compared with the empty schema, so any
	// requirement it introduces is reported, unless its condition can only
	// hold for documents the baseline refused (see newValueOnly).
	oldAll, _ := old["allOf"].([]any)
	curAll, _ := cur["allOf"].([]any)
	for i, sub := range curAll {
		var prev any = map[string]any{}
		if i < len(oldAll) {
			prev = oldAll[i]
		} else if newValueOnly(old, sub) {
			continue
		}
		compatWalk(fmt.Sprintf("%s/allOf/%d", path, i), prev, sub, problems)
	}
	for _, kw := range []string{"then", "else"} {
		if sub, ok := cur[kw]; ok {
			compatWalk(path+"/"+kw, valueOr(old[kw]), sub, problems)
		}
	}
}

// newValueOnly reports whether the conditional subschema sub ("if" ...
// "then") applies only to documents whose property, required by the "if",
// holds a const or enum value that the baseline's enum for that property
// does not list. No document valid under the baseline matches such an "if",
// so whatever its "then" requires (a new kind's own fields) cannot break an
// old document. Anything less certain is compared as usual.
func newValueOnly(old map[string]any, sub any) bool {
	s := asSchemaObject(sub)
	if s == nil {
		return false
	}
	cond := asSchemaObject(s["if"])
	if cond == nil || s["else"] != nil {
		return false
	}
	condProps, _ := cond["properties"].(map[string]any)
	oldProps, _ := old["properties"].(map[string]any)
	for _, name := range stringList(cond["required"]) {
		p := asSchemaObject(condProps[name])
		op := asSchemaObject(oldProps[name])
		if p == nil || op == nil {
			continue
		}
		oldEnum, ok := op["enum"].([]any)
		if !ok {
			continue
		}
		values, ok := p["enum"].([]any)
		if c, has := p["const"]; has {
			values, ok = []any{c}, true
		}
		if !ok || len(values) == 0 {
			continue
		}
		if !slices.ContainsFunc(values, func(v any) bool {
			return slices.ContainsFunc(oldEnum, func(o any) bool { return reflect.DeepEqual(o, v) })
		}) {
			return true
		}
	}
	return false
}

// asSchemaObject maps boolean schemas onto objects; nil means "false".
func asSchemaObject(v any) map[string]any {
	switch s := v.(type) {
	case map[string]any:
		return s
	case bool:
		if s {
			return map[string]any{}
		}
		return nil
	default:
		return map[string]any{}
	}
}

// valueOr treats an absent subschema as the permissive empty schema.
func valueOr(v any) any {
	if v == nil {
		return map[string]any{}
	}
	return v
}

func sameSet(a, b any) bool {
	x, y := stringList(a), stringList(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

// stringList reads a keyword that is a string or an array of strings.
func stringList(v any) []string {
	switch s := v.(type) {
	case string:
		return []string{s}
	case []any:
		var out []string
		for _, e := range s {
			if str, ok := e.(string); ok {
				out = append(out, str)
			}
		}
		return out
	}
	return nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func TestSchemasBackwardCompatibleWithBaseline(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(schemaDir, "baseline", "*.schema.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no baseline schemas: %v", err)
	}
	released := map[string]bool{}
	for _, f := range files {
		name := filepath.Base(f)
		released[name] = true
		t.Run(name, func(t *testing.T) {
			old := readSchemaDoc(t, f)
			curPath := filepath.Join(schemaDir, "events", name)
			if _, err := os.Stat(curPath); err != nil {
				t.Fatalf("released schema %s was removed from schemas/events", name)
			}
			cur := readSchemaDoc(t, curPath)
			if old["$id"] != cur["$id"] {
				t.Errorf("$id changed from %v to %v", old["$id"], cur["$id"])
			}
			for _, p := range compatProblems(old, cur) {
				t.Errorf("breaking change: %s", p)
			}
		})
	}
	current, _ := filepath.Glob(filepath.Join(schemaDir, "events", "*.schema.json"))
	for _, f := range current {
		if !released[filepath.Base(f)] {
			t.Logf("%s is not in schemas/baseline yet; copy it there when it is released", filepath.Base(f))
		}
	}
}

// cloneSchema deep-copies a decoded schema so each case mutates its own.
func cloneSchema(t *testing.T, doc map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return v.(map[string]any)
}

func prop(doc map[string]any, name string) map[string]any {
	return doc["properties"].(map[string]any)[name].(map[string]any)
}

func TestCompatCheckerCatchesBreakingChanges(t *testing.T) {
	stored := readSchemaDoc(t, filepath.Join(schemaDir, "baseline", "message.stored.v1.schema.json"))
	envelope := readSchemaDoc(t, filepath.Join(schemaDir, "baseline", "envelope.v1.schema.json"))
	tests := []struct {
		name   string
		base   map[string]any
		mutate func(map[string]any)
		want   string // substring of the expected problem; "" means compatible
	}{
		{"unchanged", stored, func(map[string]any) {}, ""},
		{"add optional property", stored, func(d map[string]any) {
			d["properties"].(map[string]any)["reactions"] = map[string]any{"type": "object"}
		}, ""},
		{"add enum value", stored, func(d map[string]any) {
			p := prop(d, "kind")
			p["enum"] = append(p["enum"].([]any), "pin")
		}, ""},
		{"required field made optional", stored, func(d map[string]any) {
			d["required"] = slices.DeleteFunc(d["required"].([]any), func(v any) bool { return v == "sender_name" })
		}, ""},
		{"description edited", stored, func(d map[string]any) { prop(d, "seq")["description"] = "reworded" }, ""},

		{"property removed", stored, func(d map[string]any) {
			delete(d["properties"].(map[string]any), "client_msg_id")
		}, `property "client_msg_id" removed`},
		{"property type changed", stored, func(d map[string]any) { prop(d, "seq")["type"] = "string" }, "#/properties/seq: type changed"},
		{"integer widened to number", stored, func(d map[string]any) { prop(d, "seq")["type"] = "number" }, "#/properties/seq: type changed"},
		{"array item type changed", stored, func(d map[string]any) {
			prop(d, "members")["items"] = map[string]any{"type": "integer"}
		}, "#/properties/members/items: type changed"},
		{"new required field", stored, func(d map[string]any) {
			d["properties"].(map[string]any)["thread_id"] = map[string]any{"type": "string"}
			d["required"] = append(d["required"].([]any), "thread_id")
		}, `"thread_id" became required`},
		{"existing optional field required", stored, func(d map[string]any) {
			d["required"] = append(d["required"].([]any), "client_msg_id")
		}, `"client_msg_id" became required`},
		{"conditionally required field added", stored, func(d map[string]any) {
			then := d["allOf"].([]any)[0].(map[string]any)["then"].(map[string]any)
			then["required"] = append(then["required"].([]any), "client_msg_id")
		}, `#/allOf/0/then: "client_msg_id" became required`},
		{"new conditional rule", stored, func(d map[string]any) {
			d["allOf"] = append(d["allOf"].([]any), map[string]any{
				"if":   map[string]any{"properties": map[string]any{"kind": map[string]any{"const": "join"}}},
				"then": map[string]any{"required": []any{"client_msg_id"}},
			})
		}, `#/allOf/3/then: "client_msg_id" became required`},
		{"conditional rule for a new enum value", stored, func(d map[string]any) {
			p := prop(d, "kind")
			p["enum"] = append(p["enum"].([]any), "pin")
			d["allOf"] = append(d["allOf"].([]any), map[string]any{
				"if":   map[string]any{"properties": map[string]any{"kind": map[string]any{"const": "pin"}}, "required": []any{"kind"}},
				"then": map[string]any{"required": []any{"client_msg_id"}},
			})
		}, ""},
		{"conditional rule for a new and an old enum value", stored, func(d map[string]any) {
			p := prop(d, "kind")
			p["enum"] = append(p["enum"].([]any), "pin")
			d["allOf"] = append(d["allOf"].([]any), map[string]any{
				"if":   map[string]any{"properties": map[string]any{"kind": map[string]any{"enum": []any{"pin", "join"}}}, "required": []any{"kind"}},
				"then": map[string]any{"required": []any{"client_msg_id"}},
			})
		}, `#/allOf/3/then: "client_msg_id" became required`},
		{"enum value removed", stored, func(d map[string]any) {
			p := prop(d, "room_kind")
			p["enum"] = slices.DeleteFunc(p["enum"].([]any), func(v any) bool { return v == "dm" })
		}, "enum value dm removed"},
		{"enum added to free text", stored, func(d map[string]any) { prop(d, "sender")["enum"] = []any{"system"} }, "enum [system] added"},
		{"closed to additional properties", stored, func(d map[string]any) { d["additionalProperties"] = false }, "closed to additional properties"},
		{"property schema made false", stored, func(d map[string]any) {
			d["properties"].(map[string]any)["text"] = false
		}, "#/properties/text: schema became false"},
		{"envelope const changed", envelope, func(d map[string]any) { prop(d, "specversion")["const"] = "1.1" }, "const changed"},
		{"envelope attribute removed", envelope, func(d map[string]any) {
			delete(d["properties"].(map[string]any), "traceparent")
		}, `property "traceparent" removed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cur := cloneSchema(t, tt.base)
			tt.mutate(cur)
			problems := compatProblems(tt.base, cur)
			if tt.want == "" {
				if len(problems) != 0 {
					t.Fatalf("compatible change reported as breaking: %v", problems)
				}
				return
			}
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tt.want) }) {
				t.Fatalf("problems %v, want one containing %q", problems, tt.want)
			}
		})
	}
}
