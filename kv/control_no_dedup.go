//go:build control_no_dedup

package kv

// controlNoDedup is on: this build is a deliberately broken state machine
// that executes a retried write again (no exactly-once); see control.go.
const controlNoDedup = true
