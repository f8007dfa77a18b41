//go:build race

package rafttest

// raceEnabled says the tests run under the race detector, which makes the
// simulator about ten times slower; the longest sweeps then do less.
const raceEnabled = true
