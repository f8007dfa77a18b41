//go:build !canary_no_consistency_check

package raft

// canaryNoConsistencyCheck is off in every real build; see canary.go.
const canaryNoConsistencyCheck = false
