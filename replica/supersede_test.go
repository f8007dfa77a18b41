package replica_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/cairnkv/cairn/replica"
)

// A leader cut off from its group accepts proposals that can never
// commit, at indexes N..N+4. The new leader commits fewer entries (its
// no-op and one write), and then the group goes idle: nobody ever writes
// at N+2..N+4 again. Once the old leader rejoins and applies the new
// leader's entries, all five proposals are told ErrNotCommitted at once:
// an entry of a later term committed before an index means no entry of an
// earlier term can ever be committed there.
func TestTruncatedProposalsFailPromptly(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t, 3, nil)
	old := c.waitLeader(ctx)
	_, idx := c.propose(ctx, "a=1")
	c.waitApplied(ctx, idx)

	// Stop the old leader's clock so that it stays leader (check-quorum
	// would otherwise make it step down) while it is cut off.
	c.nodes[old].clock.paused.Store(true)
	c.net.Disconnect(old)
	var lost []*replica.Proposal
	for i := range 5 {
		lost = append(lost, c.r(old).ProposeAsync(ctx, fmt.Appendf(nil, "lost%d=1", i)))
	}

	lead := c.waitLeader(ctx, c.others(old)...)
	won, err := c.r(lead).Propose(ctx, []byte("won=1"))
	if err != nil {
		t.Fatal(err)
	}
	wonIndex := won.(applied).Index
	for i, p := range lost {
		select {
		case <-p.Done():
			res, err := p.Wait(ctx)
			t.Fatalf("proposal %d resolved while its leader was cut off: %v, %v", i, res, err)
		default:
		}
	}

	c.nodes[old].clock.paused.Store(false)
	c.net.Connect(old)
	// Nothing more is proposed. Proposals are settled in the same step
	// that applies the entries settling them, before WaitApplied returns.
	if err := c.r(old).WaitApplied(ctx, wonIndex); err != nil {
		t.Fatal(err)
	}
	for i, p := range lost {
		select {
		case <-p.Done():
		default:
			t.Fatalf("proposal %d still pending after the old leader applied the new leader's entries up to %d", i, wonIndex)
		}
		res, err := p.Wait(ctx)
		if !errors.Is(err, replica.ErrNotCommitted) || res != nil {
			t.Errorf("proposal %d: result %+v, error %v; want ErrNotCommitted and no result", i, res, err)
		}
	}
	// The scenario is the one described: some proposals sit beyond every
	// index the new leader wrote.
	if last, _ := lost[len(lost)-1].Index(); last <= wonIndex {
		t.Fatalf("the last lost proposal is at %d, not past the new leader's last entry %d", last, wonIndex)
	}
	for _, id := range c.ids {
		for i := range lost {
			if _, ok := c.nodes[id].sm.get(fmt.Sprintf("lost%d", i)); ok {
				t.Errorf("node %d applied lost%d", id, i)
			}
		}
	}
}
