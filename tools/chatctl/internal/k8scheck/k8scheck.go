// Package k8scheck checks the Kubernetes manifests in deploy/kubernetes without a cluster:
// it builds each kustomization in-process with the kustomize library that kubectl
// embeds, and gives its tests what they compare the result with: the CRD schemas of the
// operators, and the environment variables and listen addresses the programs read,
// found in their source.
package k8scheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Object is one resource of a kustomize build.
type Object struct {
	APIVersion string
	Kind       string
	Name       string
	Namespace  string
	YAML       []byte         // as kustomize printed it, for strict decoding
	Value      map[string]any // the same, decoded generically (numbers as json.Number)
}

// ID names the object in failures, e.g. "apps/v1 Deployment gateway".
func (o Object) ID() string { return o.APIVersion + " " + o.Kind + " " + o.Name }

// Build runs kustomize on dir with kubectl's defaults (files only from within the
// kustomization's root, no plugins), as `kubectl apply -k dir` would.
func Build(dir string) ([]Object, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	var objs []Object
	for _, r := range m.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.CurId(), err)
		}
		j, err := yaml.YAMLToJSON(y)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.CurId(), err)
		}
		v, err := jsonschema.UnmarshalJSON(strings.NewReader(string(j)))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.CurId(), err)
		}
		mv, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: not an object", r.CurId())
		}
		objs = append(objs, Object{APIVersion: r.GetApiVersion(), Kind: r.GetKind(), Name: r.GetName(),
			Namespace: r.GetNamespace(), YAML: y, Value: mv})
	}
	return objs, nil
}

// CRDSchema is the validation schema of one served version of a custom resource.
type CRDSchema struct {
	Group, Version, Kind string
	Deprecated           bool
	Schema               *jsonschema.Schema
	// CELRules counts x-kubernetes-validations rules, which the schema here does not
	// evaluate (they need the API server's CEL environment).
	CELRules int
}

// LoadCRDs reads every CustomResourceDefinition in the YAML files of dir and compiles
// each served version's openAPIV3Schema, keyed "group/version Kind". The schemas are
// made to reject what the API server's strict field validation rejects (see Strict).
func LoadCRDs(dir string) (map[string]CRDSchema, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	out := map[string]CRDSchema{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for _, doc := range strings.Split(string(data), "\n---") {
			if strings.TrimSpace(doc) == "" || !strings.Contains(doc, "kind: CustomResourceDefinition") {
				continue
			}
			var crd struct {
				Kind string `json:"kind"`
				Spec struct {
					Group string `json:"group"`
					Names struct {
						Kind string `json:"kind"`
					} `json:"names"`
					Versions []struct {
						Name       string `json:"name"`
						Served     bool   `json:"served"`
						Deprecated bool   `json:"deprecated"`
						Schema     struct {
							OpenAPIV3Schema json.RawMessage `json:"openAPIV3Schema"`
						} `json:"schema"`
					} `json:"versions"`
				} `json:"spec"`
			}
			j, err := yaml.YAMLToJSON([]byte(doc))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			if err := json.Unmarshal(j, &crd); err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			if crd.Kind != "CustomResourceDefinition" {
				continue
			}
			for _, v := range crd.Spec.Versions {
				if !v.Served || len(v.Schema.OpenAPIV3Schema) == 0 {
					continue
				}
				raw, err := jsonschema.UnmarshalJSON(strings.NewReader(string(v.Schema.OpenAPIV3Schema)))
				if err != nil {
					return nil, fmt.Errorf("%s %s: %w", f, v.Name, err)
				}
				cel := Strict(raw)
				key := crd.Spec.Group + "/" + v.Name + " " + crd.Spec.Names.Kind
				c := jsonschema.NewCompiler()
				// Kubernetes' structural schemas are OpenAPI 3.0 schemas, a draft-4 dialect
				// (boolean exclusiveMinimum, no $schema); unknown keywords (x-kubernetes-*,
				// nullable, handled in Strict) are ignored by the validator.
				c.DefaultDraft(jsonschema.Draft4)
				url := "mem://crd/" + crd.Spec.Group + "/" + v.Name + "/" + crd.Spec.Names.Kind + ".json"
				if err := c.AddResource(url, raw); err != nil {
					return nil, fmt.Errorf("%s: %w", key, err)
				}
				s, err := c.Compile(url)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", key, err)
				}
				out[key] = CRDSchema{Group: crd.Spec.Group, Version: v.Name, Kind: crd.Spec.Names.Kind,
					Deprecated: v.Deprecated, Schema: s, CELRules: cel}
			}
		}
	}
	return out, nil
}

