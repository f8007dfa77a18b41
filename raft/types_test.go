package raft

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
)

func TestConfStateRoundTrip(t *testing.T) {
	for _, voters := range [][]NodeID{
		nil,
		{1},
		{1, 2, 3},
		{3, 1, 2},    // sorted by NewConfState
		{2, 2, 1, 1}, // deduplicated
		{1, 1 << 40, math.MaxUint64},
		{127, 128, 16383, 16384}, // uvarint length boundaries
	} {
		cs := NewConfState(voters...)
		if !slices.IsSorted(cs.Voters) || len(slices.Compact(slices.Clone(cs.Voters))) != len(cs.Voters) {
			t.Errorf("NewConfState(%v) = %v: not sorted and unique", voters, cs.Voters)
		}
		b := cs.Marshal()
		got, err := UnmarshalConfState(b)
		if err != nil {
			t.Errorf("UnmarshalConfState(Marshal(%v)) error: %v", cs.Voters, err)
			continue
		}
		if !got.Equal(cs) {
			t.Errorf("round trip of %v gave %v", cs.Voters, got.Voters)
		}
		for _, v := range voters {
			if !got.IsVoter(v) {
				t.Errorf("%v: IsVoter(%d) = false", got.Voters, v)
			}
		}
		if got.IsVoter(0) || got.IsVoter(4) && !slices.Contains(voters, 4) {
			t.Errorf("%v: IsVoter reports a non-voter", got.Voters)
		}
	}
}

func TestConfStateEqual(t *testing.T) {
	if !NewConfState().Equal(ConfState{Voters: []NodeID{}}) {
		t.Error("nil and empty voter lists differ")
	}
	if NewConfState(1, 2).Equal(NewConfState(1, 3)) || NewConfState(1).Equal(NewConfState(1, 2)) {
		t.Error("different configurations are Equal")
	}
}

func TestUnmarshalConfStateMalformed(t *testing.T) {
	uv := func(vs ...uint64) []byte {
		b := []byte{confStateVersion}
		for _, v := range vs {
			b = binary.AppendUvarint(b, v)
		}
		return b
	}
	overlong := append([]byte{confStateVersion}, bytes.Repeat([]byte{0xff}, 11)...)
	for name, b := range map[string][]byte{
		"nil":                 nil,
		"empty":               {},
		"bad version":         {2, 1, 1},
		"version zero":        {0, 0},
		"no count":            {confStateVersion},
		"count too large":     uv(maxVoters + 1),
		"count overflows":     overlong,
		"missing voter":       uv(2, 5),
		"truncated varint":    append(uv(1), 0x80),
		"voter zero":          uv(1, 0),
		"duplicate voter":     uv(2, 5, 5),
		"trailing bytes":      append(uv(1, 5), 9),
		"count, no voters":    uv(3),
		"huge count, no data": uv(maxVoters),
	} {
		cs, err := UnmarshalConfState(b)
		if !errors.Is(err, ErrBadConfState) {
			t.Errorf("%s: UnmarshalConfState(%x) = %v, %v; want ErrBadConfState", name, b, cs, err)
		}
		if len(cs.Voters) != 0 {
			t.Errorf("%s: returned voters %v with the error", name, cs.Voters)
		}
	}
	// Voters encoded out of order are accepted and come back sorted.
	cs, err := UnmarshalConfState(uv(3, 9, 1, 5))
	if err != nil || !slices.Equal(cs.Voters, []NodeID{1, 5, 9}) {
		t.Errorf("unsorted encoding: %v, %v", cs.Voters, err)
	}
}

// FuzzUnmarshalConfState: decoding never panics, and whatever decodes
// re-encodes to something that decodes to the same configuration.
func FuzzUnmarshalConfState(f *testing.F) {
	f.Add([]byte{})
	f.Add(NewConfState(1, 2, 3).Marshal())
	f.Add(NewConfState(math.MaxUint64).Marshal())
	f.Add([]byte{1, 0xff, 0xff, 0x03})
	f.Fuzz(func(t *testing.T, b []byte) {
		cs, err := UnmarshalConfState(b)
		if err != nil {
			if !errors.Is(err, ErrBadConfState) {
				t.Fatalf("error %v does not wrap ErrBadConfState", err)
			}
			return
		}
		again, err := UnmarshalConfState(cs.Marshal())
		if err != nil || !again.Equal(cs) {
			t.Fatalf("re-encoding %v: %v, %v", cs.Voters, again.Voters, err)
		}
	})
}

