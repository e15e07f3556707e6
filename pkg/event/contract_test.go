package event

import (
	"bytes"
	"reflect"
	"slices"
	"sort"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

func TestSamplesCoverRegistry(t *testing.T) {
	var sampled []string
	for typ := range samplePayloads() {
		sampled = append(sampled, typ)
	}
	sort.Strings(sampled)
	if got := Types(); !slices.Equal(got, sampled) {
		t.Fatalf("Types() = %v, samples cover %v", got, sampled)
	}
}

// Every registered type must have a data schema whose $id is the type's
// dataschema, plus the envelope schema; nothing else may live in events/.
func TestSchemaFilesMatchRegistry(t *testing.T) {
	s := loadSchemas(t)
	want := []string{"envelope.v1.schema.json"}
	for _, typ := range Types() {
		want = append(want, typ+".v1.schema.json")
	}
	sort.Strings(want)
	var got []string
	for name, doc := range s.docs {
		got = append(got, name)
		if name == "envelope.v1.schema.json" {
			continue
		}
		typ := name[:len(name)-len(".v1.schema.json")]
		if info, ok := registry[typ]; ok && doc["$id"] != info.schema {
			t.Errorf("%s: $id = %v, want %s", name, doc["$id"], info.schema)
		}
	}
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Fatalf("schema files = %v, want %v", got, want)
	}
}

func TestContractNewEncodeValidatesAgainstSchemas(t *testing.T) {
	s := loadSchemas(t)
	for typ, p := range samplePayloads() {
		t.Run(typ, func(t *testing.T) {
			e := mustNew(t, p, WithTraceParent(testTraceParent), WithCorrelation("corr-1"))
			b := mustEncode(t, e)

			inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.envelope.Validate(inst); err != nil {
				t.Fatalf("envelope schema rejects %s:\n%v", b, err)
			}
			dataSchema := s.byID[e.DataSchema]
			if dataSchema == nil {
				t.Fatalf("dataschema %q names no schema in schemas/events", e.DataSchema)
			}
			if err := dataSchema.Validate(inst.(map[string]any)["data"]); err != nil {
				t.Fatalf("data schema rejects %s:\n%v", e.Data, err)
			}

			got, err := Decode(b)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !sameEnvelope(got, e) {
				t.Fatalf("Decode(Encode(e)) = %+v, want %+v", got, e)
			}
			back, err := DecodePayload(got)
			if err != nil {
				t.Fatalf("DecodePayload: %v", err)
			}
			if !reflect.DeepEqual(back, p) {
				t.Fatalf("payload round trip = %#v, want %#v", back, p)
			}
		})
	}
}

// The schema's "required" list must be exactly the Go fields that are always
// written (no omitempty), and its properties exactly the Go fields, so that
// neither side documents something the other does not have.
func TestSchemaFieldsMatchGoStructs(t *testing.T) {
	s := loadSchemas(t)
	for _, typ := range Types() {
		t.Run(typ, func(t *testing.T) {
			doc := s.docs[typ+".v1.schema.json"]
			if doc["additionalProperties"] != true {
				t.Errorf("additionalProperties = %v, want true for forward compatibility", doc["additionalProperties"])
			}
			var goRequired, goAll []string
			for _, f := range registry[typ].fields {
				goAll = append(goAll, f.name)
				if f.required {
					goRequired = append(goRequired, f.name)
				}
			}
			var schemaRequired, schemaAll []string
			for _, r := range doc["required"].([]any) {
				schemaRequired = append(schemaRequired, r.(string))
			}
			for name := range doc["properties"].(map[string]any) {
				schemaAll = append(schemaAll, name)
			}
			for _, l := range [][]string{goRequired, goAll, schemaRequired, schemaAll} {
				sort.Strings(l)
			}
			if !slices.Equal(schemaRequired, goRequired) {
				t.Errorf("schema required = %v, Go always writes %v", schemaRequired, goRequired)
			}
			if !slices.Equal(schemaAll, goAll) {
				t.Errorf("schema properties = %v, Go fields = %v", schemaAll, goAll)
			}
		})
	}
}