// Strict rewrites a CRD's structural schema in place so that a JSON Schema validator
// judges an object as `kubectl apply` (server-side strict field validation, the default
// since Kubernetes 1.27) does: an object schema with properties and neither
// additionalProperties nor x-kubernetes-preserve-unknown-fields gets
// additionalProperties: false, because the API server rejects unknown fields there
// instead of keeping them; nullable: true admits null. It returns the number of CEL
// rules (x-kubernetes-validations) it saw, which stay unchecked.
func Strict(schema any) (celRules int) {
	switch s := schema.(type) {
	case map[string]any:
		if r, ok := s["x-kubernetes-validations"].([]any); ok {
			celRules += len(r)
		}
		_, hasProps := s["properties"]
		_, hasAdditional := s["additionalProperties"]
		preserve, _ := s["x-kubernetes-preserve-unknown-fields"].(bool)
		if hasProps && !hasAdditional && !preserve {
			s["additionalProperties"] = false
		}
		if n, _ := s["nullable"].(bool); n {
			if t, ok := s["type"].(string); ok {
				s["type"] = []any{t, "null"}
			}
		}
		for k, v := range s {
			switch k {
			case "properties", "patternProperties", "definitions":
				if m, ok := v.(map[string]any); ok {
					for _, sub := range m {
						celRules += Strict(sub)
					}
				}
			case "items", "additionalProperties", "not":
				celRules += Strict(v)
			case "allOf", "anyOf", "oneOf":
				if l, ok := v.([]any); ok {
					for _, sub := range l {
						celRules += Strict(sub)
					}
				}
			}
		}
	case []any:
		for _, sub := range s {
			celRules += Strict(sub)
		}
	}
	return celRules
}

// Program is what one kchat binary reads from its environment, found in its source.
type Program struct {
	Env map[string]bool
	// Defaults holds the literal defaults the source gives (e.g. HTTP_ADDR ":8090").
	Defaults map[string]string
}

// envFuncs are the calls whose first argument names an environment variable:
// pkg/service's helpers and os.Getenv (chatctl reads through an injected Getenv).
var envFuncs = map[string]bool{
	"Env": true, "EnvInt": true, "EnvDuration": true, "EnvBool": true,
	"LookupInt": true, "LookupDuration": true, "LookupBool": true,
	"Getenv": true, "LookupEnv": true,
}

// kafkaSecCalls are kafkasec's functions that read its variables, kafkasec.RegisterFlags(fs)
// and kafkasec.FromEnv(getenv); service.KafkaSecurityFlags() calls the first (see
// isKafkaSecCall). The names are kafkasec's Env* constants (KafkaSecEnv).
var kafkaSecCalls = map[string]bool{"RegisterFlags": true, "FromEnv": true}

// PgxEnv are the libpq variables pgx itself reads (pgconn.ParseConfig's defaults, which
// the URL overrides) that the manifests use: CloudNativePG's generated uri carries no
// sslmode, so verify-full and its CA come from these. Every program that reads
// DATABASE_URL hands it to pgx unchanged, so it reads these too.
var PgxEnv = []string{"PGSSLMODE", "PGSSLROOTCERT"}

// ReadProgram finds the environment variables the Go program in dir (with its
// subpackages, tests excluded) reads: string-literal first arguments of the envFuncs;
// for service.NewConsumerFlags(name, httpAddr, groupEnv) the names that function itself
// reads (from pkg/service/consumerflags.go under root) plus groupEnv; kafkasec's
// variables (KafkaSecEnv) when the program or NewConsumerFlags makes one of the
// kafkaSecCalls; tracing's (TracingEnv) when it calls StartTracing, itself or through
// service.Main; and PgxEnv when it reads DATABASE_URL. A name built at run time would be
// missed; kchat's programs have none.
//
// composecheck keeps the same knowledge as a hand-written table in its test file (not
// importable); reading the source instead keeps this check from going stale.
func ReadProgram(root, dir string) (Program, error) {
	p := Program{Env: map[string]bool{}, Defaults: map[string]string{}}
	consumerFlags, kafkaSec, tracing, serviceMain := false, false, false, false
	err := walkGo(dir, func(f *ast.File) {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			name := calleeName(call)
			switch {
			case envFuncs[name] && len(call.Args) >= 1:
				if k, ok := stringLit(call.Args[0]); ok {
					p.Env[k] = true
					if len(call.Args) >= 2 {
						if d, ok := stringLit(call.Args[1]); ok {
							p.Defaults[k] = d
						}
					}
				}
			case isKafkaSecCall(call):
				kafkaSec = true
			case name == "StartTracing":
				tracing = true
			case isServiceMain(call):
				serviceMain = true
			case name == "NewConsumerFlags" && len(call.Args) == 3:
				consumerFlags = true
				if addr, ok := stringLit(call.Args[1]); ok {
					p.Defaults["HTTP_ADDR"] = addr
				}
				if g, ok := stringLit(call.Args[2]); ok {
					p.Env[g] = true
				}
			}
			return true
		})
	})
	if err != nil {
		return p, err
	}
	if consumerFlags {
		// The consumer flags' own reads; their HTTP_ADDR default is the caller's argument.
		file := filepath.Join(root, "pkg", "service", "consumerflags.go")
		f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
		if err != nil {
			return p, err
		}
		found := false
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Name.Name != "NewConsumerFlags" {
				continue
			}
			found = true
			ast.Inspect(fd, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				if isKafkaSecCall(call) {
					kafkaSec = true
				}
				if envFuncs[calleeName(call)] && len(call.Args) >= 1 {
					if k, ok := stringLit(call.Args[0]); ok {
						p.Env[k] = true
					}
				}
				return true
			})
		}
		if !found {
			return p, errors.New("pkg/service/consumerflags.go has no NewConsumerFlags")
		}
	}
	if serviceMain && !tracing {
		// service.Main's own calls: does it start tracing (pkg/service/consumerflags.go)?
		if tracing, err = funcCalls(filepath.Join(root, "pkg", "service", "consumerflags.go"), "Main", "StartTracing"); err != nil {
			return p, err
		}
	}
	if tracing {
		names, err := TracingEnv(root)
		if err != nil {
			return p, err
		}
		for _, k := range names {
			p.Env[k] = true
		}
	}
	if kafkaSec {
		names, err := KafkaSecEnv(root)
		if err != nil {
			return p, err
		}
		for _, k := range names {
			p.Env[k] = true
		}
	}
	if p.Env["DATABASE_URL"] {
		for _, k := range PgxEnv {
			p.Env[k] = true
		}
	}
	return p, nil
}

