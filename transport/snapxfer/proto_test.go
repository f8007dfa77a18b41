package snapxfer_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/transport/snapxfer"
)

// The chunk CRC covers every field a receiver acts on, so damage to any
// of them is dropped as a loss rather than obeyed.
func TestChunkChecksumCoversEveryField(t *testing.T) {
	m := snapMsg(1, 2, 10)
	base := func() *snapxfer.Chunk {
		c := &snapxfer.Chunk{From: 1, To: 2, ID: 7, Gen: 1, Offset: 4096, Msg: &m, Data: []byte("abcdef"), Last: true, StreamCRC: 99}
		c = c.Clone()
		c.Seal()
		return c
	}
	if !base().Verify() {
		t.Fatal("a sealed chunk does not verify")
	}
	for name, damage := range map[string]func(c *snapxfer.Chunk){
		"id":          func(c *snapxfer.Chunk) { c.ID++ },
		"gen":         func(c *snapxfer.Chunk) { c.Gen++ },
		"offset":      func(c *snapxfer.Chunk) { c.Offset++ },
		"last":        func(c *snapxfer.Chunk) { c.Last = false },
		"abort":       func(c *snapxfer.Chunk) { c.Abort = true },
		"stream crc":  func(c *snapxfer.Chunk) { c.StreamCRC++ },
		"data":        func(c *snapxfer.Chunk) { c.Data[2] ^= 1 },
		"data length": func(c *snapxfer.Chunk) { c.Data = c.Data[:5] },
		"msg dropped": func(c *snapxfer.Chunk) { c.Msg = nil },
		"msg term":    func(c *snapxfer.Chunk) { c.Msg.Term++ },
		"snap index":  func(c *snapxfer.Chunk) { c.Msg.Snapshot.Index++ },
		"snap term":   func(c *snapxfer.Chunk) { c.Msg.Snapshot.Term++ },
		"snap voters": func(c *snapxfer.Chunk) { c.Msg.Snapshot.ConfState = raft.NewConfState(1, 2) },
	} {
		c := base()
		damage(c)
		if c.Verify() {
			t.Errorf("damage to %s is not detected", name)
		}
	}
	// Clone shares no memory.
	c := base()
	d := c.Clone()
	d.Data[0], d.Msg.Snapshot.ConfState.Voters[0] = 'X', 9
	if !c.Verify() {
		t.Fatal("Clone shares memory with the original")
	}
}

func TestDescribers(t *testing.T) {
	m := snapMsg(1, 2, 10)
	c := &snapxfer.Chunk{From: 1, To: 2, ID: 0x2a, Gen: 1, Offset: 0, Msg: &m, Data: make([]byte, 5), Last: true, StreamCRC: 0xbeef}
	if got := c.String(); !strings.HasPrefix(got, "chunk 1->2 id=2a gen=1 off=0 len=5 msg=[1->2 MsgSnap Term:3") || !strings.HasSuffix(got, "last stream=0000beef") {
		t.Errorf("chunk: %q", got)
	}
	for _, tc := range []struct {
		a    snapxfer.Ack
		want string
	}{
		{snapxfer.Ack{From: 2, To: 1, ID: 0x2a, Kind: snapxfer.AckProgress, Offset: 1024}, "ack 2->1 id=2a Progress off=1024"},
		{snapxfer.Ack{From: 2, To: 1, ID: 0x2a, Kind: snapxfer.AckResume, Offset: 1024, Gen: 3}, "ack 2->1 id=2a Resume off=1024 gen=3"},
		{snapxfer.Ack{From: 2, To: 1, ID: 0x2a, Kind: snapxfer.AckFailed, Reason: snapxfer.ReasonBusy}, "ack 2->1 id=2a Failed off=0 reason=Busy"},
	} {
		if got := tc.a.String(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
	if s := snapxfer.Reason(200).String(); s != "Reason(200)" {
		t.Errorf("unknown reason: %q", s)
	}
}

func TestOptionsValidate(t *testing.T) {
	var o snapxfer.Options
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if o.ChunkSize != snapxfer.DefaultChunkSize || o.Window != snapxfer.DefaultWindow || o.InboundQueue != 2*o.Window ||
		o.StallTimeout != snapxfer.DefaultStallTimeout || o.Logger == nil {
		t.Fatalf("defaults: %+v", o)
	}
	bad := snapxfer.Options{ChunkSize: 8 << 20, MaxChunkSize: 1 << 20, Window: -1, RetransmitTimeout: 10, StallTimeout: 5}
	err := bad.Validate()
	if !errors.Is(err, snapxfer.ErrInvalidOptions) {
		t.Fatalf("got %v", err)
	}
	for _, want := range []string{"MaxChunkSize", "Window", "StallTimeout"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s: %v", want, err)
		}
	}
}
