//go:build !linux

package vfs

import "os"

func syncData(f *os.File) error { return f.Sync() }

func preallocate(f *os.File, off, n int64) error { return preallocateByTruncate(f, off, n) }
