//go:build race

package stacktest

// raceEnabled builds services under test with -race when the tests themselves run with it.
const raceEnabled = true
