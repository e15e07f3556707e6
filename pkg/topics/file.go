// Package topics declares Kafka topics as code and reconciles a live cluster with the declaration.
package topics

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"

	"gopkg.in/yaml.v3"
)

// ErrInvalidFile wraps every problem found in a topics file.
var ErrInvalidFile = errors.New("invalid topics file")

// Spec is the desired state of one topic.
type Spec struct {
	Name              string            `yaml:"name"`
	Description       string            `yaml:"description"`
	Partitions        int               `yaml:"partitions"`
	ReplicationFactor int               `yaml:"replication_factor"`
	Configs           map[string]string `yaml:"configs"`
}

// File is a parsed topics file with defaults already merged into every topic.
type File struct {
	Topics []Spec
}

type rawFile struct {
	Defaults struct {
		ReplicationFactor int               `yaml:"replication_factor"`
		Configs           map[string]string `yaml:"configs"`
	} `yaml:"defaults"`
	Topics []Spec `yaml:"topics"`
}

// Kafka's own rule for legal topic names.
var topicName = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

// Load reads and validates a topics file.
func Load(path string) (File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return File{}, fmt.Errorf("cannot read topics file: %w", err)
	}
	f, err := Parse(data)
	if err != nil {
		return File{}, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Parse decodes a topics file strictly: an unknown key is an error, because a typo
// (say "partition:") would otherwise silently fall back to a default.
func Parse(data []byte) (File, error) {
	var raw rawFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&raw); err != nil {
		return File{}, fmt.Errorf("%w: %v", ErrInvalidFile, err)
	}
	if len(raw.Topics) == 0 {
		return File{}, fmt.Errorf("%w: no topics declared", ErrInvalidFile)
	}
	seen := map[string]bool{}
	out := File{Topics: make([]Spec, 0, len(raw.Topics))}
	for i, t := range raw.Topics {
		if !topicName.MatchString(t.Name) {
			return File{}, fmt.Errorf("%w: topic #%d: illegal name %q", ErrInvalidFile, i+1, t.Name)
		}
		if seen[t.Name] {
			return File{}, fmt.Errorf("%w: topic %s declared twice", ErrInvalidFile, t.Name)
		}
		seen[t.Name] = true
		if t.Partitions < 1 {
			return File{}, fmt.Errorf("%w: topic %s: partitions must be at least 1, got %d", ErrInvalidFile, t.Name, t.Partitions)
		}
		if t.ReplicationFactor == 0 {
			t.ReplicationFactor = raw.Defaults.ReplicationFactor
		}
		if t.ReplicationFactor < 1 {
			return File{}, fmt.Errorf("%w: topic %s: replication_factor must be at least 1", ErrInvalidFile, t.Name)
		}
		merged := map[string]string{}
		for k, v := range raw.Defaults.Configs {
			merged[k] = v
		}
		for k, v := range t.Configs {
			merged[k] = v
		}
		t.Configs = merged
		out.Topics = append(out.Topics, t)
	}
	return out, nil
}

// WithPrefix returns a copy whose topic names carry prefix; tests use it to get
// topics of their own on a shared cluster.
func (f File) WithPrefix(prefix string) File {
	out := File{Topics: make([]Spec, len(f.Topics))}
	for i, t := range f.Topics {
		t.Name = prefix + t.Name
		out.Topics[i] = t
	}
	return out
}

// Names lists the declared topic names in file order.
func (f File) Names() []string {
	names := make([]string, len(f.Topics))
	for i, t := range f.Topics {
		names[i] = t.Name
	}
	return names
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
