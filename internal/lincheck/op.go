package lincheck

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
)

// Kind is what an operation does.
type Kind uint8

// The kinds of operations.
const (
	Get Kind = iota + 1
	Put
	Delete
	CompareAndSwap
	Append
)

var kindNames = [...]string{Get: "get", Put: "put", Delete: "delete", CompareAndSwap: "cas", Append: "append"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// IsWrite says whether operations of kind k may change the state.
func (k Kind) IsWrite() bool { return k != Get }

// MarshalText writes the kind's name (for history files).
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads a kind's name.
func (k *Kind) UnmarshalText(b []byte) error {
	for i, n := range kindNames {
		if n != "" && n == string(b) {
			*k = Kind(i)
			return nil
		}
	}
	return fmt.Errorf("lincheck: unknown kind %q", b)
}

// Input is what an operation asked for.
type Input struct {
	Kind Kind
	Key  string
	// Value is what Put or CompareAndSwap writes, or what Append appends.
	Value string `json:",omitempty"`
	// Expect is CompareAndSwap's condition: the key holds exactly Expect,
	// or, if ExpectAbsent, the key is absent.
	Expect       string `json:",omitempty"`
	ExpectAbsent bool   `json:",omitempty"`
}

func (in Input) String() string {
	switch in.Kind {
	case Get, Delete:
		return fmt.Sprintf("%s(%s)", in.Kind, in.Key)
	case CompareAndSwap:
		cond := strconv.Quote(in.Expect)
		if in.ExpectAbsent {
			cond = "absent"
		}
		return fmt.Sprintf("cas(%s, %s→%q)", in.Key, cond, in.Value)
	}
	return fmt.Sprintf("%s(%s, %q)", in.Kind, in.Key, in.Value)
}

// Outcome is how an operation ended, as far as the checker is concerned.
// The zero Outcome is Unknown: an operation nobody finished is open-ended.
type Outcome uint8

// The outcomes. See the package documentation.
const (
	Unknown Outcome = iota
	OK
	CASFailed
	NotApplied
)

var outcomeNames = [...]string{Unknown: "unknown", OK: "ok", CASFailed: "cas-failed", NotApplied: "not-applied"}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// MarshalText writes the outcome's name.
func (o Outcome) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// UnmarshalText reads an outcome's name.
func (o *Outcome) UnmarshalText(b []byte) error {
	for i, n := range outcomeNames {
		if n == string(b) {
			*o = Outcome(i)
			return nil
		}
	}
	return fmt.Errorf("lincheck: unknown outcome %q", b)
}

// Output is what an operation returned.
type Output struct {
	Outcome Outcome
	// Found and Value: for Get, whether the key was present and its value;
	// for a CASFailed CompareAndSwap, the current state the server
	// reported.
	Found bool   `json:",omitempty"`
	Value string `json:",omitempty"`
	// Deleted: for Delete, whether the key was present.
	Deleted bool `json:",omitempty"`
	// Length: for Append, the value's length after the append (the
	// appended bytes end there).
	Length uint64 `json:",omitempty"`
	// Err is the error's text, for people (never checked).
	Err string `json:",omitempty"`
}

// Describe is o as returned by an operation of kind k.
func (o Output) Describe(k Kind) string {
	switch o.Outcome {
	case OK:
		switch k {
		case Get:
			if !o.Found {
				return "absent"
			}
			return strconv.Quote(o.Value)
		case Delete:
			return "deleted=" + strconv.FormatBool(o.Deleted)
		case Append:
			return "len=" + strconv.FormatUint(o.Length, 10)
		}
		return "ok"
	case CASFailed:
		if !o.Found {
			return "failed: absent"
		}
		return "failed: " + strconv.Quote(o.Value)
	}
	return o.Outcome.String()
}

// Open is the return time of an open-ended operation: after every other
// time in a history.
const Open = math.MaxInt64

// Op is one recorded operation.
type Op struct {
	// Client is the recording worker: operations of one client do not
	// overlap. Zero-based (porcupine's visualization uses it as a row).
	Client int
	Input  Input
	Output Output
	// Call and Return are nanoseconds on the recorder's monotonic clock,
	// taken before the request was sent and after its answer came back.
	// An open-ended operation's Return is Open.
	Call, Return int64
}

// IsOpen says whether op is open-ended: it may take effect at any time
// after its call, or never.
func (op Op) IsOpen() bool { return op.Return == Open || op.Output.Outcome == Unknown }

func (op Op) String() string {
	ret := "open"
	if op.Return != Open {
		ret = strconv.FormatInt(op.Return, 10)
	}
	return fmt.Sprintf("c%d [%d, %s] %v -> %s", op.Client, op.Call, ret, op.Input, op.Output.Describe(op.Input.Kind))
}

// WriteHistory writes ops as JSON, one operation per line, for a history
// file that ReadHistory reads back.
func WriteHistory(w io.Writer, ops []Op) error {
	enc := json.NewEncoder(w)
	for _, op := range ops {
		if err := enc.Encode(op); err != nil {
			return err
		}
	}
	return nil
}

// WriteHistoryFile writes ops to a new file at path (see WriteHistory).
func WriteHistoryFile(path string, ops []Op) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	return WriteHistory(f, ops)
}

// ReadHistory reads what WriteHistory wrote.
func ReadHistory(r io.Reader) ([]Op, error) {
	var ops []Op
	dec := json.NewDecoder(r)
	for {
		var op Op
		err := dec.Decode(&op)
		if err == io.EOF {
			return ops, nil
		}
		if err != nil {
			return nil, fmt.Errorf("lincheck: history entry %d: %w", len(ops)+1, err)
		}
		ops = append(ops, op)
	}
}

// describeOps is a short listing of ops for error messages.
func describeOps(ops []Op, max int) string {
	var b strings.Builder
	for i, op := range ops {
		if i == max {
			fmt.Fprintf(&b, "\n\t... and %d more", len(ops)-max)
			break
		}
		b.WriteString("\n\t")
		b.WriteString(op.String())
	}
	return b.String()
}
