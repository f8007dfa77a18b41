package kv

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/cairnkv/cairn/api/kvpb"
)

func TestPutGetDelete(t *testing.T) {
	sm := openMem(t, nil)
	defer sm.Close()
	l := newLog(t, sm)

	if _, _, found := get(t, sm, "a"); found {
		t.Fatal("empty engine has key a")
	}
	p1 := l.put("a", "1")
	if p1.GetVersion() != 1 || p1.GetPrevVersion() != 0 || p1.GetHeader().GetAppliedIndex() != 1 {
		t.Fatalf("first put: %v", p1)
	}
	p2 := l.put("a", "2")
	if p2.GetVersion() != 2 || p2.GetPrevVersion() != 1 {
		t.Fatalf("second put: %v", p2)
	}
	if v, ver, _ := get(t, sm, "a"); v != "2" || ver != 2 {
		t.Fatalf("get a = %q@%d, want 2@2", v, ver)
	}
	resp, _ := sm.Get([]byte("a"))
	if resp.GetHeader().GetAppliedIndex() != 2 {
		t.Fatalf("get's applied index %d, want 2", resp.GetHeader().GetAppliedIndex())
	}

	d := l.ok(&kvpb.DeleteRequest{Key: []byte("a")}).(*kvpb.DeleteResponse)
	if !d.GetDeleted() || d.GetPrevVersion() != 2 {
		t.Fatalf("delete: %v", d)
	}
	if _, _, found := get(t, sm, "a"); found {
		t.Fatal("a still there after delete")
	}
	d = l.ok(&kvpb.DeleteRequest{Key: []byte("a")}).(*kvpb.DeleteResponse)
	if d.GetDeleted() {
		t.Fatal("deleting an absent key reported deleted")
	}
	// Re-created: a new version, never an old one.
	if p := l.put("a", "3"); p.GetVersion() != 5 || p.GetPrevVersion() != 0 {
		t.Fatalf("re-create: %v", p)
	}
	// An empty value is a value.
	l.put("e", "")
	if v, _, found := get(t, sm, "e"); !found || v != "" {
		t.Fatalf("empty value: found=%v %q", found, v)
	}
}

func TestCompareAndSwap(t *testing.T) {
	cas := func(k string, expected any, newValue string, del bool) *kvpb.CompareAndSwapRequest {
		r := &kvpb.CompareAndSwapRequest{Key: []byte(k), NewValue: []byte(newValue), Delete: del}
		switch e := expected.(type) {
		case string:
			r.Expected = &kvpb.CompareAndSwapRequest_ExpectedValue{ExpectedValue: []byte(e)}
		case int:
			r.Expected = &kvpb.CompareAndSwapRequest_ExpectedVersion{ExpectedVersion: uint64(e)}
		}
		return r
	}
	// Each case runs on a fresh engine holding k=v@1 and empty=""@2.
	tests := []struct {
		name      string
		req       *kvpb.CompareAndSwapRequest
		succeeded bool
		after     string // value of the key after; "<absent>" if none
		version   uint64 // response version on success
		current   string // current value reported on failure; "<absent>" if none
	}{
		{"value matches", cas("k", "v", "w", false), true, "w", 3, ""},
		{"value differs", cas("k", "x", "w", false), false, "v", 0, "v"},
		{"value on absent key", cas("nokey", "", "w", false), false, "<absent>", 0, "<absent>"},
		{"empty value matches empty", cas("empty", "", "w", false), true, "w", 3, ""},
		{"version matches", cas("k", 1, "w", false), true, "w", 3, ""},
		{"version differs", cas("k", 2, "w", false), false, "v", 0, "v"},
		{"version 0 creates absent", cas("nokey", 0, "new", false), true, "new", 3, ""},
		{"version 0 on present key", cas("k", 0, "new", false), false, "v", 0, "v"},
		{"delete on version", cas("k", 1, "", true), true, "<absent>", 0, ""},
		{"delete on value", cas("k", "v", "", true), true, "<absent>", 0, ""},
		{"delete on wrong value", cas("k", "nope", "", true), false, "v", 0, "v"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sm := openMem(t, nil)
			defer sm.Close()
			l := newLog(t, sm)
			l.put("k", "v")
			l.put("empty", "")
			resp := l.ok(tt.req).(*kvpb.CompareAndSwapResponse)
			if resp.GetSucceeded() != tt.succeeded {
				t.Fatalf("succeeded = %v, want %v (%v)", resp.GetSucceeded(), tt.succeeded, resp)
			}
			if tt.succeeded && resp.GetVersion() != tt.version {
				t.Fatalf("version = %d, want %d", resp.GetVersion(), tt.version)
			}
			if !tt.succeeded {
				cur := "<absent>"
				if resp.GetCurrent() != nil {
					cur = string(resp.GetCurrent().GetValue())
					if !bytes.Equal(resp.GetCurrent().GetKey(), tt.req.GetKey()) || resp.GetCurrent().GetVersion() == 0 {
						t.Fatalf("current = %v", resp.GetCurrent())
					}
				}
				if cur != tt.current {
					t.Fatalf("current = %q, want %q", cur, tt.current)
				}
			}
			v, _, found := get(t, sm, string(tt.req.GetKey()))
			if !found {
				v = "<absent>"
			}
			if v != tt.after {
				t.Fatalf("after: %q, want %q", v, tt.after)
			}
		})
	}
}

