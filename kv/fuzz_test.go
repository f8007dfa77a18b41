package kv

import (
	"bytes"
	"errors"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/protobuf/proto"

	"github.com/cairnkv/cairn/raft"
)

func commandSeeds(f *testing.F) {
	g := newGen(1)
	l := &testLog{t: f, now: t0}
	for range 40 {
		f.Add(l.entry(g.next(l.index + 1)).Data)
	}
	f.Add([]byte{})
	f.Add([]byte{commandFormatProto})
	f.Add([]byte{commandFormatProto, 0x52, 0x00})
	f.Add([]byte{2, 1, 2, 3})
}

// Arbitrary bytes never make the decoder panic, and what it accepts
// re-encodes to an equal command.
func FuzzDecodeCommand(f *testing.F) {
	commandSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		cmd, err := DecodeCommand(data)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %v is not a *Error", err)
			}
			return
		}
		again, err := EncodeCommand(cmd)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		cmd2, err := DecodeCommand(again)
		if err != nil || !proto.Equal(cmd, cmd2) {
			t.Fatalf("round trip: %v %v", cmd2, err)
		}
		_ = DefaultLimits.CheckCommand(cmd, len(data))
	})
}

var fuzzSM struct {
	once sync.Once
	sm   *StateMachine
	next raft.Index
}

// Arbitrary entry data never makes Apply panic or fail as an engine
// failure: a bad command is a command's failure, reported in its result.
func FuzzApply(f *testing.F) {
	commandSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzSM.once.Do(func() {
			sm, err := Open(Config{Dir: "fuzz", FS: vfs.NewMem(), CacheSize: 1 << 20})
			if err != nil {
				panic(err)
			}
			fuzzSM.sm = sm
		})
		fuzzSM.next++
		res, err := fuzzSM.sm.Apply([]raft.Entry{{Term: 1, Index: fuzzSM.next, Data: data}})
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		r := res[0].(*Result)
		if (r.Err == nil) == (r.Response == nil) {
			t.Fatalf("result %+v: want exactly one of Response and Err", r)
		}
	})
}

// Arbitrary bytes never make Restore panic; it accepts them or fails with
// ErrCorruptSnapshot.
func FuzzRestore(f *testing.F) {
	src := openMem(f, nil, func(c *Config) { c.SnapshotChunkSize = 64 })
	l := newLog(f, src)
	l.open()
	l.put("a", "1")
	l.put("b", "2")
	var good bytes.Buffer
	if err := src.Snapshot(&good); err != nil {
		f.Fatal(err)
	}
	_ = src.Close()
	f.Add(good.Bytes())
	f.Add(good.Bytes()[:20])
	f.Add([]byte("cairnkv\x01"))
	dst := openMem(f, nil)
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := dst.Restore(bytes.NewReader(data)); err != nil {
			if !errors.Is(err, ErrCorruptSnapshot) {
				t.Fatalf("Restore: %v", err)
			}
			if dst.AppliedIndex() != 0 {
				t.Fatalf("failed restore left applied index %d", dst.AppliedIndex())
			}
		}
	})
}
