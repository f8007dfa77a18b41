package grpcnet_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/transport/grpcnet"
)

// Every test closes what it opens; goleak fails the package otherwise.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testTimeout bounds every wait. Tests never sleep to synchronize: they
// wait on what a handler receives, on a replica's leader-change channel or
// on WaitApplied.
const testTimeout = 30 * time.Second

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// logBuffer collects a test's log lines and prints them if it fails.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newLogger(t testing.TB) (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("transport logs:\n%s", b.String())
		}
	})
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return lis
}

// testCluster is the cluster ID of this test process's transports: random,
// so that test processes running side by side (go test -count, -cpu, or
// several packages at once) never accept one another's connections when
// one reuses a port another just closed.
var testCluster = rand.Uint64()>>1 | 1

// fastConfig is a configuration for tests: quick reconnects.
func fastConfig(id raft.NodeID, logger *slog.Logger) grpcnet.Config {
	return grpcnet.Config{
		NodeID:     id,
		ClusterID:  testCluster,
		MinBackoff: 5 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond,
		Logger:     logger,
	}
}

// newTransports starts n transports (nodes 1..n) that know one another,
// each on its own 127.0.0.1 port. tweak, if not nil, adjusts each config.
func newTransports(t testing.TB, n int, tweak func(*grpcnet.Config)) ([]*grpcnet.Transport, *logBuffer) {
	t.Helper()
	logger, logs := newLogger(t)
	lis := make([]net.Listener, n)
	peers := map[raft.NodeID]string{}
	for i := range n {
		lis[i] = listen(t)
		peers[raft.NodeID(i+1)] = lis[i].Addr().String()
	}
	trs := make([]*grpcnet.Transport, n)
	for i := range n {
		cfg := fastConfig(raft.NodeID(i+1), logger)
		cfg.Peers = peers
		if tweak != nil {
			tweak(&cfg)
		}
		tr, err := grpcnet.New(cfg, lis[i])
		if err != nil {
			t.Fatal(err)
		}
		trs[i] = tr
		t.Cleanup(func() { tr.Close() })
	}
	return trs, logs
}

// recorder is a Handler that records what it is given.
type recorder struct {
	msgs        chan raft.Message
	snaps       chan snapshot
	unreachable chan raft.NodeID
}

type snapshot struct {
	msg  raft.Message
	data []byte
}

func newRecorder() *recorder {
	return &recorder{
		msgs:        make(chan raft.Message, 1024),
		snaps:       make(chan snapshot, 16),
		unreachable: make(chan raft.NodeID, 1024),
	}
}

func (r *recorder) Step(ctx context.Context, m raft.Message) error {
	select {
	case r.msgs <- m:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *recorder) StepSnapshot(ctx context.Context, m raft.Message, data io.Reader) error {
	b, err := io.ReadAll(data)
	if err != nil {
		return err
	}
	select {
	case r.snaps <- snapshot{m, b}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *recorder) ReportUnreachable(id raft.NodeID) {
	select {
	case r.unreachable <- id:
	default:
	}
}

// recv waits for the next value on c.
func recv[T any](t testing.TB, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(testTimeout):
		t.Fatalf("nothing received within %v", testTimeout)
		panic("unreachable")
	}
}

// register registers a recorder for group g on tr.
func register(t testing.TB, tr *grpcnet.Transport, g grpcnet.GroupID) (*grpcnet.Group, *recorder) {
	t.Helper()
	r := newRecorder()
	grp, err := tr.Register(g, r)
	if err != nil {
		t.Fatal(err)
	}
	return grp, r
}
