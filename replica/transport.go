package replica

import (
	"io"

	"github.com/cairnkv/cairn/raft"
)

// Transport carries a replica's messages to its peers. The replica calls it
// from its run goroutine, so no method may block: a transport queues what
// it cannot send at once and drops what it cannot queue. Raft tolerates
// lost, duplicated and reordered messages.
//
// Inbound traffic goes the other way: the transport hands what it receives
// to the destination replica's Step or TryStep (StepSnapshot for a
// MsgSnap), from its own goroutines, and tells the sending replica about
// peers it cannot reach with ReportUnreachable. A transport that carries
// many groups over one connection should use TryStep, so that a group
// whose queue is full drops its own message instead of stalling the
// others'. Package replica/memnet is an in-memory
// Transport for tests.
//
// Snapshots are streamed, never held whole: package transport/snapxfer is
// the protocol every transport uses for them (chunks, acknowledgements,
// resume after a lost chunk, deadlines), so that a follower far behind
// catches up with state of any size while both sides keep only a few
// chunks in memory.
type Transport interface {
	// Send sends msgs, none of which is a MsgSnap, best effort. It must not
	// modify msgs, and must copy (or encode) whatever it keeps after it
	// returns: the core may reuse the memory.
	Send(msgs []raft.Message)

	// SendSnapshot sends a MsgSnap together with the snapshot's data, which
	// it reads from data (once, in order) and then closes. It returns at
	// once; the transfer runs in the background, streaming the data in
	// chunks. On the receiving node the transport calls StepSnapshot with a
	// reader that yields the data as the chunks arrive in order: it
	// returns io.EOF only once the whole stream arrived with a matching
	// checksum, and an error if the transfer breaks, in which case the
	// receiving replica discards what it staged and does not step the
	// message.
	//
	// When the transfer has succeeded (the receiver staged the data and
	// queued the message) or failed, the transport calls done exactly
	// once, from any goroutine, with nil or the reason; done does not
	// block. A transfer that stops making progress fails within a bounded
	// time (snapxfer's stall timeout): the replica then reports the
	// failure to the core (raft.Node.ReportSnapshot), which stops waiting
	// for that follower and sends it a new snapshot later, so a stalled
	// transfer never pins the leader's view of a follower forever. The
	// same copying rule as for Send applies to msg.
	SendSnapshot(msg raft.Message, data io.ReadCloser, done func(error))
}
