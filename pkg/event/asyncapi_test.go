package event

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func loadAsyncAPI(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(schemaDir, "asyncapi.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("asyncapi.yaml: %v", err)
	}
	return doc
}

// pointer resolves a local JSON pointer such as "#/components/messages/x".
func pointer(doc map[string]any, ref string) (any, bool) {
	var cur any = doc
	for _, tok := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[tok]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// deref follows local $ref objects until it reaches a definition.
func deref(t *testing.T, doc map[string]any, v any) map[string]any {
	t.Helper()
	for range 10 {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("expected an object, got %T", v)
		}
		ref, ok := m["$ref"].(string)
		if !ok || !strings.HasPrefix(ref, "#/") {
			return m
		}
		if v, ok = pointer(doc, ref); !ok {
			t.Fatalf("unresolvable $ref %s", ref)
		}
	}
	t.Fatal("$ref chain too long")
	return nil
}

func TestAsyncAPIRefsResolve(t *testing.T) {
	doc := loadAsyncAPI(t)
	if doc["asyncapi"] != "3.0.0" {
		t.Fatalf("asyncapi = %v, want 3.0.0", doc["asyncapi"])
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch n := v.(type) {
		case map[string]any:
			if ref, ok := n["$ref"].(string); ok {
				if strings.HasPrefix(ref, "#/") {
					if _, ok := pointer(doc, ref); !ok {
						t.Errorf("%s: $ref %s does not resolve", path, ref)
					}
				} else if _, err := os.Stat(filepath.Join(schemaDir, strings.SplitN(ref, "#", 2)[0])); err != nil {
					t.Errorf("%s: $ref %s: %v", path, ref, err)
				}
			}
			for k, c := range n {
				walk(path+"/"+k, c)
			}
		case []any:
			for _, c := range n {
				walk(path+"/[]", c)
			}
		}
	}
	walk("#", doc)
}

// The topology the services are built around; a change here is a change to
// every service, so it must be deliberate.
func TestAsyncAPIChannels(t *testing.T) {
	want := map[string]struct {
		types   []string
		compact bool
	}{
		"chat.submitted":     {types: []string{TypeMembershipChanged, TypeMessageSubmitted}},
		"chat.stored":        {types: []string{TypeMessageStored}},
		"chat.ephemeral":     {types: []string{TypeTyping}},
		"chat.deliveries":    {types: []string{TypeMessageStored, TypeNotificationCreated, TypePresenceChanged, TypeTyping}},
		"chat.subscriptions": {types: []string{TypeSubscriptionChanged}, compact: true},
		"chat.presence":      {types: []string{TypeGatewayHeartbeat, TypePresenceChanged}, compact: true},
		"chat.notifications": {types: []string{TypeNotificationCreated}},
		"chat.dlq":           {types: nil},
	}
	doc := loadAsyncAPI(t)
	channels := doc["channels"].(map[string]any)
	described := map[string]bool{}
	for id, ch := range channels {
		c := deref(t, doc, ch)
		addr, _ := c["address"].(string)
		w, ok := want[addr]
		if !ok {
			t.Errorf("channel %s has unexpected address %q", id, addr)
			continue
		}
		described[addr] = true

		var types []string
		for _, m := range c["messages"].(map[string]any) {
			msg := deref(t, doc, m)
			payload := deref(t, doc, msg["payload"])
			typ, dataRef := eventPayload(payload)
			if typ == "" {
				continue // the dead letter carries raw bytes
			}
			types = append(types, typ)
			if msg["name"] != typ {
				t.Errorf("%s: message named %v carries %s", addr, msg["name"], typ)
			}
			if wantRef := "./events/" + typ + ".v1.schema.json"; dataRef != wantRef {
				t.Errorf("%s: %s data $ref = %q, want %q", addr, typ, dataRef, wantRef)
			}
		}
		sort.Strings(types)
		if !slices.Equal(types, w.types) {
			t.Errorf("%s carries %v, want %v", addr, types, w.types)
		}

		policy, _ := pointer(c, "#/bindings/kafka/topicConfiguration/cleanup.policy")
		if compact := slices.Contains(stringList(policy), "compact"); compact != w.compact {
			t.Errorf("%s: cleanup.policy %v, want compacted=%v", addr, policy, w.compact)
		}
	}
	for addr := range want {
		if !described[addr] {
			t.Errorf("no channel for %s", addr)
		}
	}
}

// eventPayload reads the envelope-plus-data pattern used for every event
// message: allOf[envelope, {type: {const}, data: {$ref}}].
func eventPayload(payload map[string]any) (typ, dataRef string) {
	all, _ := payload["allOf"].([]any)
	for _, part := range all {
		p, _ := part.(map[string]any)
		c, _ := pointer(p, "#/properties/type/const")
		r, _ := pointer(p, "#/properties/data/$ref")
		if s, ok := c.(string); ok {
			typ = s
			dataRef, _ = r.(string)
		}
	}
	return typ, dataRef
}

func TestAsyncAPIHeaders(t *testing.T) {
	doc := loadAsyncAPI(t)

	ce, _ := pointer(doc, "#/components/schemas/cloudEventHeaders/properties")
	e := mustNew(t, samplePayloads()[TypeTyping], WithTraceParent(testTraceParent))
	var documented []string
	for k := range ce.(map[string]any) {
		documented = append(documented, k)
	}
	var written []string
	for _, h := range Headers(e) {
		written = append(written, h.Key)
	}
	sort.Strings(documented)
	sort.Strings(written)
	if !slices.Equal(documented, written) {
		t.Errorf("cloudEventHeaders documents %v, Headers writes %v", documented, written)
	}

	dlq, _ := pointer(doc, "#/components/schemas/deadLetterHeaders/required")
	want := []string{"dlq_attempts", "dlq_offset", "dlq_partition", "dlq_reason", "dlq_topic"}
	got := stringList(dlq)
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Errorf("dead letter headers %v, want %v", got, want)
	}
}
