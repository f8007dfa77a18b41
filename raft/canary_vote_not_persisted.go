//go:build canary_vote_not_persisted

package raft

// canaryVoteNotPersisted is on: this build is a deliberately broken core (a canary) that
// sends a granted vote before the vote is persisted. The test suite must catch it; see canary.go.
const canaryVoteNotPersisted = true
