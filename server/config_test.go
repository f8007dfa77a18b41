package server_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnkv/cairn/internal/testcluster"
	"github.com/cairnkv/cairn/kv"
	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/server"
)

func TestParsePeers(t *testing.T) {
	peers, err := server.ParsePeers(" 2=127.0.0.1:8002/127.0.0.1:7002, 1=h1:8001/h1:7001 ")
	if err != nil {
		t.Fatal(err)
	}
	if got := server.FormatPeers(peers); got != "1=h1:8001/h1:7001,2=127.0.0.1:8002/127.0.0.1:7002" {
		t.Fatalf("round trip: %s", got)
	}
	for _, bad := range []string{"", "1", "x=a:1/b:2", "0=a:1/b:2", "1=a:1", "1=a:1/", "1=a:1/b:2,1=c:1/d:2"} {
		if _, err := server.ParsePeers(bad); !errors.Is(err, server.ErrInvalidConfig) {
			t.Errorf("ParsePeers(%q): %v, want ErrInvalidConfig", bad, err)
		}
	}
}

// TestConfigValidate checks that Validate reports every problem at once.
func TestConfigValidate(t *testing.T) {
	bad := kv.DefaultLimits
	bad.MaxKeySize = 0
	cfg := server.Config{
		NodeID: 4,
		Peers: map[raft.NodeID]server.Peer{
			1: {PeerAddr: "a:1", ClientAddr: "a:2"},
			2: {PeerAddr: "a:1", ClientAddr: "nonsense"},
			3: {PeerAddr: "c:1"},
		},
		ElectionTicks:  2,
		HeartbeatTicks: 3,
		InitialLimits:  &bad,
	}
	err := cfg.Validate()
	if !errors.Is(err, server.ErrInvalidConfig) {
		t.Fatalf("Validate: %v", err)
	}
	for _, want := range []string{
		"cluster id must not be zero",
		"data dir is required",
		"do not include this node (4)",
		"address a:1 is given to node 1 and node 2",
		`node 2's client address "nonsense" is not host:port`,
		"node 3 has no client address",
		"election ticks 2 must exceed heartbeat ticks 3",
		"initial limits",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate's error lacks %q:\n%v", want, err)
		}
	}
}

// TestDataDirBelongsToItsNode checks that a node refuses a data directory
// of another cluster or node, one that is not a cairn data directory, and
// one whose meta file is damaged.
func TestDataDirBelongsToItsNode(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Nodes: 1})
	dir := c.DataDir(1)
	c.Stop(1)

	start := func(cluster uint64, node raft.NodeID, dataDir string) error {
		peers := c.Peers()
		if node != 1 {
			peers = map[raft.NodeID]server.Peer{node: peers[1]}
		}
		n, err := server.Start(server.Config{NodeID: node, ClusterID: cluster, DataDir: dataDir, Peers: peers})
		if err == nil {
			n.Stop()
		}
		return err
	}
	err := start(2, 1, dir)
	if !errors.Is(err, server.ErrDataDirMismatch) || !strings.Contains(err.Error(), "belongs to cluster 1 node 1, and this is cluster 2 node 1") {
		t.Fatalf("another cluster's data dir: %v", err)
	}
	if err := start(1, 2, dir); !errors.Is(err, server.ErrDataDirMismatch) {
		t.Fatalf("another node's data dir: %v", err)
	}

	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "something"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := start(1, 1, other); !errors.Is(err, server.ErrNotDataDir) {
		t.Fatalf("a non-empty directory without a meta file: %v", err)
	}

	meta := filepath.Join(dir, "CAIRN_META")
	b, err := os.ReadFile(meta)
	if err != nil {
		t.Fatal(err)
	}
	b[20] ^= 1
	if err := os.WriteFile(meta, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := start(1, 1, dir); !errors.Is(err, server.ErrDataDirCorrupt) {
		t.Fatalf("a damaged meta file: %v", err)
	}
	b[20] ^= 1
	if err := os.WriteFile(meta, b, 0o644); err != nil {
		t.Fatal(err)
	}
	// Repaired, the node starts again, on its own data.
	c.Restart(1)
}
