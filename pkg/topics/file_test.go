package topics_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/kchat/kchat/pkg/topics"
)

func TestParse_valid_file_merges_defaults(t *testing.T) {
	data, err := os.ReadFile("testdata/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f, err := topics.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Topics) != 2 {
		t.Fatalf("got %d topics", len(f.Topics))
	}
	a, s := f.Topics[0], f.Topics[1]
	if a.ReplicationFactor != 3 || a.Configs["min.insync.replicas"] != "2" || a.Configs["retention.ms"] != "3600000" {
		t.Errorf("defaults not merged into a.events: %+v", a)
	}
	if s.ReplicationFactor != 1 || s.Configs["cleanup.policy"] != "compact" || s.Configs["min.insync.replicas"] != "2" {
		t.Errorf("topic override lost in a.state: %+v", s)
	}
}

func TestParse_rejects_bad_files(t *testing.T) {
	cases := []struct {
		name, yaml, want string
	}{
		{"unknown key", "topics:\n  - name: x\n    partition: 3\n", "field partition not found"},
		{"unknown top-level key", "topic:\n  - name: x\n", "field topic not found"},
		{"no topics", "defaults:\n  replication_factor: 3\n", "no topics declared"},
		{"zero partitions", "topics:\n  - name: x\n    partitions: 0\n    replication_factor: 1\n", "partitions must be at least 1"},
		{"missing rf", "topics:\n  - name: x\n    partitions: 1\n", "replication_factor must be at least 1"},
		{"illegal name", "topics:\n  - name: 'a b'\n    partitions: 1\n    replication_factor: 1\n", "illegal name"},
		{"duplicate", "topics:\n  - {name: x, partitions: 1, replication_factor: 1}\n  - {name: x, partitions: 2, replication_factor: 1}\n", "declared twice"},
		{"not yaml", "topics: [\n", "invalid topics file"},
		{"wrong type", "topics:\n  - name: x\n    partitions: many\n", "invalid topics file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := topics.Parse([]byte(tc.yaml))
			if err == nil {
				t.Fatal("expected an error")
			}
			if !errors.Is(err, topics.ErrInvalidFile) {
				t.Errorf("error %v is not ErrInvalidFile", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestLoad_repository_topics_file(t *testing.T) {
	f, err := topics.Load("../../deploy/topics.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{topics.Submitted, topics.Stored, topics.Ephemeral, topics.Deliveries, topics.Subscriptions, topics.Presence, topics.Notifications, topics.DLQ}
	have := map[string]topics.Spec{}
	for _, s := range f.Topics {
		have[s.Name] = s
	}
	for _, n := range want {
		s, ok := have[n]
		if !ok {
			t.Errorf("deploy/topics.yaml lacks %s", n)
			continue
		}
		if s.ReplicationFactor != 3 || s.Configs["min.insync.replicas"] != "2" {
			t.Errorf("%s: rf=%d min.isr=%q, want 3 and 2", n, s.ReplicationFactor, s.Configs["min.insync.replicas"])
		}
	}
	for _, n := range []string{topics.Subscriptions, topics.Presence} {
		if have[n].Configs["cleanup.policy"] != "compact" {
			t.Errorf("%s holds latest state and must be compacted", n)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, p := range []string{"testdata/valid.yaml", "../../deploy/topics.yaml"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("topics:\n  - name: x\n    partitions: -1\n"))
	f.Add([]byte("\x00\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := topics.Parse(data)
		if err != nil {
			if !errors.Is(err, topics.ErrInvalidFile) {
				t.Fatalf("error not typed: %v", err)
			}
			return
		}
		for _, s := range file.Topics {
			if s.Partitions < 1 || s.ReplicationFactor < 1 || s.Name == "" {
				t.Fatalf("accepted an invalid spec: %+v", s)
			}
		}
	})
}
