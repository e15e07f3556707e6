package localstack_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kchat/kchat/pkg/localstack"
)

// A Jaeger that cannot be built is a prerequisite error that says what was run, so the
// tracing test fails with it instead of skipping.
func TestInstallJaeger_failure_says_what(t *testing.T) {
	root := t.TempDir() // no deploy/jaeger module here
	_, err := localstack.InstallJaeger(context.Background(), root, filepath.Join(root, ".cache"), nil)
	if !errors.Is(err, localstack.ErrPrerequisite) || !strings.Contains(err.Error(), "cannot build Jaeger "+localstack.JaegerVersion) {
		t.Fatalf("err = %v, want a prerequisite error naming Jaeger %s", err, localstack.JaegerVersion)
	}
	if _, err := os.Stat(filepath.Join(root, ".cache", "bin", "jaeger-"+localstack.JaegerVersion)); !os.IsNotExist(err) {
		t.Fatalf("a failed build left a binary behind: %v", err)
	}
}

// An installed binary is reused without building.
func TestInstallJaeger_cached(t *testing.T) {
	cache := t.TempDir()
	bin := filepath.Join(cache, "bin", "jaeger-"+localstack.JaegerVersion)
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := localstack.InstallJaeger(context.Background(), t.TempDir(), cache, nil)
	if err != nil || got != bin {
		t.Fatalf("InstallJaeger = %q, %v; want the cached %q", got, err, bin)
	}
}

func TestWriteJaegerConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jaeger.yaml")
	if err := localstack.WriteJaegerConfig(path, localstack.JaegerPorts{OTLPHTTP: 14318, Query: 26686}, 10); err == nil {
		t.Fatal("a missing port was accepted")
	}
	if err := localstack.WriteJaegerConfig(path, localstack.JaegerPorts{OTLPHTTP: 14318, Query: 26686, QueryGRPC: 26685}, 10); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"endpoint: 127.0.0.1:14318", "endpoint: 127.0.0.1:26686", "endpoint: 127.0.0.1:26685", "max_traces: 10"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("config lacks %q:\n%s", want, b)
		}
	}
}
