package kvpb

import (
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// GRPCCode is the gRPC status code that carries c.
func (c ErrorCode) GRPCCode() codes.Code {
	switch c {
	case ErrorCode_EMPTY_KEY, ErrorCode_KEY_TOO_LARGE, ErrorCode_VALUE_TOO_LARGE,
		ErrorCode_REQUEST_TOO_LARGE, ErrorCode_MALFORMED, ErrorCode_STALE_SEQUENCE:
		return codes.InvalidArgument
	case ErrorCode_SESSION_EXPIRED:
		return codes.FailedPrecondition
	case ErrorCode_TOO_MANY_SESSIONS, ErrorCode_TOO_MANY_PENDING:
		return codes.ResourceExhausted
	case ErrorCode_NOT_LEADER, ErrorCode_UNAVAILABLE:
		return codes.Unavailable
	}
	return codes.Unknown
}

// Status is the gRPC status that carries d: d.Code's gRPC code, d.Message,
// and d itself as the one detail.
func (d *ErrorDetail) Status() *status.Status {
	st := status.New(d.GetCode().GRPCCode(), d.GetMessage())
	if withDetail, err := st.WithDetails(d); err == nil {
		st = withDetail
	}
	return st
}

// Err is d.Status().Err().
func (d *ErrorDetail) Err() error { return d.Status().Err() }

// DetailOf returns the ErrorDetail carried by a gRPC status error, or nil
// if err is not one or carries none.
func DetailOf(err error) *ErrorDetail {
	var se interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &se) {
		return nil
	}
	for _, d := range se.GRPCStatus().Details() {
		if ed, ok := d.(*ErrorDetail); ok {
			return ed
		}
	}
	return nil
}
