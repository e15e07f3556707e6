//go:build !faults

package main

import "log/slog"

// Without the faults build tag there are no fault flags and no hooks: see faults.go.

func registerFaultFlags(*config) {}

func faultHook(int64, string, *slog.Logger) func(int64) { return nil }
