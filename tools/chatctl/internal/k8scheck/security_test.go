package k8scheck_test

import (
	"fmt"
	"path"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/kchat/kchat/tools/chatctl/internal/k8scheck"
)

// podSpec is the pod template of a Deployment or Job.
func podSpec(t *testing.T, o k8scheck.Object) corev1.PodSpec {
	t.Helper()
	switch o.Kind {
	case "Deployment":
		var d appsv1.Deployment
		if err := yaml.Unmarshal(o.YAML, &d); err != nil {
			t.Fatal(err)
		}
		return d.Spec.Template.Spec
	case "Job":
		var j batchv1.Job
		if err := yaml.Unmarshal(o.YAML, &j); err != nil {
			t.Fatal(err)
		}
		return j.Spec.Template.Spec
	}
	t.Fatalf("%s has no pod template", o.ID())
	return corev1.PodSpec{}
}

// secretFile finds which Secret and key the file at p comes from: a volumeMount above p
// (no subPath) of a secret volume, the key named by the volume's items or, without
// items, the file name itself. projected is every key the volume mounts ("*": all).
func secretFile(spec corev1.PodSpec, c corev1.Container, p string) (secret, key string, projected []string, err error) {
	for _, m := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(p, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok || m.SubPath != "" {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name != m.Name {
				continue
			}
			if v.Secret == nil {
				return "", "", nil, fmt.Errorf("%s is under mount %s of volume %s, which is not a Secret", p, m.MountPath, v.Name)
			}
			if len(v.Secret.Items) == 0 {
				return v.Secret.SecretName, rel, []string{"*"}, nil
			}
			for _, it := range v.Secret.Items {
				projected = append(projected, it.Key)
			}
			for _, it := range v.Secret.Items {
				if path.Clean(it.Path) == rel {
					return v.Secret.SecretName, it.Key, projected, nil
				}
			}
			return "", "", nil, fmt.Errorf("%s: volume %s (Secret %s) projects no item at %s", p, v.Name, v.Secret.SecretName, rel)
		}
		return "", "", nil, fmt.Errorf("%s: mount %s names volume %s, which the pod does not have", p, m.MountPath, m.Name)
	}
	return "", "", nil, fmt.Errorf("%s is under no volumeMount of container %s", p, c.Name)
}

