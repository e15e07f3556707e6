package event

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"
)

// schemaBase is where the data schemas in schemas/events are published; a
// type's dataschema is schemaBase + type + ".v1.json".
const schemaBase = "https://kchat.dev/schemas/"

// typeInfo describes one registered payload type.
type typeInfo struct {
	name   string
	schema string
	goType reflect.Type
	fields []fieldInfo
}

// fieldInfo is one json field of a payload struct. Fields without
// omitempty are always written, so they are required to be present when
// reading; the JSON Schemas' "required" lists say the same.
type fieldInfo struct {
	name     string
	index    int
	required bool
	expected string // human description of the JSON value, for errors
	plain    bool   // setPlain may decode it
}

// registry is built once at start-up and only read afterwards.
var registry = newRegistry(
	MessageSubmitted{},
	MembershipChanged{},
	MessageStored{},
	Typing{},
	PresenceChanged{},
	SubscriptionChanged{},
	GatewayHeartbeat{},
	NotificationCreated{},
)

func newRegistry(samples ...Payload) map[string]typeInfo {
	r := make(map[string]typeInfo, len(samples))
	for _, p := range samples {
		t := reflect.TypeOf(p)
		name := p.EventType()
		if _, dup := r[name]; dup {
			panic("event: type registered twice: " + name)
		}
		r[name] = typeInfo{
			name:   name,
			schema: schemaBase + name + ".v1.json",
			goType: t,
			fields: fieldsOf(t),
		}
	}
	return r
}

func fieldsOf(t reflect.Type) []fieldInfo {
	var fields []fieldInfo
	for i := range t.NumField() {
		f := t.Field(i)
		tag, ok := f.Tag.Lookup("json")
		if !ok || tag == "-" || !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		fields = append(fields, fieldInfo{
			name:     name,
			index:    i,
			required: !slices.Contains(strings.Split(opts, ","), "omitempty"),
			expected: describeType(f.Type),
			plain:    plainKind(f.Type),
		})
	}
	return fields
}

func describeType(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[time.Time]():
		return "an RFC 3339 timestamp"
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() == reflect.Bool:
		return "a boolean"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "an integer"
	case t.Kind() == reflect.Pointer:
		return describeType(t.Elem())
	case t.Kind() == reflect.Struct:
		return "an object"
	case t.Kind() == reflect.Slice:
		return "an array of " + strings.TrimPrefix(strings.TrimPrefix(describeType(t.Elem()), "a "), "an ") + "s"
	default:
		return "a " + t.Kind().String()
	}
}

// Types returns the registered event types in lexical order.
func Types() []string {
	types := make([]string, 0, len(registry))
	for name := range registry {
		types = append(types, name)
	}
	slices.Sort(types)
	return types
}

// lookup finds the registration of a payload handed to New. It refuses
// payloads that merely claim a registered type, because their JSON would not
// match the schema consumers validate against.
func lookup(p Payload) (typeInfo, error) {
	if p == nil {
		return typeInfo{}, fieldErr("data", "is required")
	}
	v := reflect.ValueOf(p)
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return typeInfo{}, fieldErr("data", "is required")
		}
		v = v.Elem()
	}
	name := p.EventType()
	info, ok := registry[name]
	if !ok {
		return typeInfo{}, fmt.Errorf("%w: %q", ErrUnknownType, name)
	}
	if info.goType != v.Type() {
		return typeInfo{}, fmt.Errorf("%w: %s is registered as %s, not %s", ErrTypeMismatch, name, info.goType, v.Type())
	}
	return info, nil
}

// DecodePayload interprets e.Data according to e.Type and validates it. The
// result holds a value of the registered struct type, e.g. MessageStored
// (not a pointer). Unknown data fields are ignored so that producers can add
// optional fields first; missing required fields and wrongly typed fields are
// reported as *FieldError named "data.<field>".
func DecodePayload(e Envelope) (Payload, error) {
	info, ok := registry[e.Type]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownType, e.Type)
	}
	v := reflect.New(info.goType).Elem()
	if err := decodeFields(e.Data, v, info.fields); err != nil {
		return nil, err
	}
	p, ok := v.Interface().(Payload)
	if !ok {
		return nil, fmt.Errorf("%w: %s does not implement Payload", ErrUnknownType, info.goType)
	}
	if err := p.Validate(); err != nil {
		return nil, inData(err)
	}
	return p, nil
}

// decodeFields decodes field by field instead of with one json.Unmarshal so
// that keys match exactly (encoding/json matches case-insensitively), a
// missing field can be told apart from a zero value, and an error can name
// the offending field.
func decodeFields(data json.RawMessage, v reflect.Value, fields []fieldInfo) error {
	obj, ok := parseObject(data)
	if !ok {
		return fieldErr("data", "must be a JSON object")
	}
	for _, f := range fields {
		raw, ok := obj.get(f.name)
		if !ok || isNull(raw) {
			if f.required {
				return fieldErr("data."+f.name, "is required")
			}
			continue
		}
		field := v.Field(f.index)
		if f.plain && setPlain(field, raw) {
			continue
		}
		if err := json.Unmarshal(raw, field.Addr().Interface()); err != nil {
			return fieldErr("data."+f.name, "must be "+f.expected)
		}
	}
	return nil
}

// As decodes e's payload into T, which may be the registered struct type or
// a pointer to it. It fails with ErrTypeMismatch when e.Type is registered
// for a different type, so a consumer can switch on types without decoding
// twice.
func As[T Payload](e Envelope) (T, error) {
	var zero T
	info, ok := registry[e.Type]
	if !ok {
		return zero, fmt.Errorf("%w: %q", ErrUnknownType, e.Type)
	}
	want := reflect.TypeFor[T]()
	switch {
	case want == info.goType:
	case want.Kind() == reflect.Pointer && want.Elem() == info.goType:
	case want.Kind() == reflect.Interface && info.goType.Implements(want):
	default:
		return zero, fmt.Errorf("%w: %s events hold %s, not %s", ErrTypeMismatch, e.Type, info.goType, want)
	}
	p, err := DecodePayload(e)
	if err != nil {
		return zero, err
	}
	if t, ok := p.(T); ok {
		return t, nil
	}
	ptr := reflect.New(info.goType)
	ptr.Elem().Set(reflect.ValueOf(p))
	t, ok := ptr.Interface().(T)
	if !ok {
		return zero, fmt.Errorf("%w: %s events hold %s, not %s", ErrTypeMismatch, e.Type, info.goType, want)
	}
	return t, nil
}
