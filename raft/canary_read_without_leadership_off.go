//go:build !canary_read_without_leadership

package raft

// canaryReadWithoutLeadership is off in every real build; see canary.go.
const canaryReadWithoutLeadership = false
