package kv

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/cairnkv/cairn/api/kvpb"
	"github.com/cairnkv/cairn/raft"
)

// BenchmarkApply measures applying session puts of 128-byte values, in
// Apply calls of 1 and of 64 entries, on the real filesystem.
func BenchmarkApply(b *testing.B) {
	for _, per := range []int{1, 64} {
		b.Run(fmt.Sprintf("entries=%d", per), func(b *testing.B) {
			sm := openMem(b, vfs.Default, func(c *Config) { c.Dir = b.TempDir(); c.CacheSize = DefaultCacheSize })
			defer sm.Close()
			l := newLog(b, sm)
			s := l.open()
			value := make([]byte, 128)
			var seq uint64
			entries := make([]raft.Entry, 0, per)
			b.SetBytes(int64(len(value)))
			b.ResetTimer()
			for i := 0; i < b.N; i += per {
				entries = entries[:0]
				for j := 0; j < per && i+j < b.N; j++ {
					seq++
					entries = append(entries, l.entry(&kvpb.PutRequest{
						Header: hdr(s, seq, seq), Key: fmt.Appendf(nil, "key-%d", seq%10000), Value: value}))
				}
				if _, err := sm.Apply(entries); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
