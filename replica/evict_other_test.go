//go:build !(linux && (amd64 || arm64))

package replica_test

import "testing"

// evict cannot drop pages from the page cache here: "cold" figures are
// warm ones.
func evict(b *testing.B, files []string) { b.Helper() }
