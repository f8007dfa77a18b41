//go:build !race

package chaos

// raceEnabled says whether this binary was built with the race detector;
// see race.go.
const raceEnabled = false
