// Package composecheck loads docker-compose.yml with the compose-spec loader
// (github.com/compose-spec/compose-go/v2, the library `docker compose` itself
// uses) so that the stack's invariants can be checked without a Docker engine.
// No engine runs on the machines that build kchat; these checks (in the
// package's tests) are what keeps the compose stack from drifting: broker
// quorum, listeners, durability settings against the local stack, env names
// against what the programs read, Dockerfiles, image versions.
package composecheck

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// ProjectName is the compose project name (the file's top-level `name:`).
const ProjectName = "kchat"

// Stack is docker-compose.yml as Compose would see it.
type Stack struct {
	// Root is the repository root (the directory holding go.work).
	Root string
	// All has every profile enabled (`--profile '*'`).
	All *types.Project
	// Default is what a plain `docker compose up` starts.
	Default *types.Project
}

// Load reads root/docker-compose.yml twice through the compose-spec loader:
// once with every profile and once with none. Both loads run the loader's
// schema validation, interpolation, normalisation and consistency checks
// (e.g. a depends_on pointing at a service that the active profiles disable
// is an error there, as it is for `docker compose up`).
func Load(ctx context.Context, root string) (*Stack, error) {
	all, err := loadProject(ctx, root, []string{"*"})
	if err != nil {
		return nil, fmt.Errorf("docker-compose.yml with every profile: %w", err)
	}
	def, err := loadProject(ctx, root, nil)
	if err != nil {
		return nil, fmt.Errorf("docker-compose.yml with the default profile: %w", err)
	}
	return &Stack{Root: root, All: all, Default: def}, nil
}

func loadProject(ctx context.Context, root string, profiles []string) (*types.Project, error) {
	details := types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(root, "docker-compose.yml")}},
		// An empty environment: the file must not depend on the operator's
		// shell (no ${VAR} without a default).
		Environment: types.Mapping{},
	}
	return loader.LoadWithContext(ctx, details, func(o *loader.Options) {
		o.SetProjectName(ProjectName, true)
		o.Profiles = profiles
	})
}

// Service returns a service whichever profile it belongs to.
func (s *Stack) Service(name string) (types.ServiceConfig, bool) {
	svc, ok := s.All.Services[name]
	return svc, ok
}

// Env returns a service's environment as plain strings (a name listed
// without a value maps to "").
func Env(svc types.ServiceConfig) map[string]string {
	out := make(map[string]string, len(svc.Environment))
	for k, v := range svc.Environment {
		if v != nil {
			out[k] = *v
		} else {
			out[k] = ""
		}
	}
	return out
}

// BuildArg returns a build argument of a service ("" when unset).
func BuildArg(svc types.ServiceConfig, name string) string {
	if svc.Build == nil {
		return ""
	}
	if v := svc.Build.Args[name]; v != nil {
		return *v
	}
	return ""
}

// HostPorts returns the host ports a service publishes.
func HostPorts(svc types.ServiceConfig) ([]int, error) {
	var out []int
	for _, p := range svc.Ports {
		if p.Published == "" {
			return nil, fmt.Errorf("port %d publishes no host port", p.Target)
		}
		n, err := strconv.Atoi(p.Published)
		if err != nil {
			return nil, fmt.Errorf("port %q: want one host port, not a range", p.Published)
		}
		out = append(out, n)
	}
	return out, nil
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
		host, port, err := splitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("voter %q: %w", v, err)
		}
		out = append(out, Voter{ID: id, Host: host, Port: port})
	}
	return out, nil
}

// Listener is one entry of listeners or advertised.listeners.
type Listener struct {
	Name string // PLAINTEXT, CONTROLLER, HOST...
	Host string // empty means every interface
	Port int
}

// Addr is host:port.
func (l Listener) Addr() string { return l.Host + ":" + strconv.Itoa(l.Port) }

// ParseListeners parses "NAME://host:port,NAME://:port".
func ParseListeners(s string) ([]Listener, error) {
	var out []Listener
	for _, l := range strings.Split(s, ",") {
		name, addr, ok := strings.Cut(strings.TrimSpace(l), "://")
		if !ok || name == "" {
			return nil, fmt.Errorf("listener %q: want NAME://host:port", l)
		}
		host, port, err := splitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("listener %q: %w", l, err)
		}
		out = append(out, Listener{Name: name, Host: host, Port: port})
	}
	return out, nil
}

