package raft

// BootstrapState returns the durable state every initial voter of a
// brand-new group starts from: a configuration entry at index 1 in term 1
// naming the voters, already committed. Each replica's storage must hold
// exactly this before its first NewNode, so that the configuration lives in
// the log like any later change.
func BootstrapState(voters ...NodeID) (HardState, []Entry) {
	cs := NewConfState(voters...)
	ents := []Entry{{Term: 1, Index: 1, Type: EntryConfChange, Data: cs.Marshal()}}
	return HardState{Term: 1, Commit: 1}, ents
}

func bootstrapStorage(s *MemoryStorage, cs ConfState) error {
	hs, ents := BootstrapState(cs.Voters...)
	if err := s.Append(ents); err != nil {
		return err
	}
	s.SetHardState(hs)
	return nil
}