func TestAppend(t *testing.T) {
	sm := openMem(t, nil)
	defer sm.Close()
	l := newLog(t, sm)
	app := func(k, s string) *Result {
		return l.do(&kvpb.AppendRequest{Key: []byte(k), Suffix: []byte(s)})
	}
	r := app("log", "ab")
	if a := r.Response.(*kvpb.AppendResponse); a.GetLength() != 2 || a.GetVersion() != 1 {
		t.Fatalf("append to absent key: %v", a)
	}
	r = app("log", "cde")
	if a := r.Response.(*kvpb.AppendResponse); a.GetLength() != 5 || a.GetVersion() != 2 {
		t.Fatalf("second append: %v", a)
	}
	if v, _, _ := get(t, sm, "log"); v != "abcde" {
		t.Fatalf("value %q", v)
	}

	// Growing past the value limit fails whole: nothing appended.
	l.ok(&kvpb.Limits{MaxValueSize: 8})
	r = app("log", "6789")
	wantCode(t, r.Err, ErrValueTooLarge)
	if e := r.Err.(*Error); e.Limit != "max_value_size" || e.LimitValue != 8 || e.Actual != 9 || !strings.Contains(e.Message, "max_value_size") {
		t.Fatalf("error does not name the limit: %+v", e)
	}
	if v, _, _ := get(t, sm, "log"); v != "abcde" {
		t.Fatalf("value after refused append %q", v)
	}
	app("log", "678")
	if v, _, _ := get(t, sm, "log"); v != "abcde678" {
		t.Fatalf("value %q", v)
	}
}

