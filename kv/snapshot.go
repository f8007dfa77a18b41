package kv

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/cockroachdb/pebble/v2"
)

// A snapshot is the engine's whole contents (data, sessions with their
// cached results, meta with the applied index, clock and limits) as one
// stream of checksummed frames, written from a Pebble snapshot and never
// held in memory whole.
//
// Stream format (do not change; a new format gets a new magic):
//
//	+-----------------------------+
//	| magic "cairnkv" 0x01        |  8 bytes: format version 1
//	+-----------------------------+
//	| frame ...                   |
//	+-----------------------------+
//	| end frame                   |
//	+-----------------------------+
//
//	frame:
//	+--------+---------------+-------------------+-------------------+
//	| kind 1 | length BE4    | payload (length)  | CRC-32C BE4       |
//	+--------+---------------+-------------------+-------------------+
//	  the CRC (Castagnoli) covers kind, length and payload
//
//	kind 'P' (pairs): engine keys in strictly ascending order
//	+----------------+-----+-----------------+-------+-----+
//	| uvarint keylen | key | uvarint vallen  | value | ... |
//	+----------------+-----+-----------------+-------+-----+
//
//	kind 'E' (end): the number of pairs in the stream, BE8. Nothing
//	follows it.
var snapshotMagic = [8]byte{'c', 'a', 'i', 'r', 'n', 'k', 'v', 1}

const (
	framePairs byte = 'P'
	frameEnd   byte = 'E'

	// maxFramePayload bounds a frame, so that a corrupt length cannot make
	// Restore allocate without limit. A frame holds up to
	// SnapshotChunkSize bytes, or one larger pair (at most a key and a
	// value or cached result within the hard limits).
	maxFramePayload = 128 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Snapshot writes the engine's contents to w. It reads a Pebble snapshot,
// so it sees exactly the entries applied before the call, and it buffers
// at most about one frame.
func (s *StateMachine) Snapshot(w io.Writer) error {
	unlock, err := s.acquireOwner()
	if err != nil {
		return err
	}
	defer unlock()
	snap := s.db.NewSnapshot()
	defer snap.Close()
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: keyspaceStart, UpperBound: keyspaceEnd})
	if err != nil {
		return fmt.Errorf("kv: snapshot: %w", err)
	}
	defer it.Close()

	bw := bufio.NewWriterSize(w, 64<<10)
	if _, err := bw.Write(snapshotMagic[:]); err != nil {
		return fmt.Errorf("kv: snapshot: %w", err)
	}
	var payload []byte
	var pairs uint64
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("kv: snapshot: %w", err)
		}
		n := 2*binary.MaxVarintLen64 + len(k) + len(v)
		if n > maxFramePayload {
			return fmt.Errorf("%w: engine pair of %d bytes exceeds a snapshot frame", ErrCorruptEngine, n)
		}
		if len(payload) > 0 && len(payload)+n > s.cfg.SnapshotChunkSize {
			if err := writeFrame(bw, framePairs, payload); err != nil {
				return err
			}
			payload = payload[:0]
		}
		payload = binary.AppendUvarint(payload, uint64(len(k)))
		payload = append(payload, k...)
		payload = binary.AppendUvarint(payload, uint64(len(v)))
		payload = append(payload, v...)
		pairs++
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("kv: snapshot: %w", err)
	}
	if len(payload) > 0 {
		if err := writeFrame(bw, framePairs, payload); err != nil {
			return err
		}
	}
	if err := writeFrame(bw, frameEnd, binary.BigEndian.AppendUint64(nil, pairs)); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("kv: snapshot: %w", err)
	}
	return nil
}

func writeFrame(w io.Writer, kind byte, payload []byte) error {
	var hdr [5]byte
	hdr[0] = kind
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	crc := crc32.Update(crc32.Update(0, crcTable, hdr[:]), crcTable, payload)
	var trailer [4]byte
	binary.BigEndian.PutUint32(trailer[:], crc)
	for _, b := range [][]byte{hdr[:], payload, trailer[:]} {
		if _, err := w.Write(b); err != nil {
			return fmt.Errorf("kv: snapshot: %w", err)
		}
	}
	return nil
}

// readFrame reads one frame into buf (reused) and returns its kind and
// payload.
func readFrame(r io.Reader, buf []byte) (kind byte, payload []byte, _ error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, fmt.Errorf("%w: frame header: %v", ErrCorruptSnapshot, noEOF(err))
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxFramePayload {
		return 0, nil, fmt.Errorf("%w: frame of %d bytes", ErrCorruptSnapshot, n)
	}
	if cap(buf) < int(n)+4 {
		buf = make([]byte, int(n)+4)
	}
	buf = buf[:int(n)+4]
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, nil, fmt.Errorf("%w: frame body: %v", ErrCorruptSnapshot, noEOF(err))
	}
	payload = buf[:n]
	want := binary.BigEndian.Uint32(buf[n:])
	if got := crc32.Update(crc32.Update(0, crcTable, hdr[:]), crcTable, payload); got != want {
		return 0, nil, fmt.Errorf("%w: frame checksum %08x, want %08x", ErrCorruptSnapshot, got, want)
	}
	return hdr[0], payload, nil
}

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Restore replaces the engine's whole contents with a stream Snapshot
// wrote, ingesting it a frame at a time (so a state larger than memory
// restores), and then reloads the applied index, clock, limits and
// sessions from it. Readers fail with ErrUnavailable meanwhile.
//
// Crash safety: a restoring marker is written and synced before the old
// contents are deleted, and deleted (synced) only after the last pair is
// written; the engine's write-ahead log is sequential, so the synced
// deletion makes every pair before it durable too. An engine opened with
// the marker set is wiped (see Open): it starts empty at applied index 0,
// never half old and half new. On error (a corrupt stream, say), Restore
// also leaves the engine empty at applied index 0.
func (s *StateMachine) Restore(r io.Reader) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return ErrClosed
	}
	if err := s.db.Set(restoringKey, nil, pebble.Sync); err != nil {
		return fmt.Errorf("kv: restore: mark: %w", err)
	}
	err := s.ingest(r)
	if err == nil {
		err = s.db.Delete(restoringKey, pebble.Sync)
		if err != nil {
			err = fmt.Errorf("kv: restore: unmark: %w", err)
		}
	}
	if err != nil {
		if werr := s.wipe(); werr != nil {
			err = errors.Join(err, werr)
		}
	}
	if lerr := s.load(); lerr != nil {
		err = errors.Join(err, lerr)
	}
	return err
}