// Dropping any required field must be rejected by both the decoder and the
// schema, and the decoder must name the field.
func TestMissingRequiredFieldRejectedByGoAndSchema(t *testing.T) {
	s := loadSchemas(t)
	for typ, p := range samplePayloads() {
		e := mustNew(t, p)
		for _, f := range registry[typ].fields {
			if !f.required {
				continue
			}
			t.Run(typ+"/"+f.name, func(t *testing.T) {
				broken := withData(t, e, func(m map[string]any) { delete(m, f.name) })
				_, err := DecodePayload(broken)
				assertFieldErr(t, err, "data."+f.name)
				if err := s.validateDoc(mustEncode(t, broken)); err == nil {
					t.Fatal("schema accepts the event without " + f.name)
				}
			})
		}
	}
}

// Rules beyond presence (enums, bounds, conditional fields) are written
// twice, in Validate and in the schema; this table keeps the two in step.
func TestValidateAndSchemaAgree(t *testing.T) {
	s := loadSchemas(t)
	samples := samplePayloads()
	tests := []struct {
		name  string
		typ   string
		edit  func(map[string]any)
		field string // expected FieldError field; "" means valid
	}{
		{"submitted message", TypeMessageSubmitted, func(map[string]any) {}, ""},
		{"submitted message empty text", TypeMessageSubmitted, func(m map[string]any) { m["text"] = "" }, "data.text"},
		{"submitted delete without text", TypeMessageSubmitted, func(m map[string]any) { m["kind"] = "delete"; m["text"] = ""; m["target_seq"] = 3 }, ""},
		{"submitted edit without target", TypeMessageSubmitted, func(m map[string]any) { m["kind"] = "edit" }, "data.target_seq"},
		{"submitted delete target zero", TypeMessageSubmitted, func(m map[string]any) { m["kind"] = "delete"; m["target_seq"] = 0 }, "data.target_seq"},
		{"submitted bad kind", TypeMessageSubmitted, func(m map[string]any) { m["kind"] = "join" }, "data.kind"},
		{"submitted empty room", TypeMessageSubmitted, func(m map[string]any) { m["room_id"] = "" }, "data.room_id"},
		{"submitted bad time", TypeMessageSubmitted, func(m map[string]any) { m["submitted_at"] = "noon" }, "data.submitted_at"},
		{"membership bad change", TypeMembershipChanged, func(m map[string]any) { m["change"] = "promoted" }, "data.change"},
		{"membership role", TypeMembershipChanged, func(m map[string]any) { m["change"] = "role"; m["role"] = "admin" }, ""},
		{"membership role without role", TypeMembershipChanged, func(m map[string]any) { m["change"] = "role" }, "data.role"},
		{"membership owner without role", TypeMembershipChanged, func(m map[string]any) { m["change"] = "owner" }, "data.role"},
		{"membership bad role", TypeMembershipChanged, func(m map[string]any) { m["change"] = "role"; m["role"] = "king" }, "data.role"},
		{"membership muted", TypeMembershipChanged, func(m map[string]any) { m["change"] = "muted" }, ""},
		{"membership settings", TypeMembershipChanged, func(m map[string]any) { m["change"] = "settings"; m["settings"] = map[string]any{"topic": ""} }, ""},
		{"membership settings without settings", TypeMembershipChanged, func(m map[string]any) { m["change"] = "settings" }, "data.settings"},
		{"membership settings empty", TypeMembershipChanged, func(m map[string]any) { m["change"] = "settings"; m["settings"] = map[string]any{} }, "data.settings"},
		{"membership settings empty name", TypeMembershipChanged, func(m map[string]any) { m["change"] = "settings"; m["settings"] = map[string]any{"name": ""} }, "data.settings"},
		{"stored room change", TypeMessageStored, roomChange(map[string]any{"change": "role", "target": "u-bob", "target_name": "bob", "role": "admin"}), ""},
		{"stored room change settings", TypeMessageStored, roomChange(map[string]any{"change": "settings", "settings": map[string]any{"private": false}}), ""},
		{"stored room change without change", TypeMessageStored, roomChange(map[string]any{}), "data.change"},
		{"stored room change bad change", TypeMessageStored, roomChange(map[string]any{"change": "joined"}), "data.change"},
		{"stored room change role without role", TypeMessageStored, roomChange(map[string]any{"change": "owner", "target": "u-bob"}), "data.role"},
		{"stored room change settings without settings", TypeMessageStored, roomChange(map[string]any{"change": "settings"}), "data.settings"},
		{"stored seq zero", TypeMessageStored, func(m map[string]any) { m["seq"] = 0 }, "data.seq"},
		{"stored seq fraction", TypeMessageStored, func(m map[string]any) { m["seq"] = 1.5 }, "data.seq"},
		{"stored dm without members", TypeMessageStored, func(m map[string]any) { delete(m, "members") }, "data.members"},
		{"stored dm empty member", TypeMessageStored, func(m map[string]any) { m["members"] = []any{"u-alice", ""} }, "data.members"},
		{"stored members wrong type", TypeMessageStored, func(m map[string]any) { m["members"] = "u-alice" }, "data.members"},
		{"stored room without members", TypeMessageStored, func(m map[string]any) { m["room_kind"] = "room"; delete(m, "members") }, ""},
		{"stored join without text", TypeMessageStored, func(m map[string]any) { m["kind"] = "join"; delete(m, "text"); delete(m, "target_seq") }, ""},
		{"stored edit without text", TypeMessageStored, func(m map[string]any) { delete(m, "text") }, "data.text"},
		{"stored bad room kind", TypeMessageStored, func(m map[string]any) { m["room_kind"] = "channel" }, "data.room_kind"},
		{"stored unknown field", TypeMessageStored, func(m map[string]any) { m["reactions"] = map[string]any{"+1": 2} }, ""},
		{"typing bad state", TypeTyping, func(m map[string]any) { m["state"] = "paused" }, "data.state"},
		{"presence negative connections", TypePresenceChanged, func(m map[string]any) { m["connections"] = -1 }, "data.connections"},
		{"presence bad status", TypePresenceChanged, func(m map[string]any) { m["status"] = "away" }, "data.status"},
		{"subscription not bool", TypeSubscriptionChanged, func(m map[string]any) { m["subscribed"] = "yes" }, "data.subscribed"},
		{"subscription false", TypeSubscriptionChanged, func(m map[string]any) { m["subscribed"] = false }, ""},
		{"heartbeat negative connections", TypeGatewayHeartbeat, func(m map[string]any) { m["connections"] = -3 }, "data.connections"},
		{"notification bad reason", TypeNotificationCreated, func(m map[string]any) { m["reason"] = "spam" }, "data.reason"},
		{"notification empty preview", TypeNotificationCreated, func(m map[string]any) { m["preview"] = "" }, ""},
		{"notification seq zero", TypeNotificationCreated, func(m map[string]any) { m["seq"] = 0 }, "data.seq"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := withData(t, mustNew(t, samples[tt.typ]), tt.edit)
			_, goErr := DecodePayload(e)
			schemaErr := s.validateDoc(mustEncode(t, e))
			if tt.field == "" {
				if goErr != nil || schemaErr != nil {
					t.Fatalf("want valid; DecodePayload: %v; schema: %v", goErr, schemaErr)
				}
				return
			}
			assertFieldErr(t, goErr, tt.field)
			if schemaErr == nil {
				t.Fatalf("schema accepts data that Validate rejects (%s)", tt.field)
			}
		})
	}
}

func TestSchemasAreDraft2020(t *testing.T) {
	s := loadSchemas(t)
	for name, doc := range s.docs {
		if doc["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
			t.Errorf("%s: $schema = %v", name, doc["$schema"])
		}
	}
}

// roomChange turns a stored sample into a room_change entry with fields.
func roomChange(fields map[string]any) func(map[string]any) {
	return func(m map[string]any) {
		m["kind"] = "room_change"
		delete(m, "text")
		delete(m, "target_seq")
		for k, v := range fields {
			m[k] = v
		}
	}
}