// ParseProtocolMap parses listener.security.protocol.map ("A:PLAINTEXT,B:SSL").
func ParseProtocolMap(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, e := range strings.Split(s, ",") {
		name, proto, ok := strings.Cut(strings.TrimSpace(e), ":")
		if !ok || name == "" || proto == "" {
			return nil, fmt.Errorf("protocol map entry %q: want NAME:PROTOCOL", e)
		}
		out[name] = proto
	}
	return out, nil
}

func splitHostPort(addr string) (string, int, error) {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return "", 0, fmt.Errorf("%q: want host:port", addr)
	}
	port, err := strconv.Atoi(addr[i+1:])
	if err != nil || port <= 0 || port > 65535 {
		return "", 0, fmt.Errorf("%q: bad port", addr)
	}
	return addr[:i], port, nil
}

// ImageWrapperEnv are the KAFKA_* variables that the apache/kafka image's
// launcher reads itself; they are not broker properties.
var ImageWrapperEnv = map[string]bool{
	"KAFKA_VERSION": true, "KAFKA_HEAP_OPTS": true, "KAFKA_LOG4J_OPTS": true, "KAFKA_OPTS": true,
	"KAFKA_JMX_OPTS": true, "KAFKA_JVM_PERFORMANCE_OPTS": true, "KAFKA_GC_LOG_OPTS": true,
	"KAFKA_LOG4J_ROOT_LOGLEVEL": true, "KAFKA_LOG4J_LOGGERS": true, "KAFKA_TOOLS_LOG4J_LOGLEVEL": true,
	"KAFKA_JMX_HOSTNAME": true,
}

// BrokerProperty maps an apache/kafka image environment variable to the
// server.properties key it sets, following the image's documented rule
// (property -> env: "." becomes "_", "_" becomes "__", "-" becomes "___",
// upper-cased, prefixed with KAFKA_). ok is false for names that are not
// broker properties (no KAFKA_ prefix, or read by the image's launcher).
func BrokerProperty(env string) (key string, ok bool) {
	rest, found := strings.CutPrefix(env, "KAFKA_")
	if !found || rest == "" || ImageWrapperEnv[env] {
		return "", false
	}
	// Longest runs first: ___ is "-", __ is "_", _ is ".".
	var b strings.Builder
	for i := 0; i < len(rest); {
		switch {
		case strings.HasPrefix(rest[i:], "___"):
			b.WriteByte('-')
			i += 3
		case strings.HasPrefix(rest[i:], "__"):
			b.WriteByte('_')
			i += 2
		case rest[i] == '_':
			b.WriteByte('.')
			i++
		default:
			b.WriteByte(rest[i])
			i++
		}
	}
	return strings.ToLower(b.String()), true
}

// BrokerProperties returns the server.properties a broker service's
// environment produces.
func BrokerProperties(env map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range env {
		if key, ok := BrokerProperty(k); ok {
			out[key] = v
		}
	}
	return out
}

// ParseProperties reads Java properties text (key=value lines, # comments).
// Template placeholders such as {{.ID}} are kept as they are.
func ParseProperties(text string) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '!' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out
}

// ReadProperties reads a .properties file, joining backslash-continued lines.
func ReadProperties(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	joined := regexp.MustCompile(`\\\r?\n\s*`).ReplaceAllString(string(data), "")
	return ParseProperties(joined), nil
}

// LocalStackProperties returns the server.properties template of the non-Docker
// local stack: the string passed to template.Parse in the initialiser of the
// package-level variable `serverProperties` in pkg/localstack/kafka.go. It is
// read from the Go source (parsed, not grepped) because the template is
// unexported and this check must not need a running stack.
func LocalStackProperties(root string) (map[string]string, error) {
	path := filepath.Join(root, "pkg", "localstack", "kafka.go")
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	var text string
	var found bool
	ast.Inspect(f, func(n ast.Node) bool {
		spec, ok := n.(*ast.ValueSpec)
		if !ok || found {
			return !found
		}
		for i, name := range spec.Names {
			if name.Name != "serverProperties" || i >= len(spec.Values) {
				continue
			}
			ast.Inspect(spec.Values[i], func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || found {
					return !found
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || sel.Sel.Name != "Parse" || len(call.Args) != 1 {
					return true
				}
				// The template may be the properties literal plus more templates appended
				// to it (the secured listener's, pkg/localstack/secure.go); the broker
				// settings are the leftmost literal.
				arg := call.Args[0]
				for {
					sum, ok := arg.(*ast.BinaryExpr)
					if !ok || sum.Op != token.ADD {
						break
					}
					arg = sum.X
				}
				lit, ok := arg.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					return true
				}
				if s, err := strconv.Unquote(lit.Value); err == nil {
					text, found = s, true
				}
				return false
			})
		}
		return !found
	})
	if !found {
		return nil, fmt.Errorf("%s: no `serverProperties = template.Must(template.New(...).Parse(\"...\"))` found", path)
	}
	return ParseProperties(text), nil
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

