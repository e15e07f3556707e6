package event

import (
	"bytes"
	"encoding/json"
	"reflect"
	"unicode/utf8"
)

// Every consumer decodes every record it reads, so decoding is on the delivery path of
// each message several times over. Going through map[string]json.RawMessage and one
// json.Unmarshal per attribute validated and scanned the same bytes three or four times
// and made about 150 allocations per event. The reads below validate a document once
// and then slice it: they give exactly what that map gave (members by exact key, the
// last of duplicated keys, values as raw bytes) and leave every value they cannot take
// the short way to encoding/json, so errors and odd inputs behave as before.

// member is one "name": value pair of a JSON object; raw is the value's bytes.
type member struct {
	name []byte
	raw  []byte
}

// object is the members of one JSON object, in document order.
type object []member

// parseObject splits a JSON object into its members. It reports false when b is not
// valid JSON or not an object, for the caller to let encoding/json explain why.
func parseObject(b []byte) (object, bool) {
	if !json.Valid(b) {
		return nil, false
	}
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, false
	}
	obj := make(object, 0, 16)
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return obj, true
	}
	for i < len(b) {
		end := stringEnd(b, i)
		name := b[i+1 : end-1]
		if bytes.IndexByte(name, '\\') >= 0 {
			var s string
			if json.Unmarshal(b[i:end], &s) != nil {
				return nil, false
			}
			name = []byte(s)
		}
		i = skipSpace(b, skipSpace(b, end)+1) // past the colon
		vend := valueEnd(b, i)
		obj = append(obj, member{name: name, raw: b[i:vend]})
		i = skipSpace(b, vend)
		if i >= len(b) || b[i] == '}' {
			break
		}
		i = skipSpace(b, i+1) // past the comma
	}
	return obj, true
}

// get returns the value named name; a name given twice means its last value, as
// encoding/json would have it.
func (o object) get(name string) ([]byte, bool) {
	for i := len(o) - 1; i >= 0; i-- {
		if string(o[i].name) == name {
			return o[i].raw, true
		}
	}
	return nil, false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index just past the string starting at b[i] (a quote).
func stringEnd(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// valueEnd returns the index just past the value starting at b[i] of a valid document.
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = stringEnd(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(b)
	default: // a number, true, false or null
		for i < len(b) {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
			i++
		}
		return len(b)
	}
}

// appendCompact appends the valid JSON value raw to dst without insignificant space,
// as json.Compact writes it; most values have none, and are only copied.
func appendCompact(dst, raw []byte) ([]byte, error) {
	for i := 0; i < len(raw); i++ {
		switch raw[i] {
		case '"':
			i = stringEnd(raw, i) - 1
		case ' ', '\t', '\n', '\r':
			buf := bytes.NewBuffer(dst)
			if err := json.Compact(buf, raw); err != nil {
				return nil, err
			}
			return buf.Bytes(), nil
		}
	}
	return append(dst, raw...), nil
}

// plainString is the JSON string raw as a Go string when it holds no escapes and only
// valid UTF-8, where decoding is a copy; false sends the caller to encoding/json.
func plainString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	s := raw[1 : len(raw)-1]
	if bytes.IndexByte(s, '\\') >= 0 || !utf8.Valid(s) {
		return "", false
	}
	return string(s), true
}

// setPlain stores raw into v the short way where v is a string, integer or boolean with
// no JSON methods of its own and raw says plainly what encoding/json would make of it;
// false leaves v alone for json.Unmarshal.
func setPlain(v reflect.Value, raw []byte) bool {
	switch v.Kind() {
	case reflect.String:
		s, ok := plainString(raw)
		if ok {
			v.SetString(s)
		}
		return ok
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := plainDigits(raw, true)
		if !ok || v.OverflowInt(n) {
			return false
		}
		v.SetInt(n)
		return true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := plainDigits(raw, false)
		if !ok || n < 0 || v.OverflowUint(uint64(n)) {
			return false
		}
		v.SetUint(uint64(n))
		return true
	case reflect.Bool:
		switch string(raw) {
		case "true":
			v.SetBool(true)
			return true
		case "false":
			v.SetBool(false)
			return true
		}
	}
	return false
}

// plainDigits reads an integer of at most 18 digits (which cannot overflow an int64),
// optionally negative; anything else (fractions, exponents, longer numbers) is false.
func plainDigits(raw []byte, signed bool) (int64, bool) {
	digits := raw
	negative := signed && len(raw) > 0 && raw[0] == '-'
	if negative {
		digits = raw[1:]
	}
	if len(digits) == 0 || len(digits) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if negative {
		n = -n
	}
	return n, true
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[interface{ UnmarshalText([]byte) error }]()
)

// plainKind says whether values of t may be set by setPlain: a type that decodes itself
// must be left to encoding/json.
func plainKind(t reflect.Type) bool {
	p := reflect.PointerTo(t)
	return !p.Implements(jsonUnmarshaler) && !p.Implements(textUnmarshaler)
}
