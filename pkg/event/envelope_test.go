package event

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestNewFillsAttributes(t *testing.T) {
	before := time.Now()
	p := samplePayloads()[TypeMessageSubmitted]
	e := mustNew(t, p)

	id, err := uuid.Parse(e.ID)
	if err != nil || id.Version() != 7 {
		t.Errorf("id %q is not a UUIDv7 (err %v)", e.ID, err)
	}
	if e.SpecVersion != "1.0" || e.DataContentType != "application/json" {
		t.Errorf("specversion %q, datacontenttype %q", e.SpecVersion, e.DataContentType)
	}
	if e.Type != TypeMessageSubmitted || e.Subject != "room-general" || e.Source != "kchat/test/unit" {
		t.Errorf("type %q subject %q source %q", e.Type, e.Subject, e.Source)
	}
	if e.DataSchema != "https://kchat.dev/schemas/message.submitted.v1.json" {
		t.Errorf("dataschema %q", e.DataSchema)
	}
	if e.Time.Location() != time.UTC || e.Time.Before(before.Add(-time.Second)) || e.Time.After(time.Now().Add(time.Second)) {
		t.Errorf("time %v is not now in UTC", e.Time)
	}
	if e.CorrelationID != "" || e.CausationID != "" || e.TraceParent != "" {
		t.Errorf("unexpected extensions: %+v", e)
	}
	var raw map[string]any
	if err := json.Unmarshal(e.Data, &raw); err != nil || raw["room_id"] != "room-general" {
		t.Errorf("data %s (err %v)", e.Data, err)
	}

	// Ids must differ and sort by creation, which consumers rely on for
	// cheap ordering in logs.
	next := mustNew(t, p)
	if next.ID <= e.ID {
		t.Errorf("ids not increasing: %s then %s", e.ID, next.ID)
	}
}

func TestNewOptions(t *testing.T) {
	p := samplePayloads()[TypeTyping]
	parent := mustNew(t, samplePayloads()[TypeMessageSubmitted], WithTraceParent(testTraceParent))
	rooted := mustNew(t, p, WithCorrelation("flow-9"))
	at := time.Date(2030, 1, 2, 3, 4, 5, 6, time.FixedZone("CET", 3600))

	tests := []struct {
		name  string
		opts  []Option
		check func(Envelope) bool
	}{
		{"correlation", []Option{WithCorrelation("flow-1")}, func(e Envelope) bool { return e.CorrelationID == "flow-1" }},
		{"causation starts a correlation at the parent", []Option{WithCausation(parent)}, func(e Envelope) bool {
			return e.CausationID == parent.ID && e.CorrelationID == parent.ID && e.TraceParent == testTraceParent
		}},
		{"causation keeps the flow's correlation", []Option{WithCausation(rooted)}, func(e Envelope) bool {
			return e.CausationID == rooted.ID && e.CorrelationID == "flow-9" && e.TraceParent == ""
		}},
		{"subject", []Option{WithSubject("u-bob")}, func(e Envelope) bool { return e.Subject == "u-bob" }},
		{"traceparent", []Option{WithTraceParent(testTraceParent)}, func(e Envelope) bool { return e.TraceParent == testTraceParent }},
		{"time is normalised to UTC", []Option{WithTime(at)}, func(e Envelope) bool { return e.Time.Equal(at) && e.Time.Location() == time.UTC }},
		{"nil option is ignored", []Option{nil}, func(e Envelope) bool { return e.Subject == "room-general" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustNew(t, p, tt.opts...)
			if !tt.check(e) {
				t.Fatalf("unexpected envelope %+v", e)
			}
		})
	}
}

// foreignPayload claims a registered type without being its Go type.
type foreignPayload struct{ Room string }

func (foreignPayload) EventType() string      { return TypeTyping }
func (f foreignPayload) EventSubject() string { return f.Room }
func (foreignPayload) Validate() error        { return nil }

type unregisteredPayload struct{}

func (unregisteredPayload) EventType() string    { return "room.renamed" }
func (unregisteredPayload) EventSubject() string { return "room-1" }
func (unregisteredPayload) Validate() error      { return nil }