func TestConfigValidateDefaults(t *testing.T) {
	c := Config{ID: 3, Storage: NewMemoryStorage()}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if c.ElectionTick != DefaultElectionTick || c.HeartbeatTick != DefaultHeartbeatTick ||
		c.MaxSizePerMsg != DefaultMaxSizePerMsg || c.MaxInflightMsgs != DefaultMaxInflightMsgs ||
		c.MaxUncommittedEntriesSize != DefaultMaxUncommittedEntriesSize ||
		c.MaxCommittedSizePerReady != DefaultMaxCommittedSizePerReady ||
		c.Seed == 0 || c.Logger == nil {
		t.Errorf("defaults not filled in: %+v", c)
	}
	if c.DisablePreVote || c.DisableCheckQuorum {
		t.Error("pre-vote and check-quorum must be on by default")
	}
	// Explicit values are kept.
	c = Config{ID: 1, Storage: NewMemoryStorage(), ElectionTick: 20, HeartbeatTick: 3, MaxInflightMsgs: 7, Seed: 42}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.ElectionTick != 20 || c.HeartbeatTick != 3 || c.MaxInflightMsgs != 7 || c.Seed != 42 {
		t.Errorf("explicit values changed: %+v", c)
	}
	// Unset seeds are random: two nodes (or two starts of one node) differ.
	a, b := Config{ID: 1, Storage: NewMemoryStorage()}, Config{ID: 2, Storage: NewMemoryStorage()}
	_, _ = a.Validate(), b.Validate()
	if a.Seed == b.Seed {
		t.Error("random seeds of two configs are equal")
	}
}

// TestConfigValidateReportsEveryProblem: one call names every problem, each
// wrapping ErrInvalidConfig.
func TestConfigValidateReportsEveryProblem(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Config
		want []string
	}{
		{"zero config", Config{}, []string{"ID must not be zero", "Storage is required"}},
		{"election not above heartbeat", Config{ID: 1, Storage: NewMemoryStorage(), ElectionTick: 5, HeartbeatTick: 5},
			[]string{"ElectionTick 5 must exceed HeartbeatTick 5"}},
		{"negative heartbeat", Config{ID: 1, Storage: NewMemoryStorage(), ElectionTick: 10, HeartbeatTick: -2},
			[]string{"HeartbeatTick -2 is negative"}},
		{"negative election", Config{ID: 1, Storage: NewMemoryStorage(), ElectionTick: -1},
			[]string{"ElectionTick -1 is negative"}},
		{"everything", Config{ElectionTick: 3, HeartbeatTick: 4, MaxInflightMsgs: -1},
			[]string{"ID must not be zero", "Storage is required", "ElectionTick 3 must exceed HeartbeatTick 4",
				"MaxInflightMsgs -1 is negative"}},
	} {
		err := tc.c.Validate()
		if !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: Validate = %v, want ErrInvalidConfig", tc.name, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", tc.name, err, w)
			}
		}
		if n := strings.Count(err.Error(), "invalid config"); n != len(tc.want) {
			t.Errorf("%s: %d problems reported, want %d: %q", tc.name, n, len(tc.want), err)
		}
	}
}

// TestConfigValidateReportsNegativeElectionTick: a negative ElectionTick
// is a problem of its own. Validate only compares it with HeartbeatTick, so
// when HeartbeatTick is even more negative the election timeout's problem
// goes unreported (the config is still refused, for the heartbeat).
func TestConfigValidateReportsNegativeElectionTick(t *testing.T) {
	c := Config{ID: 1, Storage: NewMemoryStorage(), ElectionTick: -1, HeartbeatTick: -2}
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "HeartbeatTick -2") {
		t.Fatalf("Validate = %v, want the negative HeartbeatTick reported", err)
	}
	if !strings.Contains(err.Error(), "ElectionTick -1") {
		t.Errorf("Validate = %q: the negative ElectionTick is not reported", err)
	}
}

