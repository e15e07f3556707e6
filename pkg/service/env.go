package service

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Configuration comes from flags whose defaults are read from the environment, e.g.
//
//	flag.IntVar(&n, "batch-size", service.EnvInt("BATCH_SIZE", 100), "...")
//
// A flag with a malformed value stops the program (package flag); so does a malformed
// environment value: EnvInt, EnvDuration and EnvBool print the variable, its value and the
// expected form ("BATCH_SIZE=1k: want an integer") and exit with status 2, before anything
// starts. An unset or empty variable means the default. The Lookup functions return the
// error instead, for callers that report it themselves.

// EnvError is a malformed environment variable.
type EnvError struct {
	Key, Value string
	Want       string // the expected form, e.g. "an integer"
}

func (e *EnvError) Error() string { return fmt.Sprintf("%s=%s: want %s", e.Key, e.Value, e.Want) }

// Env returns the environment variable key, or def when it is unset or empty.
func Env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// EnvInt is Env for integers; a malformed value stops the program.
func EnvInt(key string, def int) int { return must(LookupInt(key, def)) }

// EnvDuration is Env for durations ("5m", "250ms"); a malformed value stops the program.
func EnvDuration(key string, def time.Duration) time.Duration { return must(LookupDuration(key, def)) }

// EnvBool is Env for booleans (true/false, 1/0, on/off, yes/no, any case); a malformed
// value stops the program.
func EnvBool(key string, def bool) bool { return must(LookupBool(key, def)) }

// LookupInt returns key as an integer, def when unset or empty, or an *EnvError.
func LookupInt(key string, def int) (int, error) {
	v := os.Getenv(key)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return def, &EnvError{Key: key, Value: v, Want: "an integer"}
	}
	return n, nil
}

// LookupDuration returns key as a duration, def when unset or empty, or an *EnvError.
func LookupDuration(key string, def time.Duration) (time.Duration, error) {
	v := os.Getenv(key)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil {
		return def, &EnvError{Key: key, Value: v, Want: "a duration with a unit, such as 250ms, 5s or 1m"}
	}
	return d, nil
}

// LookupBool returns key as a boolean, def when unset or empty, or an *EnvError.
func LookupBool(key string, def bool) (bool, error) {
	v := os.Getenv(key)
	if v == "" {
		return def, nil
	}
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "t", "true", "on", "yes":
		return true, nil
	case "0", "f", "false", "off", "no":
		return false, nil
	}
	return def, &EnvError{Key: key, Value: v, Want: "true or false (or 1/0, on/off, yes/no)"}
}

// exit stops the program on a configuration error; tests replace it.
var exit = func(err error) {
	fmt.Fprintf(os.Stderr, "%s: %v\n", filepath.Base(os.Args[0]), err)
	os.Exit(2)
}

func must[T any](v T, err error) T {
	if err != nil {
		exit(err)
	}
	return v
}
