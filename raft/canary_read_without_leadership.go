//go:build canary_read_without_leadership

package raft

// canaryReadWithoutLeadership is on: this build is a deliberately broken core (a canary) that
// answers reads from local state without confirming leadership. The test suite must catch it; see canary.go.
const canaryReadWithoutLeadership = true
