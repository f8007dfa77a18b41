package client

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/cairnkv/cairn/api/kvpb"
	"github.com/cairnkv/cairn/client/internal/fakekv"
)

func TestPutGetDelete(t *testing.T) {
	ctx := testContext(t)
	cl := startCluster(t, fakekv.Config{})
	c := newClient(t, cl.Endpoints(), nil)

	if _, err := c.Get(ctx, []byte("k")); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("get of an absent key = %v, want ErrKeyNotFound", err)
	}
	p1, err := c.Put(ctx, []byte("k"), []byte("v1"))
	if err != nil {
		t.Fatal(err)
	}
	p2, err := c.Put(ctx, []byte("k"), []byte("v2"))
	if err != nil {
		t.Fatal(err)
	}
	if p1.PrevVersion != 0 || p2.PrevVersion != p1.Version || p2.Version <= p1.Version {
		t.Errorf("puts = %+v, %+v", p1, p2)
	}
	g, err := c.Get(ctx, []byte("k"))
	if err != nil || string(g.Value) != "v2" || g.Version != p2.Version || string(g.Key) != "k" {
		t.Fatalf("get = %+v, %v", g, err)
	}
	if g.Header.Node != 1 || g.Header.AppliedIndex < Index(p2.Version) || g.Header.Term != 1 {
		t.Errorf("get header = %+v", g.Header)
	}
	d, err := c.Delete(ctx, []byte("k"))
	if err != nil || !d.Deleted || d.PrevVersion != p2.Version {
		t.Fatalf("delete = %+v, %v", d, err)
	}
	if d, err := c.Delete(ctx, []byte("k")); err != nil || d.Deleted {
		t.Fatalf("second delete = %+v, %v", d, err)
	}
	if _, err := c.Get(ctx, []byte("k")); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("get after delete = %v", err)
	}
}

