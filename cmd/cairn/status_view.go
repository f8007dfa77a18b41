package main

import (
	"fmt"
	"io"
	"sort"
	"strconv"
)

// nodeStatus is one node's view of one group, as the Admin service's
// Status reports it, or the error of asking an unreachable node.
type nodeStatus struct {
	Endpoint     string `json:"endpoint"`
	Node         uint64 `json:"node,omitempty"`
	Group        uint64 `json:"group"`
	Role         string `json:"role,omitempty"`
	Term         uint64 `json:"term"`
	Leader       uint64 `json:"leader"`
	Commit       uint64 `json:"commit"`
	Applied      uint64 `json:"applied"`
	LastIndex    uint64 `json:"last_index"`
	LogBytes     uint64 `json:"log_bytes"`
	SnapshotSize uint64 `json:"snapshot_bytes"`
	SnapshotIdx  uint64 `json:"snapshot_index"`
	Err          string `json:"error,omitempty"`
}

// sortStatuses orders by group, then node, unreachable endpoints last.
func sortStatuses(st []nodeStatus) {
	sort.SliceStable(st, func(i, j int) bool {
		a, b := st[i], st[j]
		if (a.Err == "") != (b.Err == "") {
			return a.Err == ""
		}
		if a.Group != b.Group {
			return a.Group < b.Group
		}
		if a.Node != b.Node {
			return a.Node < b.Node
		}
		return a.Endpoint < b.Endpoint
	})
}

// writeStatusTable prints one row per node and group.
func writeStatusTable(w io.Writer, st []nodeStatus) error {
	t := newTable(w, "NODE", "ENDPOINT", "GROUP", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "LAST", "LOG", "SNAPSHOT")
	for _, s := range st {
		if s.Err != "" {
			node := "?"
			if s.Node != 0 {
				node = strconv.FormatUint(s.Node, 10)
			}
			t.row(node, s.Endpoint, "-", "unreachable: "+s.Err)
			continue
		}
		leader := "none"
		if s.Leader != 0 {
			leader = strconv.FormatUint(s.Leader, 10)
		}
		snap := "none"
		if s.SnapshotIdx != 0 || s.SnapshotSize != 0 {
			snap = fmt.Sprintf("%s @%d", humanBytes(s.SnapshotSize), s.SnapshotIdx)
		}
		t.row(strconv.FormatUint(s.Node, 10), s.Endpoint, strconv.FormatUint(s.Group, 10), s.Role,
			strconv.FormatUint(s.Term, 10), leader,
			strconv.FormatUint(s.Commit, 10), strconv.FormatUint(s.Applied, 10), strconv.FormatUint(s.LastIndex, 10),
			humanBytes(s.LogBytes), snap)
	}
	return t.flush()
}

// humanBytes renders a size as 512B, 3.1KiB, 12MiB.
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + "B"
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	if v < 10 {
		return fmt.Sprintf("%.1f%ciB", v, "KMGTPE"[exp])
	}
	return fmt.Sprintf("%.0f%ciB", v, "KMGTPE"[exp])
}