// ImageTag splits "registry/repo/name:tag[@digest]" into name and tag; the
// digest, if any, is returned separately.
func ImageTag(image string) (name, tag, digest string) {
	image, digest, _ = strings.Cut(image, "@")
	i := strings.LastIndex(image, ":")
	if i < 0 || strings.Contains(image[i:], "/") {
		return image, "", digest
	}
	return image[:i], image[i+1:], digest
}

// DockerfileArgDefault returns the default of `ARG name=value` in a Dockerfile.
func DockerfileArgDefault(path, name string) (string, error) {
	args, err := dockerfileArgs(path)
	if err != nil {
		return "", err
	}
	v, ok := args[name]
	if !ok {
		return "", fmt.Errorf("%s: no ARG %s with a default", path, name)
	}
	return v, nil
}

func dockerfileArgs(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && strings.EqualFold(f[0], "ARG") {
			if k, v, ok := strings.Cut(f[1], "="); ok {
				out[k] = strings.Trim(v, `"`)
			}
		}
	}
	return out, nil
}

// BaseImage is one FROM line of a Dockerfile.
type BaseImage struct {
	// Ref is the image reference with ARG defaults (overridden by args)
	// substituted, e.g. golang:1.26.
	Ref string
	// Stage is true when Ref names an earlier stage or a named build
	// context rather than a registry image.
	Stage bool
}

var fromLine = regexp.MustCompile(`(?i)^FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?`)

// DockerfileBaseImages returns the FROM images of a Dockerfile. contexts are
// the named build contexts compose supplies (additional_contexts); args
// override ARG defaults like --build-arg does.
func DockerfileBaseImages(path string, args map[string]string, contexts map[string]string) ([]BaseImage, error) {
	defaults, err := dockerfileArgs(path)
	if err != nil {
		return nil, err
	}
	for k, v := range args {
		defaults[k] = v
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	stages := map[string]bool{}
	var out []BaseImage
	for _, line := range strings.Split(string(data), "\n") {
		m := fromLine.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		ref := os.Expand(m[1], func(k string) string { return defaults[k] })
		_, isContext := contexts[ref]
		out = append(out, BaseImage{Ref: ref, Stage: stages[strings.ToLower(ref)] || isContext})
		if m[2] != "" {
			stages[strings.ToLower(m[2])] = true
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no FROM line", path)
	}
	return out, nil
}

// LocalStackSecureProperties returns the secured local stack's listener and security
// settings: the constant `secureProperties` in pkg/localstack/secure.go (the template that
// replaces the PLAINTEXT listener lines in `make dev`), read from the Go source
// like LocalStackProperties. Templated values keep their placeholders.
func LocalStackSecureProperties(root string) (map[string]string, error) {
	path := filepath.Join(root, "pkg", "localstack", "secure.go")
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	for _, decl := range f.Decls {
		gen, ok := decl.(*ast.GenDecl)
		if !ok || gen.Tok != token.CONST {
			continue
		}
		for _, spec := range gen.Specs {
			vs, ok := spec.(*ast.ValueSpec)
			if !ok {
				continue
			}
			for i, name := range vs.Names {
				if name.Name != "secureProperties" || i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					break
				}
				text, err := strconv.Unquote(lit.Value)
				if err != nil {
					return nil, fmt.Errorf("%s: secureProperties: %w", path, err)
				}
				return ParseProperties(text), nil
			}
		}
	}
	return nil, fmt.Errorf("%s: no string constant secureProperties found", path)
}
