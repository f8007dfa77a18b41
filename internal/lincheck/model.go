package lincheck

import (
	"hash/maphash"
	"slices"
	"strconv"

	"github.com/anishathalye/porcupine"
)

// state is one key's state in the model: absent, or present with a value.
// It is a comparable value, so porcupine's default == is its equality.
type state struct {
	present bool
	value   string
}

func (s state) String() string {
	if !s.present {
		return "absent"
	}
	return strconv.Quote(s.value)
}

// holds says whether in's compare-and-swap condition holds in s.
func (s state) holds(in Input) bool {
	if in.ExpectAbsent {
		return !s.present
	}
	return s.present && s.value == in.Expect
}

// apply is s after in takes effect (as the state machine would execute
// it: a compare-and-swap whose condition fails changes nothing).
func (s state) apply(in Input) state {
	switch in.Kind {
	case Put:
		return state{present: true, value: in.Value}
	case Delete:
		return state{}
	case CompareAndSwap:
		if s.holds(in) {
			return state{present: true, value: in.Value}
		}
		return s
	case Append:
		return state{present: true, value: s.value + in.Value}
	}
	return s
}

// step is the model's step function: whether in could return out in
// state s, and the state after. It is pure.
func step(s state, in Input, out Output) (bool, state) {
	switch out.Outcome {
	case Unknown:
		// Open-ended: whenever it takes effect, it does what it does; any
		// output is accepted. (Never taking effect is the linearization
		// that places it last, after every operation that returned.)
		return true, s.apply(in)
	case NotApplied:
		return true, s
	case CASFailed:
		if in.Kind != CompareAndSwap || s.holds(in) {
			return false, s
		}
		return out.Found == s.present && (!s.present || out.Value == s.value), s
	case OK:
	default:
		return false, s
	}
	switch in.Kind {
	case Get:
		return out.Found == s.present && (!s.present || out.Value == s.value), s
	case Put:
		return true, s.apply(in)
	case Delete:
		return out.Deleted == s.present, s.apply(in)
	case CompareAndSwap:
		return s.holds(in), s.apply(in)
	case Append:
		next := s.apply(in)
		return out.Length == uint64(len(next.value)), next
	}
	return false, s
}

var hashSeed = maphash.MakeSeed()

// Model is the porcupine model of a cairn key space (see the package
// documentation): operations are Inputs and Outputs (not pointers),
// partitioned by key. Check uses it; it is exported for porcupine's own
// entry points and for visualizing a history by hand.
func Model() porcupine.Model {
	return porcupine.Model{
		Partition: partitionByKey,
		Init:      func() any { return state{} },
		Step: func(s, in, out any) (bool, any) {
			return step(s.(state), in.(Input), out.(Output))
		},
		Hash: func(s any) uint64 {
			st := s.(state)
			if !st.present {
				return 0
			}
			return maphash.String(hashSeed, st.value) | 1
		},
		DescribeOperation: func(in, out any) string {
			i := in.(Input)
			return i.String() + " → " + out.(Output).Describe(i.Kind)
		},
		DescribeState: func(s any) string { return s.(state).String() },
	}
}

// partitionByKey splits a history into one sub-history per key, in the
// order of the keys' first operations.
func partitionByKey(history []porcupine.Operation) [][]porcupine.Operation {
	index := map[string]int{}
	var parts [][]porcupine.Operation
	for _, op := range history {
		k := op.Input.(Input).Key
		i, ok := index[k]
		if !ok {
			i = len(parts)
			index[k] = i
			parts = append(parts, nil)
		}
		parts[i] = append(parts[i], op)
	}
	return parts
}

// operations converts ops to porcupine's form.
func operations(ops []Op) []porcupine.Operation {
	out := make([]porcupine.Operation, 0, len(ops))
	for _, op := range ops {
		out = append(out, porcupine.Operation{
			ClientId: op.Client,
			Input:    op.Input,
			Call:     op.Call,
			Output:   op.Output,
			Return:   op.Return,
		})
	}
	return out
}

// byKey groups ops by key, each group in the order given, the keys
// sorted.
func byKey(ops []Op) (keys []string, groups map[string][]Op) {
	groups = map[string][]Op{}
	for _, op := range ops {
		if _, ok := groups[op.Input.Key]; !ok {
			keys = append(keys, op.Input.Key)
		}
		groups[op.Input.Key] = append(groups[op.Input.Key], op)
	}
	slices.Sort(keys)
	return keys, groups
}
