//go:build canary_no_election_restriction

package raft

// canaryNoElectionRestriction is on: this build is a deliberately broken core (a canary) that
// grants votes to candidates whose logs are behind (no §5.4.1 restriction). The test suite must catch it; see canary.go.
const canaryNoElectionRestriction = true
