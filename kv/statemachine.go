package kv

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"google.golang.org/protobuf/proto"

	"github.com/cairnkv/cairn/api/kvpb"
	"github.com/cairnkv/cairn/raft"
)

// StateMachine is one replica's KV state machine: the group's data,
// sessions and limits in a Pebble engine. It implements
// replica.StateMachine.
//
// Apply, Snapshot and Restore are called by the replica's run goroutine,
// one at a time; Get, Scan, AppliedIndex, Limits and Sync may be called by
// any goroutine at any time. Close is called once, after the replica has
// stopped.
type StateMachine struct {
	cfg Config
	db  *pebble.DB

	// mu excludes readers while the engine's contents are being replaced
	// (Restore) and after Close. Readers only TryRLock it, and fail with
	// ErrUnavailable instead of waiting, so nothing ever waits on Restore.
	// It is never held across a call into another component.
	mu struct {
		sync.RWMutex
		closed bool
	}

	// Published by the apply goroutine for everyone.
	applied atomic.Uint64
	limits  atomic.Pointer[Limits]

	// Owned by the apply goroutine.
	//
	// Invariant: between Apply calls, meta, lim and sessions equal what
	// the engine holds (meta.Limits is lim.Proto()).
	meta     *kvpb.Meta
	lim      Limits
	sessions *sessionTable
}

// Result is what Apply returns for each entry it applied (as an any in
// its slice): the command's response or its failure.
type Result struct {
	// Response is the command's response: a *kvpb.PutResponse,
	// DeleteResponse, CompareAndSwapResponse, AppendResponse,
	// BatchResponse, OpenSessionResponse, KeepAliveResponse,
	// CloseSessionResponse, or the new *kvpb.Limits. Its header's
	// applied_index is the index of the entry that executed the command.
	// Nil when Err is set.
	Response proto.Message
	// Err is the command's failure, a *Error (see the sentinels): it was
	// not executed, or (ErrValueTooLarge on Append) executed to no effect.
	Err error
	// Duplicate says the command was a retry of a (session, seq) already
	// executed: Response or Err is the original outcome, and nothing was
	// executed again.
	Duplicate bool
}

// Open opens (or creates) the engine in cfg.Dir and loads its state. An
// engine left in the middle of a Restore by a crash is wiped: it opens
// empty, at applied index 0, and must be restored again.
func Open(cfg Config) (*StateMachine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cache := pebble.NewCache(cfg.CacheSize)
	defer cache.Unref()
	opts := &pebble.Options{
		FS:                 cfg.FS,
		Cache:              cache,
		Logger:             pebbleLogger{cfg.Logger},
		FormatMajorVersion: pebble.FormatNewest,
	}
	// Bloom filters on every level (the others inherit L0's): most of
	// Apply's point reads (a session's cached result for a new seq) miss.
	opts.Levels[0].FilterPolicy = bloom.FilterPolicy(10)
	db, err := pebble.Open(cfg.Dir, opts)
	if err != nil {
		return nil, fmt.Errorf("kv: open engine in %s: %w", cfg.Dir, err)
	}
	s := &StateMachine{cfg: cfg, db: db}
	if err := s.recoverRestore(); err != nil {
		_ = db.Close()
		return nil, err
	}
	if err := s.load(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the engine. What was applied but not yet synced is made
// durable first.
func (s *StateMachine) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return ErrClosed
	}
	s.mu.closed = true
	err := s.db.LogData(nil, pebble.Sync)
	return errors.Join(err, s.db.Close())
}

// AppliedIndex is the index of the last entry whose effects the engine
// holds. After Open it is the index recovered from disk: a replica starts
// its Raft node with it (Config.Applied) and re-applies only the committed
// entries after it.
func (s *StateMachine) AppliedIndex() raft.Index { return raft.Index(s.applied.Load()) }

// Limits are the group's current limits, as of the last Apply or Restore.
// A server checks requests against them before proposing.
func (s *StateMachine) Limits() Limits { return *s.limits.Load() }

// Sync makes everything applied so far durable, and returns the applied
// index that is now durable: the Raft log may then be truncated up to it
// (see the package doc's crash argument).
func (s *StateMachine) Sync() (raft.Index, error) {
	unlock, err := s.acquire()
	if err != nil {
		return 0, err
	}
	defer unlock()
	idx := s.AppliedIndex()
	if err := s.db.LogData(nil, pebble.Sync); err != nil {
		return 0, fmt.Errorf("kv: sync engine: %w", err)
	}
	return idx, nil
}

