//go:build !control_no_dedup

package kv

// controlNoDedup is off in every real build; see control.go.
const controlNoDedup = false
