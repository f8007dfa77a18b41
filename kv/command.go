package kv

import (
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/cairnkv/cairn/api/kvpb"
)

// commandFormat is the first byte of every encoded command: how the rest
// is encoded.
//
//	+-----------------+-------------------------------+
//	| format (1 byte) | kvpb.Command, protobuf (rest) |
//	+-----------------+-------------------------------+
//
// Do not change; a new encoding gets a new format byte, and Apply keeps
// decoding the old ones for as long as a log or snapshot may hold them.
const commandFormatProto byte = 1

// EncodeCommand encodes cmd for a log entry's data. The encoding is
// deterministic for a given binary.
func EncodeCommand(cmd *kvpb.Command) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.MarshalAppend([]byte{commandFormatProto}, cmd)
}

// DecodeCommand decodes what EncodeCommand produced. It never panics;
// bytes that are not a command yield an error matching ErrMalformed. A
// decoded command may still be invalid (see Limits.CheckCommand).
func DecodeCommand(data []byte) (*kvpb.Command, error) {
	if len(data) == 0 {
		return nil, errf(ErrMalformed, "empty command")
	}
	if data[0] != commandFormatProto {
		return nil, errf(ErrMalformed, "unknown command format %d", data[0])
	}
	cmd := new(kvpb.Command)
	if err := proto.Unmarshal(data[1:], cmd); err != nil {
		return nil, errf(ErrMalformed, "undecodable command: %v", err)
	}
	return cmd, nil
}

// NewCommand makes the command that proposes req, a write or session
// request (*kvpb.PutRequest, DeleteRequest, CompareAndSwapRequest,
// AppendRequest, BatchRequest, OpenSessionRequest, KeepAliveRequest,
// CloseSessionRequest, or a *kvpb.Limits to change the group's limits).
// It moves the request's WriteHeader into the command (so the proposed
// request carries none) and stamps the command with now, the proposer's
// wall clock. req is not modified.
func NewCommand(req proto.Message, now time.Time) (*kvpb.Command, error) {
	cmd := &kvpb.Command{TimeUnixNano: now.UnixNano()}
	var h *kvpb.WriteHeader
	switch r := proto.Clone(req).(type) {
	case *kvpb.PutRequest:
		h, r.Header = r.Header, nil
		cmd.Op = &kvpb.Command_Put{Put: r}
	case *kvpb.DeleteRequest:
		h, r.Header = r.Header, nil
		cmd.Op = &kvpb.Command_Delete{Delete: r}
	case *kvpb.CompareAndSwapRequest:
		h, r.Header = r.Header, nil
		cmd.Op = &kvpb.Command_CompareAndSwap{CompareAndSwap: r}
	case *kvpb.AppendRequest:
		h, r.Header = r.Header, nil
		cmd.Op = &kvpb.Command_Append{Append: r}
	case *kvpb.BatchRequest:
		h, r.Header = r.Header, nil
		cmd.Op = &kvpb.Command_Batch{Batch: r}
	case *kvpb.OpenSessionRequest:
		cmd.Op = &kvpb.Command_OpenSession{OpenSession: r}
	case *kvpb.KeepAliveRequest:
		cmd.Op = &kvpb.Command_KeepAlive{KeepAlive: r}
	case *kvpb.CloseSessionRequest:
		cmd.Op = &kvpb.Command_CloseSession{CloseSession: r}
	case *kvpb.Limits:
		cmd.Op = &kvpb.Command_SetLimits{SetLimits: r}
	default:
		return nil, errf(ErrMalformed, "%T is not a write or session request", req)
	}
	cmd.SessionId = h.GetSessionId()
	cmd.Seq = h.GetSeq()
	cmd.LowestUnackedSeq = h.GetLowestUnackedSeq()
	return cmd, nil
}