func TestNewNodeRejects(t *testing.T) {
	if _, err := NewNode(Config{}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("NewNode(Config{}) = %v, want ErrInvalidConfig", err)
	}
	// A stored commit index beyond the stored log.
	s := NewMemoryStorage()
	if err := Bootstrap(s, 1); err != nil {
		t.Fatal(err)
	}
	s.SetHardState(HardState{Term: 1, Commit: 5})
	if _, err := NewNode(Config{ID: 1, Storage: s, Logger: discardLogger}); err == nil {
		t.Error("NewNode accepted a commit index beyond the log")
	}
	// An applied index beyond the commit index.
	s = NewMemoryStorage()
	if err := Bootstrap(s, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := NewNode(Config{ID: 1, Storage: s, Applied: 2, Logger: discardLogger}); err == nil {
		t.Error("NewNode accepted an applied index beyond the commit index")
	}
}

func TestStringers(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{Follower.String(), "Follower"},
		{PreCandidate.String(), "PreCandidate"},
		{Candidate.String(), "Candidate"},
		{Leader.String(), "Leader"},
		{Role(9).String(), "Role(9)"},
		{EntryNormal.String(), "Normal"},
		{EntryNoop.String(), "Noop"},
		{EntryConfChange.String(), "ConfChange"},
		{EntryType(9).String(), "EntryType(9)"},
		{MsgApp.String(), "MsgApp"},
		{MsgReadIndexResp.String(), "MsgReadIndexResp"},
		{MessageType(0).String(), "MessageType(0)"},
		{MessageType(99).String(), "MessageType(99)"},
	} {
		if tc.got != tc.want {
			t.Errorf("String() = %q, want %q", tc.got, tc.want)
		}
	}
	for typ := MsgApp; typ <= MsgReadIndexResp; typ++ {
		if strings.HasPrefix(typ.String(), "MessageType(") {
			t.Errorf("message type %d has no name", typ)
		}
	}
}

func TestDescribe(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{DescribeEntry(Entry{Term: 2, Index: 3, Data: []byte("x")}), `2/3 "x"`},
		{DescribeEntry(Entry{Term: 2, Index: 3, Type: EntryNoop}), "2/3 Noop"},
		{DescribeEntry(Entry{Term: 1, Index: 1, Type: EntryConfChange, Data: NewConfState(1, 2).Marshal()}), "1/1 ConfChange voters=[1 2]"},
		{DescribeEntry(Entry{Term: 1, Index: 1, Type: EntryConfChange, Data: []byte{7}}), "1/1 ConfChange <raft: malformed configuration: bad version>"},
		{DescribeMessage(Message{Type: MsgAppResp, From: 2, To: 1, Term: 3, Index: 5, Reject: true, RejectHint: 4, LogTerm: 2}),
			"2->1 MsgAppResp Term:3 Rejected:5 Hint:2/4"},
		{DescribeMessage(Message{Type: MsgSnap, From: 1, To: 2, Term: 3, Snapshot: &SnapshotMeta{Index: 9, Term: 3, ConfState: NewConfState(1, 2)}}),
			"1->2 MsgSnap Term:3 Snapshot:3/9 voters=[1 2]"},
		{DescribeMessage(Message{Type: MsgPreVote, From: 1, To: 2, Term: 3, Index: 4, LogTerm: 2, Transfer: true}),
			"1->2 MsgPreVote Term:3 Log:2/4 Transfer"},
		{DescribeMessage(Message{Type: MsgReadIndexResp, From: 1, To: 2, Term: 3, Context: 4, Reject: true}),
			"1->2 MsgReadIndexResp Term:3 Batch:4 Rejected"},
		{DescribeReady(Ready{}), ""},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	rd := Ready{Snapshot: &SnapshotMeta{Index: 5, Term: 2}, ReadStates: []ReadState{{ID: 7, Index: 5}}}
	if rd.IsEmpty() {
		t.Error("non-empty Ready IsEmpty")
	}
	if !(&Ready{}).IsEmpty() {
		t.Error("empty Ready is not IsEmpty")
	}
	want := "persist snapshot 2/5 voters=[]\nread 7 at index 5\n"
	if got := DescribeReady(rd); got != want {
		t.Errorf("DescribeReady = %q, want %q", got, want)
	}
}
