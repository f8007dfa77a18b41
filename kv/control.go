package kv

// Controls are deliberately broken variants of the state machine, each a
// constant that is false in every build except the one made with its
// build tag, so that no production build can contain the broken code.
// The chaos runner's control tests (internal/chaos) build a server binary
// with one, run it under faults, and fail unless the runner's checks
// catch it: proof that a chaos run would see such a bug in a real server.
// (They are the state machine's counterpart of raft's canaries, which
// .ci/canaries.sh checks against the simulator.)
//
//	control_no_dedup   a retried write is executed again instead of
//	                   answered from its session's cached result
//
// Each constant is declared in control_<name>.go (tag on) and
// control_<name>_off.go (tag off).
