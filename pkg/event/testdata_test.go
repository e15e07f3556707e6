package event

import (
	"errors"
	"os"
	"testing"
)

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestValidTestdata(t *testing.T) {
	s := loadSchemas(t)
	seen := map[string]bool{}
	for _, f := range testdataFiles(t, "valid") {
		t.Run(baseName(f), func(t *testing.T) {
			b := readFile(t, f)
			e, err := Decode(b)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			p, err := DecodePayload(e)
			if err != nil {
				t.Fatalf("DecodePayload: %v", err)
			}
			if p.EventType() != e.Type {
				t.Fatalf("payload type %s, envelope type %s", p.EventType(), e.Type)
			}
			if p.EventSubject() != e.Subject {
				t.Fatalf("payload subject %q, envelope subject %q", p.EventSubject(), e.Subject)
			}
			if err := s.validateDoc(b); err != nil {
				t.Fatalf("schemas reject an example the decoder accepts:\n%v", err)
			}
			seen[e.Type] = true
		})
	}
	for _, typ := range Types() {
		if !seen[typ] {
			t.Errorf("no example in testdata/valid for %s", typ)
		}
	}
}

func TestInvalidTestdata(t *testing.T) {
	s := loadSchemas(t)
	tests := map[string]struct {
		err   error
		field string // FieldError.Field when err is ErrInvalid
		// schemaOK marks examples the schemas cannot reject: an unknown
		// type is a registry question, not a schema one.
		schemaOK bool
	}{
		"garbage":                {err: ErrMalformed},
		"empty":                  {err: ErrMalformed},
		"truncated":              {err: ErrMalformed},
		"not-an-object":          {err: ErrMalformed},
		"unknown-type":           {err: ErrUnknownType, schemaOK: true},
		"missing-id":             {err: ErrInvalid, field: "id"},
		"bad-id":                 {err: ErrInvalid, field: "id"},
		"bad-specversion":        {err: ErrUnsupportedVersion},
		"missing-data-field":     {err: ErrInvalid, field: "data.room_id"},
		"bad-traceparent":        {err: ErrInvalid, field: "traceparent"},
		"zero-traceparent":       {err: ErrInvalid, field: "traceparent"},
		"wrong-field-type":       {err: ErrInvalid, field: "data.seq"},
		"wrong-attribute-type":   {err: ErrInvalid, field: "subject"},
		"bad-time":               {err: ErrInvalid, field: "time"},
		"data-not-object":        {err: ErrInvalid, field: "data"},
		"missing-data":           {err: ErrInvalid, field: "data"},
		"edit-without-target":    {err: ErrInvalid, field: "data.target_seq"},
		"reaction-without-emoji": {err: ErrInvalid, field: "data.emoji"},
		"attachments-duplicated": {err: ErrInvalid, field: "data.attachments"},
		"bad-enum":               {err: ErrInvalid, field: "data.status"},
		"dm-without-members":     {err: ErrInvalid, field: "data.members"},
	}
	files := testdataFiles(t, "invalid")
	if len(files) != len(tests) {
		t.Errorf("%d files in testdata/invalid, %d expectations", len(files), len(tests))
	}
	for _, f := range files {
		name := baseName(f)
		want, ok := tests[name]
		if !ok {
			t.Errorf("no expectation for testdata/invalid/%s.json", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			b := readFile(t, f)
			e, err := Decode(b)
			if err == nil {
				_, err = DecodePayload(e)
			}
			if !errors.Is(err, want.err) {
				t.Fatalf("error = %v, want %v", err, want.err)
			}
			if want.field != "" {
				assertFieldErr(t, err, want.field)
			}
			if errors.Is(want.err, ErrMalformed) {
				return
			}
			schemaErr := s.validateDoc(b)
			if want.schemaOK != (schemaErr == nil) {
				t.Fatalf("schema validation error = %v, want valid=%v", schemaErr, want.schemaOK)
			}
		})
	}
}
