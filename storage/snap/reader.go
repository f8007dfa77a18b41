package snap

import (
	"bufio"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"

	"github.com/cairnkv/cairn/raft"
)

// Reader streams a snapshot's data. It verifies the checksum as it goes:
// the Read that reaches the end returns io.EOF only if the data is intact,
// and a *CorruptError otherwise. A consumer must therefore read to io.EOF
// before trusting what it restored.
type Reader struct {
	name   string
	meta   raft.SnapshotMeta
	size   int64 // data bytes
	r      *bufio.Reader
	crc    uint32
	want   uint32
	read   int64
	done   error
	closer io.Closer
}

// newReader checks the header and trailer of the snapshot in ra (size
// bytes, named name in errors) and returns a reader of its data. It never
// panics on bad input.
func newReader(name string, ra io.ReaderAt, size int64, closer io.Closer) (*Reader, error) {
	var fixed [headerFixed]byte
	if size < headerFixed+4+trailerSize {
		return nil, corrupt(name, 0, "file of %d bytes is shorter than a header and trailer", size)
	}
	if _, err := ra.ReadAt(fixed[:], 0); err != nil {
		return nil, corrupt(name, 0, "cannot read the header: %v", err)
	}
	if string(fixed[:8]) != headerMagic {
		return nil, corrupt(name, 0, "bad magic")
	}
	if v := binary.LittleEndian.Uint32(fixed[8:]); v != formatVersion {
		return nil, corrupt(name, 8, "unknown version %d", v)
	}
	m := int64(binary.LittleEndian.Uint32(fixed[12:]))
	hdrLen := headerFixed + m + 4
	if m > maxMetaBytes || hdrLen+trailerSize > size {
		return nil, corrupt(name, 12, "metadata length %d does not fit a file of %d bytes", m, size)
	}
	hdr := make([]byte, hdrLen)
	if _, err := ra.ReadAt(hdr, 0); err != nil {
		return nil, corrupt(name, 0, "cannot read the header: %v", err)
	}
	hcrc := binary.LittleEndian.Uint32(hdr[hdrLen-4:])
	if got := crc32.Checksum(hdr[:hdrLen-4], crcTable); got != hcrc {
		return nil, corrupt(name, hdrLen-4, "header checksum %#08x, want %#08x", hcrc, got)
	}
	meta, err := decodeMeta(hdr[headerFixed : headerFixed+m])
	if err != nil {
		return nil, corrupt(name, headerFixed, "%v", err)
	}
	var tr [trailerSize]byte
	if _, err := ra.ReadAt(tr[:], size-trailerSize); err != nil {
		return nil, corrupt(name, size-trailerSize, "cannot read the trailer: %v", err)
	}
	if string(tr[12:]) != trailerMagic {
		return nil, corrupt(name, size-trailerSize, "no trailer: the file is incomplete")
	}
	n := int64(binary.LittleEndian.Uint64(tr[:]))
	if dataLen := size - hdrLen - trailerSize; n != dataLen {
		return nil, corrupt(name, size-trailerSize, "trailer says %d data bytes, the file holds %d", n, dataLen)
	}
	return &Reader{
		name:   name,
		meta:   meta,
		size:   n,
		r:      bufio.NewReaderSize(io.NewSectionReader(ra, hdrLen, n), 64<<10),
		crc:    hcrc,
		want:   binary.LittleEndian.Uint32(tr[8:]),
		closer: closer,
	}, nil
}

// Meta returns the snapshot's metadata, from its header.
func (r *Reader) Meta() raft.SnapshotMeta { return r.meta }

// Size returns the length of the data.
func (r *Reader) Size() int64 { return r.size }

// Read implements io.Reader.
func (r *Reader) Read(p []byte) (int, error) {
	if r.done != nil {
		return 0, r.done
	}
	n, err := r.r.Read(p)
	r.crc = crc32.Update(r.crc, crcTable, p[:n])
	r.read += int64(n)
	if errors.Is(err, io.EOF) {
		switch {
		case r.read != r.size:
			err = corrupt(r.name, r.read, "data ends after %d of %d bytes", r.read, r.size)
		case r.crc != r.want:
			err = corrupt(r.name, r.size, "data checksum %#08x, want %#08x", r.crc, r.want)
		}
		r.done = err
	} else if err != nil {
		r.done = err
	}
	return n, err
}

// Close releases the file. Reading after Close returns ErrClosed.
func (r *Reader) Close() error {
	if r.done == ErrClosed {
		return ErrClosed
	}
	r.done = ErrClosed
	if r.closer != nil {
		return r.closer.Close()
	}
	return nil
}