// ingest deletes the engine's contents and writes the stream's pairs, one
// engine batch per frame.
func (s *StateMachine) ingest(r io.Reader) error {
	if err := s.db.DeleteRange(keyspaceStart, keyspaceEnd, pebble.NoSync); err != nil {
		return fmt.Errorf("kv: restore: clear: %w", err)
	}
	br := bufio.NewReaderSize(r, 64<<10)
	var magic [8]byte
	if _, err := io.ReadFull(br, magic[:]); err != nil {
		return fmt.Errorf("%w: header: %v", ErrCorruptSnapshot, noEOF(err))
	}
	if magic != snapshotMagic {
		return fmt.Errorf("%w: bad magic %q", ErrCorruptSnapshot, magic[:])
	}
	var buf, last []byte
	var pairs uint64
	for {
		kind, payload, err := readFrame(br, buf)
		if err != nil {
			return err
		}
		buf = payload[:0]
		switch kind {
		case framePairs:
			if last, err = s.ingestPairs(payload, last, &pairs); err != nil {
				return err
			}
		case frameEnd:
			if len(payload) != 8 {
				return fmt.Errorf("%w: end frame of %d bytes", ErrCorruptSnapshot, len(payload))
			}
			if want := binary.BigEndian.Uint64(payload); want != pairs {
				return fmt.Errorf("%w: %d pairs, the end frame says %d", ErrCorruptSnapshot, pairs, want)
			}
			if _, err := br.ReadByte(); err != io.EOF {
				return fmt.Errorf("%w: data after the end frame", ErrCorruptSnapshot)
			}
			return nil
		default:
			return fmt.Errorf("%w: unknown frame kind %q", ErrCorruptSnapshot, kind)
		}
	}
}

// ingestPairs writes one frame's pairs in one batch. last is the previous
// frame's last key (keys must ascend strictly across the stream).
func (s *StateMachine) ingestPairs(p, last []byte, pairs *uint64) ([]byte, error) {
	b := s.db.NewBatch()
	defer b.Close()
	for len(p) > 0 {
		k, rest, ok := readChunk(p)
		if !ok {
			return nil, fmt.Errorf("%w: truncated key in pairs frame", ErrCorruptSnapshot)
		}
		v, rest, ok := readChunk(rest)
		if !ok {
			return nil, fmt.Errorf("%w: truncated value in pairs frame", ErrCorruptSnapshot)
		}
		p = rest
		if !validEngineKey(k) {
			return nil, fmt.Errorf("%w: key %q is not one the state machine writes", ErrCorruptSnapshot, k)
		}
		if last != nil && bytes.Compare(k, last) <= 0 {
			return nil, fmt.Errorf("%w: keys out of order at %q", ErrCorruptSnapshot, k)
		}
		if k[0] == prefixData {
			if _, _, ok := decodeData(v); !ok {
				return nil, fmt.Errorf("%w: data record of %q", ErrCorruptSnapshot, k[1:])
			}
		}
		if err := b.Set(k, v, nil); err != nil {
			return nil, fmt.Errorf("kv: restore: %w", err)
		}
		last = append(last[:0], k...)
		*pairs++
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return nil, fmt.Errorf("kv: restore: %w", err)
	}
	return last, nil
}

// readChunk splits a uvarint-length-prefixed chunk off p.
func readChunk(p []byte) (chunk, rest []byte, ok bool) {
	n, k := binary.Uvarint(p)
	if k <= 0 || n > uint64(len(p)-k) {
		return nil, nil, false
	}
	return p[k : k+int(n)], p[k+int(n):], true
}

// wipe leaves the engine empty and unmarked, durably.
func (s *StateMachine) wipe() error {
	if err := s.db.DeleteRange(keyspaceStart, keyspaceEnd, pebble.NoSync); err != nil {
		return fmt.Errorf("kv: wipe: %w", err)
	}
	if err := s.db.Delete(restoringKey, pebble.Sync); err != nil {
		return fmt.Errorf("kv: wipe: %w", err)
	}
	return nil
}

// recoverRestore wipes an engine that a crash left in the middle of a
// Restore.
func (s *StateMachine) recoverRestore() error {
	_, closer, err := s.db.Get(restoringKey)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("kv: open: %w", err)
	}
	_ = closer.Close()
	s.cfg.Logger.Warn("kv: engine was left in the middle of a restore; wiping it", "dir", s.cfg.Dir)
	return s.wipe()
}