func TestNewRejects(t *testing.T) {
	var nilPtr *Typing
	tests := []struct {
		name  string
		data  Payload
		opts  []Option
		err   error
		field string
	}{
		{"nil payload", nil, nil, ErrInvalid, "data"},
		{"typed nil pointer", nilPtr, nil, ErrInvalid, "data"},
		{"unregistered type", unregisteredPayload{}, nil, ErrUnknownType, ""},
		{"impostor of a registered type", foreignPayload{Room: "r"}, nil, ErrTypeMismatch, ""},
		{"invalid payload", Typing{User: "u", UserName: "U", State: TypingStarted}, nil, ErrInvalid, "data.room_id"},
		{"bad traceparent option", samplePayloads()[TypeTyping], []Option{WithTraceParent("00-abc")}, ErrInvalid, "traceparent"},
		{"empty subject option", samplePayloads()[TypeTyping], []Option{WithSubject("")}, ErrInvalid, "subject"},
		{"zero time option", samplePayloads()[TypeTyping], []Option{WithTime(time.Time{})}, ErrInvalid, "time"},
		{"year beyond RFC 3339", samplePayloads()[TypeTyping], []Option{WithTime(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC))}, ErrInvalid, "time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New("kchat/test/unit", tt.data, tt.opts...)
			if !errors.Is(err, tt.err) {
				t.Fatalf("error = %v, want %v", err, tt.err)
			}
			if tt.field != "" {
				assertFieldErr(t, err, tt.field)
			}
		})
	}
	// A pointer to a registered payload is as good as the value.
	if _, err := New("kchat/test/unit", &Typing{RoomID: "r", User: "u", UserName: "U", State: TypingStopped}); err != nil {
		t.Fatalf("New(*Typing): %v", err)
	}
	if _, err := New("bad source \\", samplePayloads()[TypeTyping]); err == nil {
		t.Fatal("New accepted a source that is not a URI-reference")
	}
}

func TestEncodeRejectsInvalidEnvelopes(t *testing.T) {
	good := mustNew(t, samplePayloads()[TypeTyping])
	tests := []struct {
		name  string
		edit  func(*Envelope)
		err   error
		field string
	}{
		{"zero envelope", func(e *Envelope) { *e = Envelope{} }, ErrInvalid, "specversion"},
		{"specversion 0.3", func(e *Envelope) { e.SpecVersion = "0.3" }, ErrUnsupportedVersion, ""},
		{"uuid v4 id", func(e *Envelope) { e.ID = uuid.NewString() }, ErrInvalid, "id"},
		{"urn id", func(e *Envelope) { e.ID = "urn:uuid:" + good.ID }, ErrInvalid, "id"},
		{"no source", func(e *Envelope) { e.Source = "" }, ErrInvalid, "source"},
		{"no type", func(e *Envelope) { e.Type = "" }, ErrInvalid, "type"},
		{"no subject", func(e *Envelope) { e.Subject = "" }, ErrInvalid, "subject"},
		{"xml content", func(e *Envelope) { e.DataContentType = "application/xml" }, ErrInvalid, "datacontenttype"},
		{"relative dataschema", func(e *Envelope) { e.DataSchema = "typing.v1.json" }, ErrInvalid, "dataschema"},
		{"uppercase traceparent", func(e *Envelope) { e.TraceParent = strings.ToUpper(testTraceParent) }, ErrInvalid, "traceparent"},
		{"zero parent id", func(e *Envelope) { e.TraceParent = testTraceParent[:36] + "0000000000000000-01" }, ErrInvalid, "traceparent"},
		{"no data", func(e *Envelope) { e.Data = nil }, ErrInvalid, "data"},
		{"array data", func(e *Envelope) { e.Data = json.RawMessage(`[1]`) }, ErrInvalid, "data"},
		{"broken data", func(e *Envelope) { e.Data = json.RawMessage(`{"a":`) }, ErrInvalid, "data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := good
			tt.edit(&e)
			_, err := Encode(e)
			if !errors.Is(err, tt.err) {
				t.Fatalf("error = %v, want %v", err, tt.err)
			}
			if tt.field != "" {
				assertFieldErr(t, err, tt.field)
			}
		})
	}
}

func TestEncodeShape(t *testing.T) {
	e := mustNew(t, Typing{RoomID: "r<&>", User: "u", UserName: "U", State: TypingStarted},
		WithTime(time.Date(2025, 5, 1, 12, 0, 0, 500, time.UTC)))
	b := mustEncode(t, e)
	s := string(b)
	for _, want := range []string{
		`"time":"2025-05-01T12:00:00.000000500Z"`, // fixed-width nanoseconds, UTC
		`"room_id":"r<&>"`,                        // no HTML escaping inside data
	} {
		if !strings.Contains(s, want) {
			t.Errorf("encoding lacks %s:\n%s", want, s)
		}
	}
	for _, absent := range []string{"correlationid", "causationid", "traceparent", "\n"} {
		if strings.Contains(s, absent) {
			t.Errorf("encoding contains %q:\n%s", absent, s)
		}
	}
}

