package server

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/cairnkv/cairn/raft"
)

// ParsePeers parses a cluster's node list as the --peers flag gives it:
// comma-separated ID=PEER_ADDR/CLIENT_ADDR items, for example
//
//	1=10.0.0.1:8001/10.0.0.1:7001,2=10.0.0.2:8001/10.0.0.2:7001,3=10.0.0.3:8001/10.0.0.3:7001
//
// Spaces around items are ignored. Each error names the item at fault.
func ParsePeers(s string) (map[raft.NodeID]Peer, error) {
	peers := map[raft.NodeID]Peer{}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		idStr, addrs, ok := strings.Cut(item, "=")
		if !ok {
			return nil, fmt.Errorf("%w: peer %q: want ID=PEER_ADDR/CLIENT_ADDR", ErrInvalidConfig, item)
		}
		id, err := strconv.ParseUint(strings.TrimSpace(idStr), 10, 64)
		if err != nil || id == 0 {
			return nil, fmt.Errorf("%w: peer %q: node id %q is not a positive integer", ErrInvalidConfig, item, idStr)
		}
		peerAddr, clientAddr, ok := strings.Cut(addrs, "/")
		if !ok || strings.TrimSpace(peerAddr) == "" || strings.TrimSpace(clientAddr) == "" {
			return nil, fmt.Errorf("%w: peer %q: want ID=PEER_ADDR/CLIENT_ADDR (both addresses)", ErrInvalidConfig, item)
		}
		if _, dup := peers[raft.NodeID(id)]; dup {
			return nil, fmt.Errorf("%w: peer %q: node %d is listed twice", ErrInvalidConfig, item, id)
		}
		peers[raft.NodeID(id)] = Peer{PeerAddr: strings.TrimSpace(peerAddr), ClientAddr: strings.TrimSpace(clientAddr)}
	}
	if len(peers) == 0 {
		return nil, fmt.Errorf("%w: no peers in %q", ErrInvalidConfig, s)
	}
	return peers, nil
}

// FormatPeers is the inverse of ParsePeers, by ascending node ID.
func FormatPeers(peers map[raft.NodeID]Peer) string {
	var b strings.Builder
	for i, id := range slices.Sorted(maps.Keys(peers)) {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%d=%s", id, peers[id])
	}
	return b.String()
}
