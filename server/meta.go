package server

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"path/filepath"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/storage/vfs"
)

// The meta file names the cluster and node a data directory belongs to,
// so that a node never starts on another node's (or cluster's) history.
//
// File format (do not change; a new layout gets a new version):
//
//	0        8          12         16           24         32        36
//	+--------+----------+----------+------------+----------+---------+
//	| magic  | version  | flags    | cluster id | node id  | CRC-32C |
//	| 8 B    | u32 LE   | u32 LE   | u64 LE     | u64 LE   | u32 LE  |
//	+--------+----------+----------+------------+----------+---------+
//	  the CRC (Castagnoli) covers bytes 0-31
//
// flags bit 0 (metaInitialized) is set once the node's groups have been
// created: a start that finds it clear is the first start again (one that
// crashed before it finished), and bootstraps the groups that are still
// empty. The file is written under a temporary name, synced, renamed over
// the old one and the directory synced, so a crash leaves the old file or
// the new one.
const (
	metaFileName    = "CAIRN_META"
	metaTempName    = metaFileName + ".tmp"
	metaVersion     = 1
	metaSize        = 36
	metaInitialized = 1 << 0
)

var (
	metaMagic = [8]byte{'c', 'a', 'i', 'r', 'n', 'd', 'i', 'r'}
	crcTable  = crc32.MakeTable(crc32.Castagnoli)
)

// dataDirMeta is the meta file's content.
type dataDirMeta struct {
	version     uint32
	initialized bool
	cluster     uint64
	node        raft.NodeID
}

func (m dataDirMeta) marshal() []byte {
	b := make([]byte, metaSize)
	copy(b[0:8], metaMagic[:])
	binary.LittleEndian.PutUint32(b[8:12], m.version)
	var flags uint32
	if m.initialized {
		flags |= metaInitialized
	}
	binary.LittleEndian.PutUint32(b[12:16], flags)
	binary.LittleEndian.PutUint64(b[16:24], m.cluster)
	binary.LittleEndian.PutUint64(b[24:32], uint64(m.node))
	binary.LittleEndian.PutUint32(b[32:36], crc32.Checksum(b[:32], crcTable))
	return b
}

func unmarshalMeta(b []byte) (dataDirMeta, error) {
	if len(b) != metaSize {
		return dataDirMeta{}, fmt.Errorf("size %d, want %d", len(b), metaSize)
	}
	if [8]byte(b[0:8]) != metaMagic {
		return dataDirMeta{}, fmt.Errorf("bad magic %q", b[0:8])
	}
	if got, want := binary.LittleEndian.Uint32(b[32:36]), crc32.Checksum(b[:32], crcTable); got != want {
		return dataDirMeta{}, fmt.Errorf("checksum %08x, want %08x", got, want)
	}
	m := dataDirMeta{
		version:     binary.LittleEndian.Uint32(b[8:12]),
		initialized: binary.LittleEndian.Uint32(b[12:16])&metaInitialized != 0,
		cluster:     binary.LittleEndian.Uint64(b[16:24]),
		node:        raft.NodeID(binary.LittleEndian.Uint64(b[24:32])),
	}
	if m.version != metaVersion {
		return dataDirMeta{}, fmt.Errorf("layout version %d; this server reads version %d", m.version, metaVersion)
	}
	return m, nil
}

// openDataDir checks (or, on first start, claims) dir for cluster and
// node, and returns its meta: meta.initialized is false on a first start.
func openDataDir(fsys vfs.FS, dir string, cluster uint64, node raft.NodeID) (dataDirMeta, error) {
	if err := vfs.MkdirAllSync(fsys, dir); err != nil {
		return dataDirMeta{}, fmt.Errorf("server: create data directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, metaFileName)
	b, err := vfs.ReadFile(fsys, path)
	if errors.Is(err, fs.ErrNotExist) {
		names, lerr := fsys.List(dir)
		if lerr != nil {
			return dataDirMeta{}, fmt.Errorf("server: list data directory %s: %w", dir, lerr)
		}
		for _, name := range names {
			if name != metaTempName {
				return dataDirMeta{}, &dirError{ErrNotDataDir, fmt.Sprintf(
					"server: %s is not a cairn data directory: it is not empty (it holds %q) but has no %s file; give the node an empty directory, or restore the meta file",
					dir, name, metaFileName)}
			}
		}
		m := dataDirMeta{version: metaVersion, cluster: cluster, node: node}
		if err := writeMeta(fsys, dir, m); err != nil {
			return dataDirMeta{}, err
		}
		return m, nil
	}
	if err != nil {
		return dataDirMeta{}, fmt.Errorf("server: read %s: %w", path, err)
	}
	m, err := unmarshalMeta(b)
	if err != nil {
		return dataDirMeta{}, &dirError{ErrDataDirCorrupt, fmt.Sprintf("server: data directory %s is damaged: %s: %v", dir, path, err)}
	}
	if m.cluster != cluster || m.node != node {
		return dataDirMeta{}, &dirError{ErrDataDirMismatch, fmt.Sprintf(
			"server: data directory %s belongs to cluster %d node %d, and this is cluster %d node %d: refusing to start on another node's history; give this node its own data directory",
			dir, m.cluster, m.node, cluster, node)}
	}
	return m, nil
}

// writeMeta replaces dir's meta file with m, atomically and durably.
func writeMeta(fsys vfs.FS, dir string, m dataDirMeta) error {
	tmp, path := filepath.Join(dir, metaTempName), filepath.Join(dir, metaFileName)
	f, err := fsys.Create(tmp)
	if err != nil {
		return fmt.Errorf("server: write %s: %w", tmp, err)
	}
	_, err = f.Write(m.marshal())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fsys.Rename(tmp, path)
	}
	if err == nil {
		err = vfs.SyncDir(fsys, dir)
	}
	if err != nil {
		return fmt.Errorf("server: write %s: %w", path, err)
	}
	return nil
}
