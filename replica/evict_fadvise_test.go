//go:build linux && (amd64 || arm64)

package replica_test

import (
	"os"
	"syscall"
	"testing"
)

// evict drops the files' pages from the page cache (they are clean: the
// WAL synced them), so that the next read comes from the disk.
func evict(b *testing.B, files []string) {
	b.Helper()
	const fadvDontNeed = 4 // POSIX_FADV_DONTNEED
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		if _, _, errno := syscall.Syscall6(syscall.SYS_FADVISE64, f.Fd(), 0, 0, fadvDontNeed, 0, 0); errno != 0 {
			b.Fatalf("fadvise %s: %v", name, errno)
		}
		f.Close()
	}
}
