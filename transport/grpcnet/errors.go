package grpcnet

import "errors"

// Errors of the transport. Callers branch on them with errors.Is; most
// arrive wrapped with detail.
var (
	// ErrMalformed is wrapped by every error the decoders return for a
	// frame that is not a valid encoding (MessageFromProto, ChunkFromProto,
	// AckFromProto). A stream that carries one is ended with
	// INVALID_ARGUMENT.
	ErrMalformed = errors.New("grpcnet: malformed frame")

	// ErrVersion: a peer speaks another version of the peer protocol.
	ErrVersion = errors.New("grpcnet: unsupported peer protocol version")

	// ErrWrongCluster: a peer belongs to another cluster. Its streams are
	// refused (FAILED_PRECONDITION) and the refusal is logged on both
	// sides.
	ErrWrongCluster = errors.New("grpcnet: peer belongs to another cluster")

	// ErrWrongNode: a stream reached a node other than the one it was
	// meant for (an address book that is out of date).
	ErrWrongNode = errors.New("grpcnet: peer stream reached the wrong node")

	// ErrUnreachable is what a snapshot transfer's done callback hears
	// (wrapped, through snapxfer) when the receiver has no known address or
	// its connection is down.
	ErrUnreachable = errors.New("grpcnet: peer unreachable")

	// ErrClosed is returned by Register and SetPeer after Close.
	ErrClosed = errors.New("grpcnet: transport closed")

	// ErrInvalidConfig is wrapped by every error Config.Validate returns.
	ErrInvalidConfig = errors.New("grpcnet: invalid config")
)
