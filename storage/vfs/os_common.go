package vfs

import "os"

// preallocateByTruncate grows the file to off+n bytes where the filesystem
// cannot reserve space: the range reads as zeros but may be sparse.
func preallocateByTruncate(f *os.File, off, n int64) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() >= off+n {
		return nil
	}
	return f.Truncate(off + n)
}
