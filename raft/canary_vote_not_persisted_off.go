//go:build !canary_vote_not_persisted

package raft

// canaryVoteNotPersisted is off in every real build; see canary.go.
const canaryVoteNotPersisted = false
