// Package composecheck reads docker-compose.yml so its invariants can be
// checked statically. Docker cannot run on the machines that build kchat, so
// these checks (in the package's tests) are what keeps the compose stack from
// drifting: broker quorum, durability settings, ports, Dockerfiles, versions.
package composecheck

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// File is the part of a compose file the checks look at.
type File struct {
	Services map[string]Service `yaml:"services"`
	Volumes  map[string]any     `yaml:"volumes"`
}

// Service is one compose service.
type Service struct {
	Image       string       `yaml:"image"`
	Build       *Build       `yaml:"build"`
	Hostname    string       `yaml:"hostname"`
	Environment Env          `yaml:"environment"`
	Ports       []string     `yaml:"ports"`
	DependsOn   Deps         `yaml:"depends_on"`
	Profiles    []string     `yaml:"profiles"`
	Healthcheck *Healthcheck `yaml:"healthcheck"`
	Restart     string       `yaml:"restart"`
}

// Build is a service's build section (the string form means a context only).
type Build struct {
	Context            string            `yaml:"context"`
	Dockerfile         string            `yaml:"dockerfile"`
	Args               map[string]string `yaml:"args"`
	AdditionalContexts map[string]string `yaml:"additional_contexts"`
}

// UnmarshalYAML accepts both `build: ./dir` and the mapping form.
func (b *Build) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		b.Context = n.Value
		return nil
	}
	type plain Build
	return n.Decode((*plain)(b))
}

// Healthcheck is a service's healthcheck.
type Healthcheck struct {
	Test []string `yaml:"test"`
}

// Env is an environment section in either map or KEY=VALUE list form.
type Env map[string]string

// UnmarshalYAML accepts both compose forms.
func (e *Env) UnmarshalYAML(n *yaml.Node) error {
	out := Env{}
	switch n.Kind {
	case yaml.MappingNode:
		var m map[string]string
		if err := n.Decode(&m); err != nil {
			return err
		}
		for k, v := range m {
			out[k] = v
		}
	case yaml.SequenceNode:
		var l []string
		if err := n.Decode(&l); err != nil {
			return err
		}
		for _, kv := range l {
			k, v, _ := strings.Cut(kv, "=")
			out[k] = v
		}
	default:
		return fmt.Errorf("line %d: environment must be a map or a list", n.Line)
	}
	*e = out
	return nil
}

// Deps is a depends_on section in either list or map form; the value is the
// condition ("service_started" for the list form).
type Deps map[string]string

// UnmarshalYAML accepts both compose forms.
func (d *Deps) UnmarshalYAML(n *yaml.Node) error {
	out := Deps{}
	switch n.Kind {
	case yaml.SequenceNode:
		var l []string
		if err := n.Decode(&l); err != nil {
			return err
		}
		for _, s := range l {
			out[s] = "service_started"
		}
	case yaml.MappingNode:
		var m map[string]struct {
			Condition string `yaml:"condition"`
		}
		if err := n.Decode(&m); err != nil {
			return err
		}
		for k, v := range m {
			c := v.Condition
			if c == "" {
				c = "service_started"
			}
			out[k] = c
		}
	default:
		return fmt.Errorf("line %d: depends_on must be a list or a map", n.Line)
	}
	*d = out
	return nil
}

// Load parses a compose file; YAML anchors and merge keys are resolved.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f File
	if err := yaml.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &f, nil
}

// RepoRoot walks up from dir to the directory holding go.work.
func RepoRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.work above the working directory")
		}
		dir = parent
	}
}

// HostPorts returns the host ports a service publishes (short syntax:
// "[ip:]host:container[/proto]").
func (s Service) HostPorts() ([]int, error) {
	var out []int
	for _, p := range s.Ports {
		p, _, _ = strings.Cut(p, "/")
		parts := strings.Split(p, ":")
		if len(parts) < 2 {
			return nil, fmt.Errorf("port %q publishes no host port", p)
		}
		n, err := strconv.Atoi(parts[len(parts)-2])
		if err != nil {
			return nil, fmt.Errorf("port %q: %w", p, err)
		}
		out = append(out, n)
	}
	return out, nil
}

// Voter is one entry of controller.quorum.voters.
type Voter struct {
	ID   int
	Host string
	Port int
}

// ParseVoters parses "1@host:port,2@host:port".
func ParseVoters(s string) ([]Voter, error) {
	var out []Voter
	for _, v := range strings.Split(s, ",") {
		idStr, addr, ok := strings.Cut(strings.TrimSpace(v), "@")
		if !ok {
			return nil, fmt.Errorf("voter %q: want id@host:port", v)
		}
		id, err := strconv.Atoi(idStr)
		if err != nil {
			return nil, fmt.Errorf("voter %q: %w", v, err)
		}
		host, portStr, ok := strings.Cut(addr, ":")
		if !ok {
			return nil, fmt.Errorf("voter %q: want id@host:port", v)
		}
		port, err := strconv.Atoi(portStr)
		if err != nil {
			return nil, fmt.Errorf("voter %q: %w", v, err)
		}
		out = append(out, Voter{ID: id, Host: host, Port: port})
	}
	return out, nil
}

// Version is a dotted numeric version such as 2.5.146 or v1.5.0.
type Version [3]int

// ParseVersion accepts an optional leading v and two or three numbers.
func ParseVersion(s string) (Version, error) {
	var v Version
	parts := strings.Split(strings.TrimPrefix(s, "v"), ".")
	if len(parts) < 2 || len(parts) > 3 {
		return v, fmt.Errorf("version %q: want major.minor[.patch]", s)
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return v, fmt.Errorf("version %q: %q is not a number", s, p)
		}
		v[i] = n
	}
	return v, nil
}

// AtLeast reports whether v >= min.
func (v Version) AtLeast(min Version) bool {
	for i := range v {
		if v[i] != min[i] {
			return v[i] > min[i]
		}
	}
	return true
}

// ImageTag splits "repo/name:tag" into name and tag (no digest support needed).
func ImageTag(image string) (name, tag string) {
	i := strings.LastIndex(image, ":")
	if i < 0 || strings.Contains(image[i:], "/") {
		return image, ""
	}
	return image[:i], image[i+1:]
}

// DockerfileArgDefault returns the default of `ARG name=value` in a Dockerfile.
func DockerfileArgDefault(path, name string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && strings.EqualFold(f[0], "ARG") {
			if k, v, ok := strings.Cut(f[1], "="); ok && k == name {
				return strings.Trim(v, `"`), nil
			}
		}
	}
	return "", fmt.Errorf("%s: no ARG %s with a default", path, name)
}
