package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schemaDir is relative to the package directory, where go test runs.
const schemaDir = "../../schemas"

const testTraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// samplePayloads returns one valid value per registered type. It is a
// function rather than a package variable so tests cannot leak mutations
// into each other.
func samplePayloads() map[string]Payload {
	t0 := time.Date(2025, 5, 1, 12, 0, 0, 123456789, time.UTC)
	return map[string]Payload{
		TypeMessageSubmitted: MessageSubmitted{
			RoomID: "room-general", Sender: "u-alice", SenderName: "Alice", ClientMsgID: "c-1",
			Text: "hello", Kind: KindMessage, SubmittedAt: t0,
		},
		TypeMembershipChanged: MembershipChanged{
			RoomID: "room-general", User: "u-bob", UserName: "Bob", Change: ChangeJoined, By: "u-bob", ChangedAt: t0,
		},
		TypeMessageStored: MessageStored{
			RoomID: "dm-u-alice-u-bob", Seq: 7, Kind: KindEdit, MessageID: "0196a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a01",
			Sender: "u-alice", SenderName: "Alice", ClientMsgID: "c-2", Text: "hello again", TargetSeq: 6,
			RoomKind: RoomKindDM, Members: []string{"u-alice", "u-bob"}, SentAt: t0, StoredAt: t0.Add(time.Millisecond),
		},
		TypeTyping: Typing{RoomID: "room-general", User: "u-bob", UserName: "Bob", State: TypingStarted},
		TypePresenceChanged: PresenceChanged{
			User: "u-bob", UserName: "Bob", Status: StatusOffline, GatewayID: "gw-1", Connections: 0, At: t0,
		},
		TypeSubscriptionChanged: SubscriptionChanged{GatewayID: "gw-1", RoomID: "room-general", Subscribed: true, At: t0},
		TypeGatewayHeartbeat: GatewayHeartbeat{
			GatewayID: "gw-1", Addr: "10.0.0.7:8080", StartedAt: t0.Add(-time.Hour), At: t0, Connections: 12,
		},
		TypeNotificationCreated: NotificationCreated{
			NotificationID: "n-1", User: "u-bob", RoomID: "room-general", Seq: 42, Reason: ReasonMention,
			Sender: "u-alice", Preview: "hello @bob", CreatedAt: t0,
		},
	}
}

// schemas holds the compiled event schemas, keyed by $id.
type schemas struct {
	envelope *jsonschema.Schema
	byID     map[string]*jsonschema.Schema
	docs     map[string]map[string]any // decoded documents, keyed by file name
}

func loadSchemas(t testing.TB) schemas {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(schemaDir, "events", "*.schema.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no schemas found in %s/events: %v", schemaDir, err)
	}
	c := jsonschema.NewCompiler()
	// Formats are annotations by default in 2020-12; the contract includes
	// them, so assert them.
	c.AssertFormat()
	s := schemas{byID: map[string]*jsonschema.Schema{}, docs: map[string]map[string]any{}}
	var ids []string
	for _, f := range files {
		doc := readSchemaDoc(t, f)
		id, _ := doc["$id"].(string)
		if id == "" {
			t.Fatalf("%s: missing $id", f)
		}
		if err := c.AddResource(id, doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		s.docs[filepath.Base(f)] = doc
		ids = append(ids, id)
	}
	for _, id := range ids {
		sch, err := c.Compile(id)
		if err != nil {
			t.Fatalf("compile %s: %v", id, err)
		}
		s.byID[id] = sch
	}
	s.envelope = s.byID[schemaBase+"envelope.v1.json"]
	if s.envelope == nil {
		t.Fatal("envelope schema not found")
	}
	return s
}

func readSchemaDoc(t testing.TB, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	m, ok := doc.(map[string]any)
	if !ok {
		t.Fatalf("%s: schema is not an object", path)
	}
	return m
}

// validateDoc checks an encoded envelope against the envelope schema and,
// when the type is registered, against the type's data schema.
func (s schemas) validateDoc(b []byte) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return err
	}
	if err := s.envelope.Validate(inst); err != nil {
		return err
	}
	obj, _ := inst.(map[string]any)
	typ, _ := obj["type"].(string)
	info, ok := registry[typ]
	if !ok {
		return nil
	}
	sch := s.byID[info.schema]
	if sch == nil {
		return errors.New("no data schema for " + typ)
	}
	return sch.Validate(obj["data"])
}

func mustEncode(t testing.TB, e Envelope) []byte {
	t.Helper()
	b, err := Encode(e)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return b
}

func mustNew(t testing.TB, p Payload, opts ...Option) Envelope {
	t.Helper()
	e, err := New("kchat/test/unit", p, opts...)
	if err != nil {
		t.Fatalf("New(%T): %v", p, err)
	}
	return e
}

// assertFieldErr checks err is ErrInvalid carrying a FieldError for field.
func assertFieldErr(t testing.TB, err error, field string) {
	t.Helper()
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("error = %v, want ErrInvalid", err)
	}
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v carries no *FieldError", err)
	}
	if fe.Field != field {
		t.Fatalf("FieldError.Field = %q (%v), want %q", fe.Field, err, field)
	}
}

// withData returns a copy of e whose data has been edited as a JSON object.
func withData(t testing.TB, e Envelope, edit func(map[string]any)) Envelope {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(e.Data, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	e.Data = b
	return e
}

func sameEnvelope(a, b Envelope) bool {
	return a.SpecVersion == b.SpecVersion && a.ID == b.ID && a.Source == b.Source && a.Type == b.Type &&
		a.Time.Equal(b.Time) && a.Subject == b.Subject && a.DataContentType == b.DataContentType &&
		a.DataSchema == b.DataSchema && a.CorrelationID == b.CorrelationID && a.CausationID == b.CausationID &&
		a.TraceParent == b.TraceParent && bytes.Equal(a.Data, b.Data)
}

func testdataFiles(t testing.TB, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", dir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata in %s: %v", dir, err)
	}
	return files
}

func baseName(path string) string {
	return strings.TrimSuffix(filepath.Base(path), ".json")
}
