package localstack

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/segmentio/kafka-go"
	"gopkg.in/yaml.v3"

	"github.com/kchat/kchat/pkg/topics"
)

// The ACLs the secured test cluster applies and the KafkaUser resources of the
// Kubernetes base are written separately; this keeps them saying the same thing.
func TestServiceACLs_match_kubernetes_users(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "kubernetes", "base", "kafka-users.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	type user struct {
		Kind     string
		Metadata struct{ Name string }
		Spec     struct {
			Authorization struct {
				ACLs []struct {
					Resource struct {
						Type, Name  string
						PatternType string `yaml:"patternType"`
					}
					Operations []string
				} `yaml:"acls"`
			}
		}
	}
	var k8s []string
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var u user
		if err := dec.Decode(&u); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if u.Kind != "KafkaUser" {
			continue
		}
		for _, a := range u.Spec.Authorization.ACLs {
			if a.Resource.PatternType != "literal" {
				t.Errorf("%s: %s %s: pattern %q, want literal", u.Metadata.Name, a.Resource.Type, a.Resource.Name, a.Resource.PatternType)
			}
			for _, op := range a.Operations {
				k8s = append(k8s, strings.Join([]string{u.Metadata.Name, a.Resource.Type, a.Resource.Name, strings.ToLower(op)}, " "))
			}
		}
	}
	var ours []string
	for _, a := range ServiceACLs(topics.Names{}) {
		typ := map[kafka.ResourceType]string{kafka.ResourceTypeTopic: "topic", kafka.ResourceTypeGroup: "group"}[a.ResourceType]
		for _, op := range a.Operations {
			name := map[kafka.ACLOperationType]string{kafka.ACLOperationTypeRead: "read", kafka.ACLOperationTypeWrite: "write"}[op]
			ours = append(ours, strings.Join([]string{a.Principal, typ, a.Name, name}, " "))
		}
	}
	sort.Strings(k8s)
	sort.Strings(ours)
	if len(k8s) == 0 {
		t.Fatal("no KafkaUser ACLs read from kafka-users.yaml")
	}
	for _, r := range ours {
		if !slices.Contains(k8s, r) {
			t.Errorf("ServiceACLs grants %q, kafka-users.yaml does not", r)
		}
	}
	for _, r := range k8s {
		if !slices.Contains(ours, r) {
			t.Errorf("kafka-users.yaml grants %q, ServiceACLs does not", r)
		}
	}
}
