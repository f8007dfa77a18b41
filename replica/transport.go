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
// to the destination replica's Step (or StepSnapshot for a MsgSnap), from
// its own goroutines, and tells the sending replica about peers it cannot
// reach with ReportUnreachable. Package replica/memnet is an in-memory
// Transport for tests.
type Transport interface {
	// Send sends msgs, none of which is a MsgSnap, best effort. It must not
	// modify msgs, and must copy (or encode) whatever it keeps after it
	// returns: the core may reuse the memory.
	Send(msgs []raft.Message)

	// SendSnapshot sends a MsgSnap together with the snapshot's data, which
	// it reads from data and then closes. The receiver must be handed the
	// data before it steps the message (see Replica.StepSnapshot). When the
	// transfer has succeeded or failed, the transport calls done exactly
	// once, from any goroutine, with nil or the reason; done does not
	// block. The same copying rule as for Send applies to msg.
	//
	// For now the data travels whole; the storage work will stream it in
	// chunks behind this same signature.
	SendSnapshot(msg raft.Message, data io.ReadCloser, done func(error))
}
