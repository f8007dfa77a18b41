package kv

import (
	"cmp"
	"container/list"
	"slices"

	"github.com/cairnkv/cairn/api/kvpb"
)

// sessionTable is the in-memory index of the live sessions, whose records
// live in the engine ('s' keys, with their cached results under 'r'). It
// holds one small record per session (no results), so its memory is
// bounded by Limits.MaxSessions.
//
// Owned by the apply goroutine (Apply, Restore, Open); never read by
// others.
//
// Invariant: lru orders sessions by LastActiveUnixNano, oldest first. It
// holds because a session is moved to the back whenever it is touched,
// and it is touched at the log clock, which never goes back.
type sessionTable struct {
	byID map[uint64]*list.Element // of *kvpb.SessionRecord
	lru  *list.List
}

func newSessionTable() *sessionTable {
	return &sessionTable{byID: make(map[uint64]*list.Element), lru: list.New()}
}

func (t *sessionTable) len() int { return len(t.byID) }

func (t *sessionTable) get(id uint64) *kvpb.SessionRecord {
	if e, ok := t.byID[id]; ok {
		return e.Value.(*kvpb.SessionRecord)
	}
	return nil
}

// add inserts a session just touched (at the newest time).
func (t *sessionTable) add(rec *kvpb.SessionRecord) {
	t.byID[rec.GetId()] = t.lru.PushBack(rec)
}

// touch records activity at now (the log clock).
func (t *sessionTable) touch(rec *kvpb.SessionRecord, now int64) {
	rec.LastActiveUnixNano = now
	t.lru.MoveToBack(t.byID[rec.GetId()])
}

func (t *sessionTable) remove(id uint64) {
	if e, ok := t.byID[id]; ok {
		t.lru.Remove(e)
		delete(t.byID, id)
	}
}

// oldest is the least recently active session, or nil.
func (t *sessionTable) oldest() *kvpb.SessionRecord {
	if e := t.lru.Front(); e != nil {
		return e.Value.(*kvpb.SessionRecord)
	}
	return nil
}

// load rebuilds the table from records read from the engine, in any order.
func (t *sessionTable) load(recs []*kvpb.SessionRecord) {
	*t = *newSessionTable()
	slices.SortFunc(recs, func(a, b *kvpb.SessionRecord) int {
		if c := cmp.Compare(a.GetLastActiveUnixNano(), b.GetLastActiveUnixNano()); c != 0 {
			return c
		}
		return cmp.Compare(a.GetId(), b.GetId())
	})
	for _, r := range recs {
		t.add(r)
	}
}