// Every Kafka client Deployment reaches the brokers on the TLS + SCRAM listener as its
// own KafkaUser, with the password and the cluster CA mounted from the Secrets Strimzi
// creates for those names; every PostgreSQL client verifies the server (verify-full)
// against CloudNativePG's CA, mounted without the CA's key. Which env names a program
// reads is TestEnvIsWhatProgramsRead's business; this checks their values and mounts.
func TestClientsUseTheSecuredListenerAndVerifiedPostgres(t *testing.T) {
	_, b := setup(t)
	for _, name := range builds {
		kafkas := ofKind(b[name], "Kafka")
		if len(kafkas) != 1 {
			t.Fatalf("%s: %d Kafka resources, want 1", name, len(kafkas))
		}
		cluster := kafkas[0].Name
		tlsPort := 0
		listeners, _ := get(spec(kafkas[0]), "kafka")["listeners"].([]any)
		for _, l := range listeners {
			lm := l.(map[string]any)
			p, _ := num(lm["port"])
			if lm["tls"] != true || get(lm, "authentication")["type"] != "scram-sha-512" {
				t.Errorf("%s: listener %v on %d is not TLS with scram-sha-512: on it the ACLs would protect nothing", name, lm["name"], p)
				continue
			}
			tlsPort = p
		}
		supers, _ := get(spec(kafkas[0]), "kafka", "authorization")["superUsers"].([]any)
		for _, su := range supers {
			t.Errorf("%s: super user %v; no client needs one", name, su)
		}
		users := map[string]bool{}
		for _, u := range ofKind(b[name], "KafkaUser") {
			labels, _ := u.Value["metadata"].(map[string]any)["labels"].(map[string]any)
			if labels["strimzi.io/cluster"] == cluster {
				users[u.Name] = true
			}
		}
		pgs := ofKind(b[name], "Cluster")
		if len(pgs) != 1 {
			t.Fatalf("%s: %d PostgreSQL Clusters, want 1", name, len(pgs))
		}
		pg := pgs[0].Name
		configMaps := map[string]map[string]any{}
		for _, cm := range ofKind(b[name], "ConfigMap") {
			data, _ := cm.Value["data"].(map[string]any)
			configMaps[cm.Name] = data
		}
		value := func(e corev1.EnvVar) string {
			if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
				r := e.ValueFrom.ConfigMapKeyRef
				return fmt.Sprint(configMaps[r.Name][r.Key])
			}
			return e.Value
		}
		kafkaClients := 0
		for _, o := range append(ofKind(b[name], "Deployment"), ofKind(b[name], "Job")...) {
			ps := podSpec(t, o)
			for _, c := range ps.Containers {
				env := map[string]corev1.EnvVar{}
				for _, e := range c.Env {
					env[e.Name] = e
				}
				where := fmt.Sprintf("%s: %s container %s", name, o.ID(), c.Name)
				mounted := func(varName, wantSecret, wantKey string) {
					t.Helper()
					e, ok := env[varName]
					if !ok {
						t.Errorf("%s: %s is not set", where, varName)
						return
					}
					secret, key, projected, err := secretFile(ps, c, e.Value)
					if err != nil {
						t.Errorf("%s: %s: %v", where, varName, err)
						return
					}
					if secret != wantSecret || key != wantKey {
						t.Errorf("%s: %s=%s is Secret %s key %s, want Secret %s key %s", where, varName, e.Value, secret, key, wantSecret, wantKey)
					}
					if len(projected) != 1 {
						t.Errorf("%s: %s: the volume mounts keys %v of %s; mount only %s", where, varName, projected, secret, wantKey)
					}
				}
				if _, ok := env["KAFKA_BROKERS"]; ok {
					kafkaClients++
					if got, want := value(env["KAFKA_BROKERS"]), fmt.Sprintf("%s-kafka-bootstrap:%d", cluster, tlsPort); got != want {
						t.Errorf("%s: KAFKA_BROKERS %s, want the TLS listener's bootstrap %s", where, got, want)
					}
					if got := env["KAFKA_SASL_MECHANISM"].Value; got != "SCRAM-SHA-512" {
						t.Errorf("%s: KAFKA_SASL_MECHANISM %q, want SCRAM-SHA-512", where, got)
					}
					user := env["KAFKA_SASL_USERNAME"].Value
					if want := "kchat-" + program(c.Image); user != want || !users[user] {
						t.Errorf("%s: KAFKA_SASL_USERNAME %q, want %s, a KafkaUser of cluster %s (users: %v)", where, user, want, cluster, k8scheck.SortedKeys(users))
					}
					if _, ok := env["KAFKA_SASL_PASSWORD"]; ok {
						t.Errorf("%s: KAFKA_SASL_PASSWORD set; mount the user's Secret and use KAFKA_SASL_PASSWORD_FILE", where)
					}
					mounted("KAFKA_SASL_PASSWORD_FILE", user, "password")
					mounted("KAFKA_TLS_CA_FILE", cluster+"-cluster-ca-cert", "ca.crt")
				}
				if db, ok := env["DATABASE_URL"]; ok {
					if r := db.ValueFrom; r == nil || r.SecretKeyRef == nil || r.SecretKeyRef.Name != pg+"-app" || r.SecretKeyRef.Key != "uri" {
						t.Errorf("%s: DATABASE_URL is not Secret %s-app key uri", where, pg)
					}
					if got := env["PGSSLMODE"].Value; got != "verify-full" {
						t.Errorf("%s: PGSSLMODE %q, want verify-full", where, got)
					}
					mounted("PGSSLROOTCERT", pg+"-ca", "ca.crt")
				}
			}
		}
		if kafkaClients != 4 {
			t.Errorf("%s: %d Kafka clients, want the four services", name, kafkaClients)
		}
	}
}
