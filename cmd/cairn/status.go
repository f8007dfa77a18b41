package main

import (
	"context"
	"errors"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/cairnkv/cairn/api/adminpb"
)

func newStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show every node's Raft state: role, term, leader, indexes, log and snapshot sizes",
		Long: `Ask every endpoint's Admin service for its status (it needs no leader or
quorum: each node says what it knows) and print one row per node and group:
its role, term, the leader it knows of, its commit, applied and last log
index, the size of its write-ahead log, and its latest snapshot's size and
index. An endpoint that does not answer is listed as unreachable, and the
exit status is then 5.`,
		Args: argsUsage(0, 0, "none"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ac, err := newAdminConns(g.endpoints)
			if err != nil {
				return usageErr(err)
			}
			defer ac.close()
			ctx, cancel := context.WithTimeout(cmd.Context(), g.timeout)
			defer cancel()
			st := ac.status(ctx)
			sortStatuses(st)
			if g.output == outputJSON {
				if err := writeJSON(g.stdout, struct {
					Nodes []nodeStatus `json:"nodes"`
				}{st}); err != nil {
					return err
				}
			} else if err := writeStatusTable(g.stdout, st); err != nil {
				return err
			}
			for _, s := range st {
				if s.Err != "" {
					return &exitError{code: exitUnavailable, quiet: true, err: errors.New("unreachable: " + s.Endpoint)}
				}
			}
			return nil
		},
	}
}

// adminConns are gRPC connections to the Admin service of a list of
// endpoints (connected lazily, on first use).
type adminConns struct {
	endpoints []string
	conns     []*grpc.ClientConn
}

func newAdminConns(endpoints []string) (*adminConns, error) {
	ac := &adminConns{endpoints: endpoints}
	for _, ep := range endpoints {
		cc, err := grpc.NewClient(ep, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			ac.close()
			return nil, err
		}
		ac.conns = append(ac.conns, cc)
	}
	return ac, nil
}

func (ac *adminConns) close() {
	for _, cc := range ac.conns {
		_ = cc.Close()
	}
}

// client is the Admin client of endpoint i.
func (ac *adminConns) client(i int) adminpb.AdminClient { return adminpb.NewAdminClient(ac.conns[i]) }

// status asks every endpoint at once; an endpoint that fails yields one
// nodeStatus with Err set.
func (ac *adminConns) status(ctx context.Context) []nodeStatus {
	per := make([][]nodeStatus, len(ac.endpoints))
	var wg sync.WaitGroup
	for i, ep := range ac.endpoints {
		wg.Go(func() {
			resp, err := ac.client(i).Status(ctx, &adminpb.StatusRequest{}, grpc.WaitForReady(false))
			if err != nil {
				per[i] = []nodeStatus{{Endpoint: ep, Err: statusErr(err)}}
				return
			}
			per[i] = statusesOf(ep, resp)
		})
	}
	wg.Wait()
	var out []nodeStatus
	for _, p := range per {
		out = append(out, p...)
	}
	return out
}

func statusesOf(ep string, resp *adminpb.StatusResponse) []nodeStatus {
	var out []nodeStatus
	for _, gs := range resp.GetGroups() {
		s := nodeStatus{
			Endpoint:     ep,
			Node:         resp.GetNodeId(),
			Group:        gs.GetGroupId(),
			Role:         roleName(gs.GetRole()),
			Term:         gs.GetTerm(),
			Leader:       gs.GetLeaderId(),
			Commit:       gs.GetCommitIndex(),
			Applied:      gs.GetAppliedIndex(),
			LastIndex:    gs.GetLastIndex(),
			LogBytes:     gs.GetLogBytes(),
			SnapshotIdx:  gs.GetSnapshotIndex(),
			SnapshotSize: gs.GetSnapshotBytes(),
		}
		switch e := gs.GetError(); {
		case strings.HasPrefix(e, "busy:"):
			// Its last published view; commit and log size unknown.
			s.Role += " (busy: slow disk?)"
		case e != "":
			s.Role += " (" + e + ")"
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		out = append(out, nodeStatus{Endpoint: ep, Node: resp.GetNodeId(), Role: "no groups"})
	}
	return out
}

func roleName(r adminpb.Role) string {
	switch r {
	case adminpb.Role_FOLLOWER:
		return "follower"
	case adminpb.Role_PRE_CANDIDATE:
		return "pre-candidate"
	case adminpb.Role_CANDIDATE:
		return "candidate"
	case adminpb.Role_LEADER:
		return "leader"
	case adminpb.Role_STOPPED:
		return "stopped"
	}
	return "unknown"
}

// statusErr is a short reason an endpoint did not answer.
func statusErr(err error) string {
	st := status.Convert(err)
	switch {
	case errors.Is(err, context.DeadlineExceeded) || st.Code() == codes.DeadlineExceeded:
		return "timed out"
	case strings.Contains(st.Message(), "connection refused"):
		return "connection refused"
	}
	return st.Message()
}
