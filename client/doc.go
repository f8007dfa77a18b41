// Package client is cairn's Go client: a connection to a cluster that
// finds the leader, retries what is safe to retry, and makes every write
// apply exactly once.
//
// # Usage
//
//	c, err := client.New(client.Config{
//		Endpoints: []string{"10.0.0.1:7001", "10.0.0.2:7001", "10.0.0.3:7001"},
//	})
//	if err != nil { ... }
//	defer c.Close()
//
//	put, err := c.Put(ctx, []byte("greeting"), []byte("hello"))
//	got, err := c.Get(ctx, []byte("greeting"))            // linearizable
//	got, err = c.Get(ctx, key, client.WithConsistency(client.Serializable))
//	_, err = c.CompareAndSwap(ctx, key, client.IfVersion(got.Version), newValue)
//	if errors.Is(err, client.ErrCASFailed) { ... }
//	for kv, err := range c.ScanAll(ctx, []byte("a"), []byte("b")) { ... }
//
// New does no I/O. Every call takes a context; its deadline (or
// Config.RequestTimeout, whichever is earlier) bounds the call with all
// its retries. A Client is safe for concurrent use, and meant to be
// shared: many goroutines may have many calls in flight at once.
//
// Calls do not retain the byte slices they are given after they return
// (a Batch keeps its ops' slices until it is sent).
//
// # Finding the leader
//
// Writes and linearizable or lease reads go to the leader. The client
// remembers the last node that answered one as the leader and sends there
// first. A node that does not lead answers UNAVAILABLE with an ErrorDetail
// naming the leader it knows of (NOT_LEADER, leader_id, leader_address):
// the client switches to that node and retries at once. A node that names
// no leader, refuses the connection, or does not answer within
// Config.AttemptTimeout is given up on: the client forgets it as the
// leader and moves on to the next endpoint, after a backoff
// (RetryPolicy: exponential from BaseBackoff to MaxBackoff, each wait
// drawn uniformly from [d/2, d]). Serializable reads go to any node, the
// endpoints in turn.
//
// # Reads
//
// Reads are idempotent, so every failure that is not a definitive answer
// (UNAVAILABLE, a timeout, a lost connection) is retried, until the call's
// context ends or RetryPolicy.MaxAttempts is reached; then the call fails
// with an error matching ErrUnavailable (and the context's error, if that
// was the reason). A definitive answer (INVALID_ARGUMENT, say) is returned
// at once. Get of an absent key returns ErrKeyNotFound.
//
// Scan reads one page; ScanAll follows the continuation tokens across
// pages. Each page is a separate read at the chosen consistency, so the
// iteration as a whole is not a snapshot.
//
// # Writes, sessions and exactly-once
//
// The client opens a session on the server when the first write needs
// one: OpenSession, through the group's log, retried until a leader
// answers. Its id is the index of the log entry that opened it. The
// client keeps the session alive with KeepAlive every third of its TTL
// (the TTL is the server's, from its OpenSession answer; Config.SessionTTL
// if it gives none). The session lives in the servers' replicated state;
// the client saves nothing, and a new Client opens a new session.
//
// Every write gets the session's next sequence number (1, 2, 3, ...), and
// keeps it for all its attempts. Each attempt carries (session, seq,
// lowest unacknowledged seq). The server executes a (session, seq) once
// and caches its outcome, so a retry after a lost reply, a timeout or a
// leader change returns the original result (the original version, the
// original CASFailedError, the original InvalidArgumentError) and does not
// apply the write again. Writes are therefore always safe to retry, and
// the client retries them on the same failures it retries reads on.
//
// The lowest unacknowledged seq is the smallest seq whose result the
// caller has not yet received: the oldest write still in flight, or the
// next seq if none is. Writes complete in any order; the lowest
// unacknowledged seq moves past a seq only when every seq below it has
// completed too. The server forgets the cached results below it, and
// refuses (STALE_SEQUENCE, never executing) any request with a seq below
// it, so a copy of an old attempt delayed in the network can never apply
// after its caller has moved on. A write's seq counts as received when the
// call returns, whatever it returns.
//
// Config.MaxInflight bounds a session's window of seqs, next seq minus
// lowest unacknowledged seq: a write waits for a seq while the window is
// full. With MaxInflight at most the server's max_pending_per_session, the
// server never needs to keep more results than it allows, and never
// refuses a write with TOO_MANY_PENDING; if it does anyway (a server
// configured lower), the write is retried with the same seq after a
// backoff: it was not executed, and the retry itself acknowledges.
//
// # When a write's outcome is unknown
//
// A session expires on the server when it sees no request for its TTL (in
// log time: a fast leader clock can expire it early), and a closed or
// expired session's cached results are dropped with it. The server never
// executes a request on an expired session: it answers SESSION_EXPIRED.
// What that answer means for the write depends on its earlier attempts:
//
//   - If every earlier attempt of the write ended in an answer that it was
//     not executed (or there was none), the write never applied. The
//     client drops the session, opens a new one, and runs the write there
//     with a new seq, without the caller seeing anything. (If that happens
//     three times in a row, the write fails with ErrSessionExpired: not
//     applied.)
//   - If some earlier attempt may have executed (its reply was lost, it
//     timed out, the connection broke, or the node answered UNAVAILABLE,
//     which may come after it proposed the write), that attempt may have
//     applied before the session expired, and the server, which dropped
//     the cached result with the session, can no longer tell. Retrying on
//     a new session could apply the write twice, so the client does not:
//     the call fails with a *OutcomeUnknownError (matching
//     ErrOutcomeUnknown and ErrSessionExpired). The session is dropped; the
//     next write opens a new one.
//
// A write also fails with *OutcomeUnknownError when it gives up (its
// context ends, the client closes, MaxAttempts is reached) after an
// attempt that may have executed; the error then also matches
// ErrUnavailable and the context's error. Likewise for the answers that
// say nothing about execution: STALE_SEQUENCE (a bug: the client never
// sends one), INTERNAL, UNKNOWN. A write that gave up before any attempt
// may have executed (the session could not be opened, the window stayed
// full, every node refused the connection... see below) fails with
// ErrUnavailable alone: it was not applied.
//
// The client counts an attempt as "may have executed" unless the server
// answered that it was not: INVALID_ARGUMENT (except STALE_SEQUENCE),
// FAILED_PRECONDITION, RESOURCE_EXHAUSTED, UNIMPLEMENTED, PERMISSION_DENIED
// or UNAUTHENTICATED, or a success. In particular a refused connection
// counts as "may have executed" (gRPC does not say whether a request
// reached the server), as does NOT_LEADER (a node may have proposed the
// write before it lost its leadership). This errs on the side of
// reporting "unknown".
//
// After an *OutcomeUnknownError the client never sends that seq again,
// but a copy already on its way (or already proposed) may still apply
// for a while: until the server applies a later request of the session
// whose lowest unacknowledged seq is above it (the next write sent once
// every earlier write has completed, or the next keep-alive, within a
// third of the TTL). From then on every copy is refused as
// STALE_SEQUENCE. When the session expired, no copy can apply any more:
// the server executes nothing on an expired session, and session ids are
// never reused. So a write with an unknown outcome is one that may take
// effect at any point from its call until shortly after its return (a
// linearizability checker records it as open-ended). To learn what
// happened, read the key afterwards; to make the write happen, write again
// (a new seq), ideally as a CompareAndSwap conditioned on what you read.
//
// # Errors
//
// Callers branch with errors.Is and errors.As:
//
//	ErrKeyNotFound        Get: no such key
//	ErrCASFailed          *CASFailedError: the condition did not hold; nothing written
//	ErrInvalidArgument    *InvalidArgumentError: empty key, limit exceeded (which
//	                      one: Limit, LimitValue, Actual), malformed; nothing applied.
//	                      ErrEmptyKey, ErrKeyTooLarge, ... match by code.
//	ErrOutcomeUnknown     *OutcomeUnknownError: a write may or may not have applied
//	ErrSessionExpired     see above
//	ErrUnavailable        the call gave up: context ended, client closed, or
//	                      MaxAttempts reached; with the cause in the chain
//	ErrClosed             the client was closed
//
// Any other server answer is returned wrapped, with its gRPC status in the
// chain (status.FromError finds it).
//
// # Goroutines
//
// Besides gRPC's own, a Client runs at most one session opener at a time
// (started by the first write that needs a session, it retries under the
// client's lifetime, not the caller's context, so that one caller giving
// up does not fail the others waiting) and one keep-alive loop per live
// session. Both stop at Close, which waits for them; Close then tries once,
// briefly, to close the session on the server (else it expires), and
// closes the connections.
//
// # Limitations
//
// One Client talks to one group (Config.Group, by default the server's
// routing): a session belongs to a group. TLS is not configured yet beyond
// Config.DialOptions.
package client
