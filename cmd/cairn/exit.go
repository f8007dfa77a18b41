package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairnkv/cairn/client"
)

// Exit codes. Scripts may branch on them; they do not change.
const (
	exitOK = 0
	// exitFailure: anything not listed below.
	exitFailure = 1
	// exitUsage: a bad command line (unknown flag, wrong arguments).
	exitUsage = 2
	// exitNotFound: get found no such key.
	exitNotFound = 3
	// exitCASFailed: cas's condition did not hold; nothing was written.
	exitCASFailed = 4
	// exitUnavailable: the cluster did not answer in time (no leader, no
	// quorum, nodes unreachable); a write was NOT applied.
	exitUnavailable = 5
	// exitOutcomeUnknown: a write may or may not have been applied.
	exitOutcomeUnknown = 6
	// exitInvalid: the cluster refused the request as invalid (empty key,
	// a size limit); nothing was applied.
	exitInvalid = 7
	// exitInterrupted: interrupted by SIGINT or SIGTERM.
	exitInterrupted = 130
)

// writeVerbs are the commands that write.
var writeVerbs = map[string]bool{"cairn put": true, "cairn del": true, "cairn cas": true}

// exitError carries an exit code with the error that caused it.
type exitError struct {
	code int
	err  error
	// quiet: the message was already printed (or there is none to print).
	quiet bool
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// reportError prints err as a human message on w, prefixed with the
// command's name, and returns its exit code.
func reportError(w io.Writer, name string, g *globals, err error) int {
	var ee *exitError
	if errors.As(err, &ee) && ee.quiet {
		return ee.code
	}
	msg, code := describe(err, g, writeVerbs[name])
	fmt.Fprintf(w, "%s: %s\n", name, msg)
	return code
}

// describe turns an error from a verb into a message for a person, and
// its exit code. The client's typed errors each get their own wording,
// saying whether anything was applied.
// write says whether the verb was a write (to say whether it applied).
func describe(err error, g *globals, write bool) (string, int) {
	var (
		ee      *exitError
		invalid *client.InvalidArgumentError
		cas     *client.CASFailedError
		unknown *client.OutcomeUnknownError
	)
	switch {
	case errors.As(err, &ee) && ee.code == exitUsage:
		return ee.err.Error(), exitUsage
	case errors.Is(err, client.ErrKeyNotFound):
		return "key not found", exitNotFound
	case errors.As(err, &cas):
		return casMessage(cas), exitCASFailed
	case errors.As(err, &invalid):
		return invalidMessage(invalid), exitInvalid
	case errors.As(err, &unknown):
		return fmt.Sprintf("the %s may or may not have been applied: the cluster stopped answering after it was sent (%v).\n"+
			"Read the key to find out what happened; write again to make sure.", unknown.Op, cause(unknown.Err)), exitOutcomeUnknown
	case errors.Is(err, client.ErrUnavailable) && !errors.Is(err, context.Canceled):
		applied := ""
		if write {
			applied = "; nothing was applied"
		}
		return fmt.Sprintf("cluster unavailable: no answer within %v from %s (%v)%s.\n"+
			"Is a majority of the nodes running? Check with: cairn status --endpoints %s",
			g.timeout, strings.Join(g.endpoints, ","), cause(err), applied, strings.Join(g.endpoints, ",")), exitUnavailable
	case errors.Is(err, context.Canceled):
		return "interrupted", exitInterrupted
	case errors.As(err, &ee):
		return ee.err.Error(), ee.code
	}
	return err.Error(), exitFailure
}

func casMessage(e *client.CASFailedError) string {
	if e.Current == nil {
		return fmt.Sprintf("compare-and-swap failed: %s is absent; nothing written", printable(e.Key))
	}
	return fmt.Sprintf("compare-and-swap failed: %s is at version %d with value %s; nothing written",
		printable(e.Key), e.Current.Version, printable(e.Current.Value))
}

func invalidMessage(e *client.InvalidArgumentError) string {
	msg := "invalid request: " + e.Message
	if e.Limit != "" {
		msg += fmt.Sprintf(" (%s is %d bytes, found %d)", e.Limit, e.LimitValue, e.Actual)
	}
	return msg + "; nothing applied"
}

// cause is the most telling part of a client error's chain for a person:
// the deadline, or the last gRPC status message, or the error itself.
func cause(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		s := "timed out"
		if last := lastAttempt(err); last != "" {
			s += "; last attempt: " + last
		}
		return s
	}
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		return st.Code().String() + ": " + st.Message()
	}
	return err.Error()
}

// lastAttempt extracts the client's "(last attempt: ...)" note, if any.
func lastAttempt(err error) string {
	s := err.Error()
	i := strings.LastIndex(s, "(last attempt: ")
	if i < 0 {
		return ""
	}
	s = strings.TrimSuffix(s[i+len("(last attempt: "):], ")")
	if j := strings.LastIndex(s, "desc = "); j >= 0 {
		s = s[j+len("desc = "):]
	}
	return s
}
