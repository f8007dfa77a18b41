//go:build !canary_no_election_restriction

package raft

// canaryNoElectionRestriction is off in every real build; see canary.go.
const canaryNoElectionRestriction = false