func TestInvalidArgument(t *testing.T) {
	ctx := testContext(t)
	cl := startCluster(t, fakekv.Config{Limits: fakekv.Limits{MaxKeySize: 8, MaxValueSize: 16}})
	c := newClient(t, cl.Endpoints(), nil)

	_, err := c.Put(ctx, nil, []byte("v"))
	if !errors.Is(err, ErrEmptyKey) || !errors.Is(err, ErrInvalidArgument) || errors.Is(err, ErrKeyTooLarge) {
		t.Errorf("put of an empty key = %v, want ErrEmptyKey", err)
	}
	_, err = c.Put(ctx, []byte("k"), make([]byte, 17))
	var ia *InvalidArgumentError
	if !errors.As(err, &ia) || !errors.Is(err, ErrValueTooLarge) {
		t.Fatalf("put of a large value = %v, want ErrValueTooLarge", err)
	}
	if ia.Code != kvpb.ErrorCode_VALUE_TOO_LARGE || ia.Limit != "max_value_size" || ia.LimitValue != 16 || ia.Actual != 17 {
		t.Errorf("error = %+v, want max_value_size 16, found 17", ia)
	}
	if _, err := c.Get(ctx, []byte("too-long-key")); !errors.Is(err, ErrKeyTooLarge) {
		t.Errorf("get of a long key = %v, want ErrKeyTooLarge", err)
	}
	// An Append past the limit fails when executed, and that failure is
	// the seq's outcome: a retry (after a lost reply) returns it again.
	cl.SetFault(func(call fakekv.Call) fakekv.Action {
		if call.Method == "Append" && call.Attempt == 1 {
			return fakekv.Action{DropReply: true}
		}
		return fakekv.Action{}
	})
	if _, err := c.Put(ctx, []byte("k"), make([]byte, 16)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Append(ctx, []byte("k"), []byte("x")); !errors.Is(err, ErrValueTooLarge) || errors.Is(err, ErrOutcomeUnknown) {
		t.Errorf("append past the limit = %v, want ErrValueTooLarge", err)
	}
	if n := len(cl.Executions()); n != 4 { // two failed puts, the put, the append, once each
		t.Errorf("%d executions, want 4", n)
	}
}

func TestCompareAndSwap(t *testing.T) {
	ctx := testContext(t)
	cl := startCluster(t, fakekv.Config{})
	c := newClient(t, cl.Endpoints(), nil)
	k := []byte("k")

	r1, err := c.CompareAndSwap(ctx, k, IfAbsent(), []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.CompareAndSwap(ctx, k, IfAbsent(), []byte("b"))
	var failed *CASFailedError
	if !errors.As(err, &failed) || !errors.Is(err, ErrCASFailed) {
		t.Fatalf("CAS if absent on a present key = %v, want a CASFailedError", err)
	}
	if failed.Current == nil || string(failed.Current.Value) != "a" || failed.Current.Version != r1.Version || string(failed.Key) != "k" {
		t.Errorf("failure = %+v, want current a at %d", failed, r1.Version)
	}
	r2, err := c.CompareAndSwap(ctx, k, IfVersion(r1.Version), []byte("b"))
	if err != nil || r2.Version <= r1.Version {
		t.Fatalf("CAS by version = %+v, %v", r2, err)
	}
	if _, err := c.CompareAndSwap(ctx, k, IfValue([]byte("a")), []byte("c")); !errors.Is(err, ErrCASFailed) {
		t.Fatalf("CAS on a stale value = %v", err)
	}
	if _, err := c.CompareAndSwap(ctx, k, IfValue([]byte("b")), []byte("c")); err != nil {
		t.Fatal(err)
	}
	// An empty expected value does not match an absent key.
	if _, err := c.CompareAndSwap(ctx, []byte("absent"), IfValue(nil), []byte("x")); !errors.Is(err, ErrCASFailed) {
		t.Fatalf("CAS on an absent key by empty value = %v", err)
	} else if errors.As(err, &failed); failed.Current != nil {
		t.Errorf("failure on an absent key has current %+v", failed.Current)
	}
	r, err := c.CompareAndDelete(ctx, k, IfValue([]byte("c")))
	if err != nil || r.Version != 0 {
		t.Fatalf("compare-and-delete = %+v, %v", r, err)
	}
	if _, err := c.Get(ctx, k); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("get after compare-and-delete = %v", err)
	}
}

func TestBatch(t *testing.T) {
	ctx := testContext(t)
	cl := startCluster(t, fakekv.Config{})
	c := newClient(t, cl.Endpoints(), nil)
	put, err := c.Put(ctx, []byte("a"), []byte("1"))
	if err != nil {
		t.Fatal(err)
	}

	b := NewBatch().
		CompareAndSwap([]byte("a"), IfVersion(put.Version), []byte("2")).
		Put([]byte("b"), []byte("x")).
		Append([]byte("b"), []byte("y")).
		Delete([]byte("c"))
	res, err := c.Batch(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	kinds := []OpKind{}
	for _, r := range res.Results {
		kinds = append(kinds, r.Kind)
	}
	if !slices.Equal(kinds, []OpKind{OpCompareAndSwap, OpPut, OpAppend, OpDelete}) {
		t.Errorf("result kinds = %v", kinds)
	}
	if res.Results[2].Length != 2 || res.Results[3].Deleted || res.Results[0].Version != Version(res.Header.AppliedIndex) {
		t.Errorf("results = %+v", res)
	}

	// A failed condition applies nothing and names its op.
	b2 := NewBatch().Put([]byte("b"), []byte("changed")).CompareAndDelete([]byte("a"), IfVersion(put.Version))
	_, err = c.Batch(ctx, b2)
	var failed *CASFailedError
	if !errors.As(err, &failed) || failed.Op != 1 || string(failed.Key) != "a" || string(failed.Current.Value) != "2" {
		t.Fatalf("batch with a stale condition = %v (%+v)", err, failed)
	}
	if g, err := c.Get(ctx, []byte("b")); err != nil || string(g.Value) != "xy" {
		t.Fatalf("b = %+v, %v; want the failed batch not applied", g, err)
	}
}

func TestScan(t *testing.T) {
	ctx := testContext(t)
	cl := startCluster(t, fakekv.Config{Limits: fakekv.Limits{MaxScan: 10}})
	c := newClient(t, cl.Endpoints(), nil)
	var want []string
	for i := range 25 {
		k := fmt.Sprintf("k%02d", i)
		want = append(want, k)
		if _, err := c.Put(ctx, []byte(k), []byte("v"+k)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Put(ctx, []byte("z"), []byte("outside")); err != nil {
		t.Fatal(err)
	}

	// One page at a time.
	p1, err := c.Scan(ctx, []byte("k"), []byte("l"), 4)
	if err != nil || len(p1.KVs) != 4 || len(p1.Continuation) == 0 || string(p1.KVs[3].Key) != "k03" {
		t.Fatalf("first page = %+v, %v", p1, err)
	}
	p2, err := c.Scan(ctx, []byte("k"), []byte("l"), 4, WithContinuation(p1.Continuation), WithKeysOnly())
	if err != nil || string(p2.KVs[0].Key) != "k04" || p2.KVs[0].Value != nil {
		t.Fatalf("second page = %+v, %v", p2, err)
	}

	// All of it, across pages: the server's maximum (10), or 7 a page.
	for _, opts := range [][]ReadOption{nil, {WithPageSize(7)}, {WithPageSize(7), WithConsistency(Serializable)}} {
		var got []string
		before := len(callsOf(cl.Calls(), "Scan"))
		for kv, err := range c.ScanAll(ctx, []byte("k"), []byte("l"), opts...) {
			if err != nil {
				t.Fatal(err)
			}
			if string(kv.Value) != "v"+string(kv.Key) {
				t.Errorf("%s = %q", kv.Key, kv.Value)
			}
			got = append(got, string(kv.Key))
		}
		if !slices.Equal(got, want) {
			t.Errorf("ScanAll %d opts = %v, want %v", len(opts), got, want)
		}
		if pages := len(callsOf(cl.Calls(), "Scan")) - before; pages != 3 && pages != 4 {
			t.Errorf("ScanAll took %d pages", pages)
		}
	}

	// Stopping early stops reading.
	n := 0
	before := len(callsOf(cl.Calls(), "Scan"))
	for range c.ScanAll(ctx, nil, nil, WithPageSize(2)) {
		if n++; n == 3 {
			break
		}
	}
	if pages := len(callsOf(cl.Calls(), "Scan")) - before; pages != 2 {
		t.Errorf("broken-off ScanAll read %d pages, want 2", pages)
	}

	// An error is yielded once.
	cl.SetFault(func(call fakekv.Call) fakekv.Action {
		return fakekv.Action{Err: (&kvpb.ErrorDetail{Code: kvpb.ErrorCode_MALFORMED, Message: "bad token"}).Err()}
	})
	errs := 0
	for _, err := range c.ScanAll(ctx, nil, nil) {
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("ScanAll error = %v", err)
		}
		errs++
	}
	if errs != 1 {
		t.Errorf("%d errors yielded, want 1", errs)
	}
}
