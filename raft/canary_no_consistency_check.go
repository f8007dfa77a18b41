//go:build canary_no_consistency_check

package raft

// canaryNoConsistencyCheck is on: this build is a deliberately broken core (a canary) that
// accepts AppendEntries without the consistency check. The test suite must catch it; see canary.go.
const canaryNoConsistencyCheck = true
