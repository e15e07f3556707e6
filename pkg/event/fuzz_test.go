package event

import (
	"errors"
	"testing"
)

func FuzzDecode(f *testing.F) {
	for _, dir := range []string{"valid", "invalid"} {
		for _, file := range testdataFiles(f, dir) {
			f.Add(readFile(f, file))
		}
	}
	for _, seed := range []string{
		``,
		`{}`,
		`null`,
		`[]`,
		`{"specversion":"1.0"}`,
		`{"specversion":"1.0","id":"0196a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b","source":"s","type":"typing","subject":"r",` +
			`"time":"0000-01-01T00:30:00+01:00","datacontenttype":"application/json","data":{}}`,
		`{"specversion":"1.0","id":"0196a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b","source":"s","type":"typing","subject":"r",` +
			`"time":"9999-12-31T23:59:59-01:00","datacontenttype":"application/json","data":{"a":"<\u2028>"}}`,
		// Invalid UTF-8 in an attribute and uppercase hex in the id.
		"{\"specversion\":\"1.0\",\"id\":\"0196A1B2-C3D4-7E5F-8A6B-7C8D9E0F1A2B\",\"source\":\"s\",\"type\":\"t\",\"subject\":\"\xff\"," +
			`"time":"2025-01-01T00:00:00Z","datacontenttype":"application/json","data":{"k":[1,2,{"n":null}]} }`,
	} {
		f.Add([]byte(seed))
	}

	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Decode(b)
		if err != nil {
			if !isTypedError(err) {
				t.Fatalf("Decode error %v is not one of the package's typed errors", err)
			}
			return
		}
		if _, err := DecodePayload(e); err != nil && !isTypedError(err) {
			t.Fatalf("DecodePayload error %v is not one of the package's typed errors", err)
		}

		out, err := Encode(e)
		if err != nil {
			t.Fatalf("Encode of a decoded envelope failed: %v\ninput: %q", err, b)
		}
		again, err := Decode(out)
		if err != nil {
			t.Fatalf("Decode(Encode(e)) failed: %v\nencoded: %s", err, out)
		}
		if !sameEnvelope(e, again) {
			t.Fatalf("round trip changed the envelope:\nfirst:  %+v\nsecond: %+v", e, again)
		}
		if twice, err := Encode(again); err != nil || string(twice) != string(out) {
			t.Fatalf("encoding is not stable: %s vs %s (%v)", out, twice, err)
		}

		m, err := ParseHeaders(Headers(e))
		if err != nil {
			t.Fatalf("ParseHeaders(Headers(e)): %v", err)
		}
		if m.ID != e.ID || m.Type != e.Type || m.Source != e.Source || m.Subject != e.Subject ||
			!m.Time.Equal(e.Time) || m.TraceParent != e.TraceParent {
			t.Fatalf("header round trip = %+v, envelope %+v", m, e)
		}
	})
}

func isTypedError(err error) bool {
	for _, target := range []error{ErrMalformed, ErrUnknownType, ErrInvalid, ErrUnsupportedVersion, ErrTypeMismatch} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}
