// Package report writes chatbench's results: the JSON document, the table and the plots.
package report

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/kchat/kchat/tools/chatbench/internal/harness"
)

// Result is one run of chatbench, as written to bench/results/<timestamp>.json.
type Result struct {
	Tool       string           `json:"tool"`
	Mode       string           `json:"mode"` // full or smoke
	StartedAt  time.Time        `json:"started_at"`
	FinishedAt time.Time        `json:"finished_at"`
	DurationS  float64          `json:"duration_s"`
	Git        Git              `json:"git"`
	Machine    Machine          `json:"machine"`
	Config     map[string]any   `json:"config"`
	Figures    []harness.Figure `json:"figures"`
	Scenarios  []*Scenario      `json:"scenarios"`
}

// Scenario holds everything one scenario measured, beyond its figures.
type Scenario struct {
	Name     string         `json:"name"`
	Config   map[string]any `json:"config,omitempty"`
	Series   []Series       `json:"series,omitempty"`
	Data     map[string]any `json:"data,omitempty"`
	Notes    []string       `json:"notes,omitempty"`
	Error    string         `json:"error,omitempty"`
	Seconds  float64        `json:"seconds"`
	Skipped  string         `json:"skipped,omitempty"`
	Warnings []string       `json:"warnings,omitempty"`
}

// Series is a set of fixed-rate runs of one system (e.g. "gateway ingest" or "raw hop"):
// the rate/latency curve and the distributions come from these.
type Series struct {
	Name  string         `json:"name"`
	Steps []harness.Step `json:"steps"`
}

// Git identifies the code measured.
type Git struct {
	Commit string `json:"commit"`
	Dirty  bool   `json:"dirty"`
}

// Machine describes where the run happened.
type Machine struct {
	Cores     int    `json:"cores"`
	CPUModel  string `json:"cpu_model"`
	MemTotal  string `json:"mem_total"`
	GoVersion string `json:"go_version"`
	Kernel    string `json:"kernel"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	Hostname  string `json:"hostname"`
}

// GitInfo reads the commit of the work tree at root (read-only git commands).
func GitInfo(root string) Git {
	g := Git{Commit: "unknown"}
	if out, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output(); err == nil {
		g.Commit = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output(); err == nil {
		g.Dirty = len(strings.TrimSpace(string(out))) > 0
	}
	return g
}

// MachineInfo collects the machine facts from /proc and the runtime.
func MachineInfo() Machine {
	m := Machine{Cores: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	m.Hostname, _ = os.Hostname()
	m.CPUModel = procField("/proc/cpuinfo", "model name")
	if v := procField("/proc/meminfo", "MemTotal"); v != "" {
		m.MemTotal = v
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Scenario returns the named scenario, adding it if new.
func (r *Result) Scenario(name string) *Scenario {
	for _, s := range r.Scenarios {
		if s.Name == name {
			return s
		}
	}
	s := &Scenario{Name: name, Data: map[string]any{}}
	r.Scenarios = append(r.Scenarios, s)
	return s
}

// Add appends figures.
func (r *Result) Add(fs ...harness.Figure) { r.Figures = append(r.Figures, fs...) }

// Write stores the result as dir/<stamp>.json, returning its path. There is no latest.json
// copy: the README names the run's file, and a byte-identical copy only doubles the repo.
func (r *Result) Write(dir, stamp string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encode result: %w", err)
	}
	path := filepath.Join(dir, stamp+".json")
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return "", err
	}
	return path, nil
}

// Load reads a result file.
func Load(path string) (*Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}
