// Package snapxfer streams a Raft snapshot (InstallSnapshot, §7) from a
// leader to a follower in chunks, with bounded memory on both sides, over
// any carrier that can deliver small messages best effort: the in-memory
// network of tests (replica/memnet) and the gRPC transport carry the same
// Chunk and Ack values.
//
// # Usage
//
// Each node has one Endpoint. A carrier wires it to the network:
//
//	ep, err := snapxfer.New(id, link, rep, snapxfer.Options{})
//	defer ep.Close()
//	// replica.Transport.SendSnapshot:
//	ep.Send(msg, data, done)
//	// what arrives:
//	ep.HandleChunk(chunk) // from the sender
//	ep.HandleAck(ack)     // from the receiver
//
// link (a Link) sends chunks and acks to peers; rep (a Handler, the
// receiving replica) is given each inbound snapshot as an io.Reader, which
// it copies into a staged snapshot file before it steps the MsgSnap.
//
// # The protocol
//
//	sender                                             receiver
//	  |-- chunk id=7 gen=0 off=0 Msg=MsgSnap{meta} ------->| admit (≤ MaxInbound),
//	  |-- chunk id=7 gen=0 off=1M ------------------------>|   start the Handler
//	  |-- chunk id=7 gen=0 off=2M ------------- (lost) -x  |
//	  |-- chunk id=7 gen=0 off=3M ------------------------>| beyond 2M: dropped
//	  |<------------------------- ack Progress off=1M -----|
//	  |<------------------------- ack Progress off=2M -----|
//	  |<------------------------- ack Resume off=2M gen=0 -| once per generation
//	  |   rewind: gen=1, resend from 2M                    |
//	  |-- chunk id=7 gen=1 off=2M ------------------------>| accepted
//	  |-- chunk id=7 gen=1 off=3M last stream=crc -------->| accepted, checksum ok:
//	  |                                                    | the Handler commits the
//	  |                                                    | staged file, steps MsgSnap
//	  |<------------------------- ack Done off=4M ---------|
//
// A Chunk carries the transfer ID (the sender's choice, unique among its
// transfers), the sender's resend generation, its offset in the stream,
// at most ChunkSize bytes of data, the MsgSnap with its snapshot metadata
// on the first chunk only, the last flag with the CRC32C of the whole
// stream on the last chunk, and a CRC32C over all of it (see Checksum). An
// Ack carries the transfer ID, a kind (Progress, Resume, Unknown, Done,
// Failed), the cumulative offset and, for Failed, a Reason.
//
// The rules:
//
//   - Ack rule. The receiver accepts chunks strictly in order: a chunk is
//     accepted when its offset is the number of bytes accepted so far and
//     its CRC matches; its data then goes to the Handler, and the receiver
//     acks the new cumulative offset (Progress). Everything else is
//     answered, never kept: a duplicate (offset below) is re-acked; a chunk
//     beyond the offset prompts a Resume at the accepted offset, once per
//     sender generation; a corrupt chunk is dropped, as if lost.
//   - Window. The sender keeps at most Window chunks unacknowledged and in
//     memory; an ack releases the chunks below its offset (the last chunk
//     is kept until Done). So a sender holds at most Window*ChunkSize
//     bytes, and a receiver at most InboundQueue+1 chunks per transfer.
//   - Resume rule. On a Resume of its current generation, or when
//     RetransmitTimeout passes without progress (a lost tail, lost acks),
//     the sender rewinds: it starts a new generation and resends every
//     chunk from its acknowledged offset, which it still holds. Nothing
//     before that offset is ever sent again.
//   - Restart rule. A receiver that holds no state for a transfer (it lost
//     the first chunk, or forgot the transfer) answers Unknown. A sender
//     that still holds offset 0 starts over from it; otherwise the transfer
//     fails, and the leader, told so through done, sends a new snapshot in
//     a new transfer later (raft's ReportSnapshot).
//   - Completion. On the last chunk the receiver checks the whole stream's
//     CRC32C and, if it matches, lets the Handler's read reach io.EOF; the
//     Handler commits its staged file and queues the MsgSnap, and the
//     receiver answers Done. A mismatch fails the transfer (the staged file
//     is discarded). A receiver remembers how its recent transfers ended,
//     to re-answer a sender that missed the final ack.
//   - Deadlines. A sender whose acknowledged offset has not moved for
//     StallTimeout gives up with ErrStalled, and a receiver waiting that
//     long for its next chunk gives up too (its Handler sees ErrStalled and
//     discards the staged file). Either side tells the other (Abort chunk,
//     Failed ack), best effort. So a stalled transfer never pins a snapshot
//     or the leader's view of the follower forever: the leader hears of the
//     failure and retries with a fresh transfer.
//   - Limits. A receiver runs at most MaxInbound transfers at once and
//     answers others Failed/Busy; a new transfer from a sender supersedes
//     that sender's older one.
//
// The sender reads the snapshot stream exactly once, in order, so any
// io.ReadCloser will do (a storage/snap Reader, whose own checksum failure
// fails the transfer before its last chunk is sent).
package snapxfer