func TestBatch(t *testing.T) {
	casVersion := func(k string, ver uint64, v string) *kvpb.BatchOp {
		return &kvpb.BatchOp{Op: &kvpb.BatchOp_CompareAndSwap{CompareAndSwap: &kvpb.CompareAndSwapRequest{
			Key: []byte(k), Expected: &kvpb.CompareAndSwapRequest_ExpectedVersion{ExpectedVersion: ver}, NewValue: []byte(v)}}}
	}
	putOp := func(k, v string) *kvpb.BatchOp { return &kvpb.BatchOp{Op: &kvpb.BatchOp_Put{Put: put(k, v)}} }
	appendOp := func(k, s string) *kvpb.BatchOp {
		return &kvpb.BatchOp{Op: &kvpb.BatchOp_Append{Append: &kvpb.AppendRequest{Key: []byte(k), Suffix: []byte(s)}}}
	}
	delOp := func(k string) *kvpb.BatchOp {
		return &kvpb.BatchOp{Op: &kvpb.BatchOp_Delete{Delete: &kvpb.DeleteRequest{Key: []byte(k)}}}
	}

	t.Run("all succeed, each op sees the ones before", func(t *testing.T) {
		sm := openMem(t, nil)
		defer sm.Close()
		l := newLog(t, sm)
		l.put("x", "old") // version 1
		resp := l.ok(&kvpb.BatchRequest{Ops: []*kvpb.BatchOp{
			putOp("a", "1"),
			casVersion("a", 2, "2"), // the put above gave a version 2
			appendOp("a", "+"),
			casVersion("x", 1, "new"),
			delOp("x"),
			putOp("x", "again"),
		}}).(*kvpb.BatchResponse)
		if !resp.GetSucceeded() || len(resp.GetResults()) != 6 {
			t.Fatalf("batch: %v", resp)
		}
		if a := resp.GetResults()[2].GetAppend(); a.GetLength() != 2 {
			t.Fatalf("append in batch saw %v", a)
		}
		if d := resp.GetResults()[4].GetDelete(); !d.GetDeleted() || d.GetPrevVersion() != 2 {
			t.Fatalf("delete in batch saw %v", d)
		}
		if v, ver, _ := get(t, sm, "a"); v != "2+" || ver != 2 {
			t.Fatalf("a = %q@%d", v, ver)
		}
		if v, ver, _ := get(t, sm, "x"); v != "again" || ver != 2 {
			t.Fatalf("x = %q@%d", v, ver)
		}
	})

	t.Run("a failed compare-and-swap applies nothing", func(t *testing.T) {
		sm := openMem(t, nil)
		defer sm.Close()
		l := newLog(t, sm)
		l.put("x", "old")
		before := dataDump(t, sm)
		resp := l.ok(&kvpb.BatchRequest{Ops: []*kvpb.BatchOp{
			putOp("a", "1"),
			delOp("x"),
			casVersion("y", 0, "created"), // succeeds
			casVersion("x", 1, "new"),     // x was deleted by op 1: fails
			putOp("b", "2"),
		}}).(*kvpb.BatchResponse)
		if resp.GetSucceeded() || resp.GetFailedOp() != 3 || len(resp.GetResults()) != 0 {
			t.Fatalf("batch: %v", resp)
		}
		if resp.GetFailed().GetSucceeded() || resp.GetFailed().GetCurrent() != nil {
			t.Fatalf("failed op's response %v, want x absent as the batch saw it", resp.GetFailed())
		}
		equalDumps(t, "data after a failed batch", before, dataDump(t, sm))
	})

	t.Run("an op's error fails the batch whole", func(t *testing.T) {
		sm := openMem(t, nil)
		defer sm.Close()
		l := newLog(t, sm)
		l.ok(&kvpb.Limits{MaxValueSize: 4})
		r := l.do(&kvpb.BatchRequest{Ops: []*kvpb.BatchOp{putOp("a", "1"), appendOp("b", "123"), appendOp("b", "45")}})
		wantCode(t, r.Err, ErrValueTooLarge)
		if !strings.Contains(r.Err.Error(), "batch op 2") {
			t.Fatalf("error does not name the op: %v", r.Err)
		}
		if d := dataDump(t, sm); len(d) != 0 {
			t.Fatalf("data after a failed batch: %v", d)
		}
		r = l.do(&kvpb.BatchRequest{Ops: []*kvpb.BatchOp{putOp("a", "1"), {}}})
		wantCode(t, r.Err, ErrMalformed)
		r = l.do(&kvpb.BatchRequest{Ops: []*kvpb.BatchOp{putOp("a", "1"), putOp("", "1")}})
		wantCode(t, r.Err, ErrEmptyKey)
		r = l.do(&kvpb.BatchRequest{})
		wantCode(t, r.Err, ErrMalformed)
		if d := dataDump(t, sm); len(d) != 0 {
			t.Fatalf("data after failed batches: %v", d)
		}
	})
}

