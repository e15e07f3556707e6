//go:build race

package chaos_test

// raceEnabled is recorded in the results: the services under test are built with -race
// too, which makes them several times slower.
const raceEnabled = true
