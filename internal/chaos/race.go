//go:build race

package chaos

// raceEnabled says whether this binary was built with the race detector:
// the tests then build the servers with it too (-chaos.race's default),
// whose instrumented packages are already in the build cache.
const raceEnabled = true
