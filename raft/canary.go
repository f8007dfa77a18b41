package raft

// Canaries are deliberately broken variants of the core that prove the
// test suite has teeth. Each is a constant, false in every build except the
// one made with its build tag, so production builds cannot contain the
// broken code (the compiler removes it). CI (.ci/canaries.sh) builds the
// tests under each tag and fails if the suite does NOT catch the bug:
//
//	canary_vote_not_persisted       a vote sent before it is durable
//	canary_commit_prev_term         Figure 8: old-term entries committed by count
//	canary_no_election_restriction  votes for candidates with stale logs
//	canary_read_without_leadership  reads answered without a heartbeat round
//	canary_no_consistency_check     AppendEntries without the prev-entry check
//
// Each constant is declared in canary_<name>.go (tag on) and
// canary_<name>_off.go (tag off).