func TestDecodeEdgeCases(t *testing.T) {
	valid := string(mustEncode(t, mustNew(t, samplePayloads()[TypeTyping])))
	replace := func(old, new string) string {
		if !strings.Contains(valid, old) {
			t.Fatalf("fixture lacks %s", old)
		}
		return strings.Replace(valid, old, new, 1)
	}
	tests := []struct {
		name  string
		in    string
		err   error
		field string
	}{
		{"valid", valid, nil, ""},
		{"null document", `null`, ErrMalformed, ""},
		{"string document", `"hi"`, ErrMalformed, ""},
		{"trailing garbage", valid + "x", ErrMalformed, ""},
		{"two documents", valid + valid, ErrMalformed, ""},
		{"missing specversion", replace(`"specversion":"1.0",`, ``), ErrInvalid, "specversion"},
		{"numeric specversion", replace(`"specversion":"1.0"`, `"specversion":1.0`), ErrInvalid, "specversion"},
		{"specversion 2.0", replace(`"specversion":"1.0"`, `"specversion":"2.0"`), ErrUnsupportedVersion, ""},
		{"null id", replace(`"id":"`, `"id":null,"x":"`), ErrInvalid, "id"},
		{"empty correlationid", replace(`"specversion"`, `"correlationid":"","specversion"`), ErrInvalid, "correlationid"},
		{"null optional attribute is absent", replace(`"specversion"`, `"traceparent":null,"specversion"`), nil, ""},
		{"unknown extension is ignored", replace(`"specversion"`, `"region":{"nested":true},"specversion"`), nil, ""},
		{"time without zone", replace(`Z"`, `"`), ErrInvalid, "time"},
		{"null data", replace(`"data":{`, `"data":null,"x":{`), ErrInvalid, "data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.in))
			if tt.err == nil {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.err) {
				t.Fatalf("error = %v, want %v", err, tt.err)
			}
			if tt.field != "" {
				assertFieldErr(t, err, tt.field)
			}
		})
	}
}

func TestDecodeNormalises(t *testing.T) {
	in := `{"specversion":"1.0","id":"0196a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b","source":"s","type":"typing",
		"subject":"r","time":"2025-05-01T14:00:00.5+02:00","datacontenttype":"application/json",
		"data": { "room_id" : "r", "user":"u", "user_name":"U", "state":"started" } }`
	e, err := Decode([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if e.Time.Location() != time.UTC || !e.Time.Equal(time.Date(2025, 5, 1, 12, 0, 0, 5e8, time.UTC)) {
		t.Errorf("time = %v, want 12:00:00.5 UTC", e.Time)
	}
	if string(e.Data) != `{"room_id":"r","user":"u","user_name":"U","state":"started"}` {
		t.Errorf("data not compacted: %s", e.Data)
	}
}

func TestAs(t *testing.T) {
	e := mustNew(t, samplePayloads()[TypeMessageStored])

	v, err := As[MessageStored](e)
	if err != nil || v.Seq != 7 {
		t.Fatalf("As[MessageStored] = %+v, %v", v, err)
	}
	ptr, err := As[*MessageStored](e)
	if err != nil || ptr == nil || ptr.Seq != 7 {
		t.Fatalf("As[*MessageStored] = %+v, %v", ptr, err)
	}
	if p, err := As[Payload](e); err != nil || p.EventType() != TypeMessageStored {
		t.Fatalf("As[Payload] = %v, %v", p, err)
	}
	if _, err := As[Typing](e); !errors.Is(err, ErrTypeMismatch) {
		t.Fatalf("As[Typing] error = %v, want ErrTypeMismatch", err)
	}
	if _, err := As[*Typing](e); !errors.Is(err, ErrTypeMismatch) {
		t.Fatalf("As[*Typing] error = %v, want ErrTypeMismatch", err)
	}
	unknown := e
	unknown.Type = "message.reacted"
	if _, err := As[MessageStored](unknown); !errors.Is(err, ErrUnknownType) {
		t.Fatalf("unknown type error = %v, want ErrUnknownType", err)
	}
	broken := withData(t, e, func(m map[string]any) { m["seq"] = -1 })
	_, err = As[MessageStored](broken)
	assertFieldErr(t, err, "data.seq")
}

func TestDecodePayloadMatchesKeysExactly(t *testing.T) {
	e := mustNew(t, samplePayloads()[TypeTyping])
	// encoding/json would accept ROOM_ID for room_id; the contract does not.
	shouted := withData(t, e, func(m map[string]any) { m["ROOM_ID"] = m["room_id"]; delete(m, "room_id") })
	_, err := DecodePayload(shouted)
	assertFieldErr(t, err, "data.room_id")

	// A payload Validate error without FieldError still reads as invalid.
	err = inData(errors.New("opaque"))
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("inData(opaque) = %v, want ErrInvalid", err)
	}
}

func TestTypes(t *testing.T) {
	got := Types()
	want := []string{
		TypeGatewayHeartbeat, TypeMembershipChanged, TypeMessageStored, TypeMessageSubmitted,
		TypeNotificationCreated, TypePresenceChanged, TypeSubscriptionChanged, TypeTyping,
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("Types() = %v, want %v", got, want)
	}
	got[0] = "mutated"
	if Types()[0] == "mutated" {
		t.Fatal("Types exposes the registry's storage")
	}
}