// acquire lets a reader in, unless the engine is being restored or closed.
func (s *StateMachine) acquire() (unlock func(), err error) {
	if !s.mu.TryRLock() {
		return nil, errf(ErrUnavailable, "state machine is being restored from a snapshot")
	}
	if s.mu.closed {
		s.mu.RUnlock()
		return nil, ErrClosed
	}
	return s.mu.RUnlock, nil
}

// acquireOwner is acquire for the apply goroutine, which may wait (only
// Close can hold the lock against it).
func (s *StateMachine) acquireOwner() (unlock func(), err error) {
	s.mu.RLock()
	if s.mu.closed {
		s.mu.RUnlock()
		return nil, ErrClosed
	}
	return s.mu.RUnlock, nil
}

// load reads meta and the session table from the engine into memory and
// publishes the applied index and limits.
func (s *StateMachine) load() error {
	meta := &kvpb.Meta{}
	v, closer, err := s.db.Get(metaKey)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		meta.Limits = DefaultLimits.Proto()
	case err != nil:
		return fmt.Errorf("kv: read meta: %w", err)
	default:
		err = proto.Unmarshal(v, meta)
		_ = closer.Close()
		if err != nil {
			return fmt.Errorf("%w: meta: %v", ErrCorruptEngine, err)
		}
	}
	lim := LimitsFromProto(meta.GetLimits())
	meta.Limits = lim.Proto()

	var recs []*kvpb.SessionRecord
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: []byte{prefixSession},
		UpperBound: []byte{prefixSession + 1},
	})
	if err != nil {
		return fmt.Errorf("kv: read sessions: %w", err)
	}
	for it.First(); it.Valid(); it.Next() {
		rec := &kvpb.SessionRecord{}
		if err := proto.Unmarshal(it.Value(), rec); err != nil {
			_ = it.Close()
			return fmt.Errorf("%w: session %x: %v", ErrCorruptEngine, it.Key(), err)
		}
		recs = append(recs, rec)
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("kv: read sessions: %w", err)
	}

	s.meta, s.lim = meta, lim
	s.sessions = newSessionTable()
	s.sessions.load(recs)
	s.publish()
	return nil
}

// publish makes the apply goroutine's applied index and limits visible.
func (s *StateMachine) publish() {
	s.applied.Store(s.meta.GetAppliedIndex())
	if cur := s.limits.Load(); cur == nil || *cur != s.lim {
		l := s.lim
		s.limits.Store(&l)
	}
}

// Apply applies committed entries in order, in one engine batch, and
// returns one *Result per entry. Entries at or below the applied index are
// already reflected in the engine (a replay after a restart) and are
// skipped; their result is nil. A non-nil error means the engine failed:
// nothing of this call was applied, and the replica must stop.
func (s *StateMachine) Apply(entries []raft.Entry) ([]any, error) {
	unlock, err := s.acquireOwner()
	if err != nil {
		return nil, err
	}
	defer unlock()

	b := s.db.NewIndexedBatch()
	defer b.Close()
	a := &applier{s: s, b: b}
	results := make([]any, len(entries))
	for i := range entries {
		e := &entries[i]
		if uint64(e.Index) <= s.meta.GetAppliedIndex() {
			continue
		}
		res, err := a.apply(e)
		if err != nil {
			return nil, s.abandon(err)
		}
		results[i] = res
		s.meta.AppliedIndex, s.meta.AppliedTerm = uint64(e.Index), uint64(e.Term)
	}
	if err := a.setProto(metaKey, s.meta); err != nil {
		return nil, s.abandon(err)
	}
	// NoSync: the Raft log, durable before any entry is applied, is the
	// source of truth; the engine may lag it and catches up by replay. See
	// the package doc.
	if err := b.Commit(pebble.NoSync); err != nil {
		return nil, s.abandon(fmt.Errorf("kv: commit: %w", err))
	}
	s.publish()
	return results, nil
}

// abandon restores the in-memory state from the engine after a failed
// Apply (whose batch was never committed) and returns err.
func (s *StateMachine) abandon(err error) error {
	if lerr := s.load(); lerr != nil {
		return errors.Join(err, lerr)
	}
	return err
}

// pebbleLogger sends Pebble's log lines to slog.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg, "component", "pebble")
	panic("kv: pebble: " + msg)
}
