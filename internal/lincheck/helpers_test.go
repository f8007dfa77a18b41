package lincheck

import (
	"time"

	"github.com/anishathalye/porcupine"
)

// Constructors of recorded operations for hand-written histories. Times
// are small integers; ret == Open makes an open-ended operation.

func opOf(c int, call, ret int64, in Input, out Output) Op {
	if ret == Open {
		out = Output{Outcome: Unknown}
	}
	return Op{Client: c, Input: in, Output: out, Call: call, Return: ret}
}

func put(c int, call, ret int64, key, v string) Op {
	return opOf(c, call, ret, Input{Kind: Put, Key: key, Value: v}, Output{Outcome: OK})
}

func get(c int, call, ret int64, key, v string) Op {
	return opOf(c, call, ret, Input{Kind: Get, Key: key}, Output{Outcome: OK, Found: true, Value: v})
}

func getAbsent(c int, call, ret int64, key string) Op {
	return opOf(c, call, ret, Input{Kind: Get, Key: key}, Output{Outcome: OK})
}

func del(c int, call, ret int64, key string, deleted bool) Op {
	return opOf(c, call, ret, Input{Kind: Delete, Key: key}, Output{Outcome: OK, Deleted: deleted})
}

func cas(c int, call, ret int64, key, expect, v string) Op {
	return opOf(c, call, ret, Input{Kind: CompareAndSwap, Key: key, Expect: expect, Value: v}, Output{Outcome: OK})
}

func casAbsent(c int, call, ret int64, key, v string) Op {
	return opOf(c, call, ret, Input{Kind: CompareAndSwap, Key: key, ExpectAbsent: true, Value: v}, Output{Outcome: OK})
}

// casFailed: the condition did not hold; cur is the current value, or
// absent if cur is "<absent>".
func casFailed(c int, call, ret int64, key, expect, v, cur string) Op {
	out := Output{Outcome: CASFailed, Found: true, Value: cur}
	if cur == "<absent>" {
		out = Output{Outcome: CASFailed}
	}
	return opOf(c, call, ret, Input{Kind: CompareAndSwap, Key: key, Expect: expect, Value: v}, out)
}

func appendOp(c int, call, ret int64, key, tok string, length uint64) Op {
	return opOf(c, call, ret, Input{Kind: Append, Key: key, Value: tok}, Output{Outcome: OK, Length: length})
}

func notApplied(op Op) Op {
	op.Output = Output{Outcome: NotApplied}
	return op
}

// checkUnpruned checks ops with porcupine directly, without pruning.
func checkUnpruned(ops []Op, timeout time.Duration) Verdict {
	switch porcupine.CheckOperationsTimeout(Model(), operations(normalize(ops)), timeout) {
	case porcupine.Ok:
		return VerdictOk
	case porcupine.Illegal:
		return VerdictIllegal
	}
	return VerdictUnknown
}
