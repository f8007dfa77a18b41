package loadgen

import (
	"context"
	"fmt"
)

// Driver is one connection to the system under test. The runner shares each
// Driver among several clients, so every method must be safe for concurrent
// use.
//
// Neither Put nor Get may retain key or value after it returns: the runner
// reuses their buffers for the next operation.
type Driver interface {
	// Put writes value under key. A nil error means the write is durable
	// and acknowledged as the store defines it (for both etcd and cairn:
	// committed by a majority with fsync on).
	Put(ctx context.Context, key, value []byte) error

	// Get reads key at the given consistency level. A missing key is not an
	// error: it returns found == false.
	Get(ctx context.Context, key []byte, level ReadLevel) (found bool, err error)

	// Close releases the connection. The runner calls it exactly once,
	// after every operation on this Driver has returned.
	Close() error
}

// A Dialer opens connection number conn (0 ≤ conn < Config.Conns) to the
// system under test. Each call must return a distinct connection, so that
// Config.Conns really is the number of connections the store sees.
type Dialer func(ctx context.Context, conn int) (Driver, error)

// ReadLevel is the consistency a Get asks for.
type ReadLevel uint8

const (
	// Linearizable reads reflect every write acknowledged before the read
	// began (etcd's default; cairn's ReadIndex path). The zero value.
	Linearizable ReadLevel = iota
	// Serializable reads may be served from any member's local state and
	// may be stale (etcd's WithSerializable; cairn's serializable level).
	Serializable
)

func (l ReadLevel) String() string {
	switch l {
	case Linearizable:
		return "linearizable"
	case Serializable:
		return "serializable"
	default:
		return fmt.Sprintf("ReadLevel(%d)", uint8(l))
	}
}

// ParseReadLevel is the inverse of String.
func ParseReadLevel(s string) (ReadLevel, error) {
	switch s {
	case "linearizable":
		return Linearizable, nil
	case "serializable":
		return Serializable, nil
	default:
		return 0, fmt.Errorf("loadgen: unknown read level %q (want linearizable or serializable)", s)
	}
}

// Set implements flag.Value.
func (l *ReadLevel) Set(s string) error {
	v, err := ParseReadLevel(s)
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// MarshalText implements encoding.TextMarshaler, so results carry the name.
func (l ReadLevel) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (l *ReadLevel) UnmarshalText(b []byte) error { return l.Set(string(b)) }

// OpKind is the kind of one generated operation.
type OpKind uint8

const (
	OpPut OpKind = iota
	OpGet
)

func (k OpKind) String() string {
	switch k {
	case OpPut:
		return "put"
	case OpGet:
		return "get"
	default:
		return fmt.Sprintf("OpKind(%d)", uint8(k))
	}
}