// isKafkaSecCall reports a call of service.KafkaSecurityFlags, or of RegisterFlags or
// FromEnv qualified by kafkasec.
func isKafkaSecCall(call *ast.CallExpr) bool {
	switch fn := call.Fun.(type) {
	case *ast.Ident:
		return fn.Name == "KafkaSecurityFlags"
	case *ast.SelectorExpr:
		if fn.Sel.Name == "KafkaSecurityFlags" {
			return true
		}
		x, ok := fn.X.(*ast.Ident)
		return ok && x.Name == "kafkasec" && kafkaSecCalls[fn.Sel.Name]
	}
	return false
}

// isServiceMain reports a call of service.Main, which runs a consumer service.
func isServiceMain(call *ast.CallExpr) bool {
	fn, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || fn.Sel.Name != "Main" {
		return false
	}
	x, ok := fn.X.(*ast.Ident)
	return ok && x.Name == "service"
}

// funcCalls reports whether the function fn declared in file calls callee.
func funcCalls(file, fn, callee string) (bool, error) {
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		return false, err
	}
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || fd.Name.Name != fn {
			continue
		}
		found := false
		ast.Inspect(fd, func(n ast.Node) bool {
			if call, ok := n.(*ast.CallExpr); ok && calleeName(call) == callee {
				found = true
			}
			return !found
		})
		return found, nil
	}
	return false, fmt.Errorf("%s has no func %s", file, fn)
}

// KafkaSecEnv returns the variables pkg/kafkasec reads: the values of its exported
// string constants named Env* (pkg/kafkasec/kafkasec.go under root), read from the
// source so that a renamed or added variable is seen here at once.
func KafkaSecEnv(root string) ([]string, error) {
	return envConstants(filepath.Join(root, "pkg", "kafkasec", "kafkasec.go"))
}

// TracingEnv returns the OTEL_* variables pkg/tracing (and the OpenTelemetry SDK under
// it) reads: its Env* constants (pkg/tracing/env.go under root).
func TracingEnv(root string) ([]string, error) {
	return envConstants(filepath.Join(root, "pkg", "tracing", "env.go"))
}

// envConstants returns the values of the string constants named Env* declared in file.
func envConstants(file string) ([]string, error) {
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, id := range vs.Names {
				if !strings.HasPrefix(id.Name, "Env") || i >= len(vs.Values) {
					continue
				}
				if v, ok := stringLit(vs.Values[i]); ok {
					names = append(names, v)
				}
			}
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%s declares no Env* constants", file)
	}
	return names, nil
}

func walkGo(dir string, visit func(*ast.File)) error {
	fset := token.NewFileSet()
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != dir && (n == "testdata" || n == "node_modules" || strings.HasPrefix(n, ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		visit(f)
		return nil
	})
}

func calleeName(call *ast.CallExpr) string {
	switch fn := call.Fun.(type) {
	case *ast.Ident:
		return fn.Name
	case *ast.SelectorExpr:
		return fn.Sel.Name
	}
	return ""
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// ListenPort is the port of a Go listen address such as ":8081" or "0.0.0.0:8090".
func ListenPort(addr string) (int, error) {
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		return 0, fmt.Errorf("listen address %q has no port", addr)
	}
	return strconv.Atoi(addr[i+1:])
}

// SortedKeys returns m's keys in order, for stable messages.
func SortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
