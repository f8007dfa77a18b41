//go:build canary_commit_prev_term

package raft

// canaryCommitPrevTerm is on: this build is a deliberately broken core (a canary) that
// commits entries of earlier terms by counting replicas (the Figure 8 bug). The test suite must catch it; see canary.go.
const canaryCommitPrevTerm = true
