//go:build !canary_commit_prev_term

package raft

// canaryCommitPrevTerm is off in every real build; see canary.go.
const canaryCommitPrevTerm = false
