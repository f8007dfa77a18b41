package client

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairnkv/cairn/api/kvpb"
)

// rpc sends one attempt of a request to a node and returns the response's
// header. It must build the request afresh (a write's header carries the
// session's current lowest unacknowledged seq) and must not retry.
type rpc func(ctx context.Context, kv kvpb.KVClient) (*kvpb.ResponseHeader, error)

// call describes one call for do.
type call struct {
	// op names the call in errors and logs.
	op    string
	route route
	// maxAttempts overrides RetryPolicy.MaxAttempts when non-zero.
	maxAttempts int
	// onAttemptErr, if set, sees every failed attempt's error.
	onAttemptErr func(error)
}

// outcome is how do ended.
type outcome struct {
	// err is nil on success; else the server's definitive answer (a gRPC
	// status error, as received) or, if gaveUp, an error matching
	// ErrUnavailable and the cause. Neither names the call.
	err    error
	gaveUp bool
	// maybeExecuted says that some attempt ended without the server
	// saying that it did not execute the request: it reached, or may
	// have reached, a node that proposed it, and the reply was lost, or
	// timed out, or was not definitive. Meaningful for writes only.
	maybeExecuted bool
}

// class is what an attempt's error means for the call.
type class int

const (
	// classFinal: a definitive answer; stop.
	classFinal class = iota
	// classRetry: not executed (TOO_MANY_PENDING, TOO_MANY_SESSIONS);
	// retry the same request after a backoff.
	classRetry
	// classRetryMaybe: no answer, or not a definitive one (the node
	// cannot serve, the reply was lost or late); the request may have
	// executed. Retry, at the leader named if any.
	classRetryMaybe
)

func classify(err error) class {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Aborted:
		return classRetryMaybe
	case codes.ResourceExhausted:
		switch kvpb.DetailOf(err).GetCode() {
		case kvpb.ErrorCode_TOO_MANY_PENDING, kvpb.ErrorCode_TOO_MANY_SESSIONS:
			return classRetry
		}
	}
	return classFinal
}

// notExecuted says that an error is an answer that the request was not
// executed (or, for INVALID_ARGUMENT, that nothing was applied), so a
// write that got it needs no "outcome unknown". STALE_SEQUENCE is not one:
// it means the server has forgotten that seq's result.
func notExecuted(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument:
		return kvpb.DetailOf(err).GetCode() != kvpb.ErrorCode_STALE_SEQUENCE
	case codes.FailedPrecondition, codes.ResourceExhausted, codes.Unimplemented,
		codes.PermissionDenied, codes.Unauthenticated:
		return true
	}
	return false
}

// do runs a call: attempts at the node the route picks, each bounded by
// AttemptTimeout, until one succeeds or meets a definitive answer, or the
// call gives up (ctx ends, the client closes, attempts run out).
//
// A NOT_LEADER answer naming another node moves the leader cache there
// and retries at once (at most len(Endpoints)+1 times in a row, against
// stale hints bouncing between nodes); any other failure moves on to the
// next endpoint after a backoff.
func (c *Client) do(ctx context.Context, cl call, send rpc) outcome {
	maxAttempts := cl.maxAttempts
	if maxAttempts == 0 {
		maxAttempts = c.cfg.Retry.MaxAttempts
	}
	cursor := c.router.start(cl.route)
	var (
		last      error
		maybe     bool
		failures  int
		redirects int
	)
	for attempt := 1; ; attempt++ {
		if ctx.Err() != nil {
			return outcome{err: giveUp(ctx, last), gaveUp: true, maybeExecuted: maybe}
		}
		addr := c.router.pick(cl.route, cursor)
		kv, err := c.router.client(addr)
		cls := classRetry // an address gRPC cannot use: nothing sent, try another
		if errors.Is(err, ErrClosed) {
			return outcome{err: giveUp(ctx, err), gaveUp: true, maybeExecuted: maybe}
		}
		if err == nil {
			actx, cancel := context.WithTimeout(ctx, c.cfg.AttemptTimeout)
			var h *kvpb.ResponseHeader
			h, err = send(actx, kv)
			cancel()
			if err == nil {
				c.router.answered(addr, cl.route, h)
				return outcome{maybeExecuted: maybe}
			}
			err = fmt.Errorf("%s: %w", addr, err)
			cls = classify(err)
		}
		last = err
		if cl.onAttemptErr != nil {
			cl.onAttemptErr(err)
		}
		if cls == classFinal {
			return outcome{err: err, maybeExecuted: maybe}
		}
		if cls == classRetryMaybe {
			maybe = true
		}
		if ctx.Err() != nil {
			return outcome{err: giveUp(ctx, last), gaveUp: true, maybeExecuted: maybe}
		}

		redirected := false
		if d := kvpb.DetailOf(err); d != nil && (d.GetCode() == kvpb.ErrorCode_NOT_LEADER || d.GetCode() == kvpb.ErrorCode_UNAVAILABLE) {
			redirected = c.router.redirect(addr, d)
			cursor++
		} else if cls == classRetryMaybe || kv == nil {
			c.router.failed(addr)
			cursor++
		}
		if maxAttempts > 0 && attempt >= maxAttempts {
			return outcome{err: giveUp(ctx, last), gaveUp: true, maybeExecuted: maybe}
		}
		if redirected && redirects <= len(c.cfg.Endpoints) {
			redirects++
			continue
		}
		redirects = 0
		failures++
		if err := c.backoff(ctx, failures); err != nil {
			return outcome{err: giveUp(ctx, last), gaveUp: true, maybeExecuted: maybe}
		}
	}
}

// giveUp is the error of a call that gave up: ErrUnavailable with the
// cause (ctx's, or else the last attempt's error).
func giveUp(ctx context.Context, last error) error {
	if ctx.Err() == nil {
		return unavailable(last, nil)
	}
	return unavailable(context.Cause(ctx), last)
}
