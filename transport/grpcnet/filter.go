package grpcnet

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/transport/snapxfer"
)

// Direction says which way a packet goes, seen from the transport that
// filters it.
type Direction uint8

const (
	// Outbound packets are filtered by their sender, before they are
	// queued for the peer's connection.
	Outbound Direction = iota + 1
	// Inbound packets are filtered by their receiver, after they are
	// decoded and before they are delivered.
	Inbound
)

func (d Direction) String() string {
	switch d {
	case Outbound:
		return "Outbound"
	case Inbound:
		return "Inbound"
	}
	return fmt.Sprintf("Direction(%d)", uint8(d))
}

// Packet is one thing the transport carries, shown to a Filter: exactly
// one of a Raft message, a snapshot chunk or a snapshot ack. The filter
// must neither change nor keep what the pointers point to.
type Packet struct {
	Dir      Direction
	Group    GroupID
	From, To raft.NodeID
	Msg      *raft.Message
	Chunk    *snapxfer.Chunk
	Ack      *snapxfer.Ack
}

// Peer is the other end of the packet: its receiver when outbound, its
// sender when inbound.
func (p *Packet) Peer() raft.NodeID {
	if p.Dir == Inbound {
		return p.From
	}
	return p.To
}

// Verdict is a filter's decision about one packet. The zero Verdict
// passes it unchanged.
type Verdict struct {
	// Drop loses the packet silently (no unreachable report: a real
	// network loses packets without telling anyone).
	Drop bool
	// Delay holds the packet (and its duplicates) back this long. Delayed
	// packets overtake nothing that is already queued, but later packets
	// may overtake them (reordering).
	Delay time.Duration
	// Duplicates is how many extra copies of the packet to send or
	// deliver.
	Duplicates int
}

// Filter decides the fate of each packet, on both sides of the wire: a
// transport applies its filter to what it sends (Outbound) and to what it
// receives (Inbound), so a test can shape traffic per peer and per
// direction, one-way partitions included. It runs on the sending
// replica's goroutine (outbound) or a connection's reader (inbound) with
// no lock held, so it must be fast and safe for concurrent use. Set it
// with Transport.SetFilter; Faults is a ready-made one.
type Filter func(p *Packet) Verdict

// AnyPeer in a Faults rule applies it to every peer that has no rule of
// its own in that direction.
const AnyPeer = raft.None

// Rule is what Faults does to the packets of one peer and direction.
type Rule struct {
	// Loss is the probability that a packet is dropped; 1 cuts the link.
	Loss float64
	// Duplicate is the probability that a packet is sent twice.
	Duplicate float64
	// Delay, plus a uniformly random part of Jitter, holds each packet
	// back.
	Delay, Jitter time.Duration
}

// Faults is a Filter driven by rules that can change at any time: the
// hook the in-process tests and the chaos runner use to partition nodes
// (one way or both), lose, duplicate and delay traffic. Its randomness
// comes from a seed, although which packet meets which draw depends on
// goroutine scheduling. It is safe for concurrent use.
//
//	f := grpcnet.NewFaults(seed)
//	tr.SetFilter(f.Filter)
//	f.Cut(3, grpcnet.Outbound)   // this node can no longer reach node 3
//	f.Set(grpcnet.AnyPeer, grpcnet.Inbound, grpcnet.Rule{Loss: 0.1})
//	f.Heal()
type Faults struct {
	mu    sync.Mutex
	rules map[faultKey]Rule
	rng   *rand.Rand
}

type faultKey struct {
	peer raft.NodeID
	dir  Direction
}

// NewFaults returns a Faults with no rules (it passes everything) whose
// random draws come from seed.
func NewFaults(seed uint64) *Faults {
	return &Faults{rules: map[faultKey]Rule{}, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Set makes r the rule for packets to (Outbound) or from (Inbound) peer,
// or for every peer without a rule of its own if peer is AnyPeer.
func (f *Faults) Set(peer raft.NodeID, dir Direction, r Rule) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules[faultKey{peer, dir}] = r
}

// Cut drops every packet to (Outbound) or from (Inbound) peer: a one-way
// partition. Cut both directions to isolate the peer from this node.
func (f *Faults) Cut(peer raft.NodeID, dir Direction) { f.Set(peer, dir, Rule{Loss: 1}) }

// Clear removes the rules of peer (both directions).
func (f *Faults) Clear(peer raft.NodeID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.rules, faultKey{peer, Outbound})
	delete(f.rules, faultKey{peer, Inbound})
}

// Heal removes every rule.
func (f *Faults) Heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.rules)
}

// Filter is the Filter to install with Transport.SetFilter.
func (f *Faults) Filter(p *Packet) Verdict {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.rules[faultKey{p.Peer(), p.Dir}]
	if !ok {
		if r, ok = f.rules[faultKey{AnyPeer, p.Dir}]; !ok {
			return Verdict{}
		}
	}
	var v Verdict
	if r.Loss >= 1 || (r.Loss > 0 && f.rng.Float64() < r.Loss) {
		return Verdict{Drop: true}
	}
	if r.Duplicate > 0 && f.rng.Float64() < r.Duplicate {
		v.Duplicates = 1
	}
	v.Delay = r.Delay
	if r.Jitter > 0 {
		v.Delay += time.Duration(f.rng.Int64N(int64(r.Jitter)))
	}
	return v
}