func TestScan(t *testing.T) {
	sm := openMem(t, nil, func(c *Config) { c.MaxScanLimit = 50 })
	defer sm.Close()
	l := newLog(t, sm)
	var want []string
	for i := range 120 {
		k := string(rune('a'+i%26)) + strings.Repeat("z", i/26)
		l.put(k, k+"-value")
		want = append(want, k)
	}
	slices.Sort(want)

	scanAll := func(req *kvpb.ScanRequest) (keys []string, pages int) {
		req = proto.Clone(req).(*kvpb.ScanRequest)
		for {
			resp, err := sm.Scan(req)
			if err != nil {
				t.Fatalf("Scan: %v", err)
			}
			if resp.GetHeader().GetAppliedIndex() != uint64(l.index) {
				t.Fatalf("scan applied index %d", resp.GetHeader().GetAppliedIndex())
			}
			pages++
			for _, kv := range resp.GetKvs() {
				keys = append(keys, string(kv.GetKey()))
				if req.GetKeysOnly() != (kv.GetValue() == nil) {
					t.Fatalf("keys_only %v but value %q", req.GetKeysOnly(), kv.GetValue())
				}
			}
			if len(resp.GetContinuation()) == 0 {
				return keys, pages
			}
			req.Continuation = resp.GetContinuation()
		}
	}

	keys, pages := scanAll(&kvpb.ScanRequest{Limit: 7})
	if strings.Join(keys, ",") != strings.Join(want, ",") || pages != 18 {
		t.Fatalf("paged scan: %d pages, keys %v", pages, keys)
	}
	// Limit 0 takes MaxScanLimit; so does a limit above it.
	if _, pages := scanAll(&kvpb.ScanRequest{}); pages != 3 {
		t.Fatalf("limit 0: %d pages, want 3", pages)
	}
	if _, pages := scanAll(&kvpb.ScanRequest{Limit: 1000, KeysOnly: true}); pages != 3 {
		t.Fatalf("limit 1000: %d pages, want 3", pages)
	}
	// A bounded range.
	keys, _ = scanAll(&kvpb.ScanRequest{Start: []byte("b"), End: []byte("c"), Limit: 2})
	if strings.Join(keys, ",") != "b,bz,bzz,bzzz,bzzzz" {
		t.Fatalf("[b, c): %v", keys)
	}
	// An exact page: no continuation when nothing follows.
	resp, err := sm.Scan(&kvpb.ScanRequest{Start: []byte("b"), End: []byte("c"), Limit: 5})
	if err != nil || len(resp.GetKvs()) != 5 || len(resp.GetContinuation()) != 0 {
		t.Fatalf("exact page: %v %v", resp, err)
	}
	// Empty and inverted ranges.
	resp, err = sm.Scan(&kvpb.ScanRequest{Start: []byte("c"), End: []byte("b")})
	if err != nil || len(resp.GetKvs()) != 0 {
		t.Fatalf("inverted range: %v %v", resp, err)
	}

	// The byte budget: a response stays within max_request_size.
	l.ok(&kvpb.Limits{MaxRequestSize: 1000, MaxValueSize: 1000, MaxKeySize: 100})
	keys, pages = scanAll(&kvpb.ScanRequest{})
	if len(keys) != 120 || pages < 5 {
		t.Fatalf("byte-bounded scan: %d keys in %d pages", len(keys), pages)
	}

	// Bad tokens.
	for _, c := range [][]byte{{9, 'a'}, {continuationV1}, append([]byte{continuationV1}, "a"...)} {
		_, err := sm.Scan(&kvpb.ScanRequest{Start: []byte("b"), Continuation: c})
		wantCode(t, err, ErrMalformed)
	}
}
