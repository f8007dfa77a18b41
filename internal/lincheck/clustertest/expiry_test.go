package clustertest

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnkv/cairn/client"
	"github.com/cairnkv/cairn/internal/testcluster"
	"github.com/cairnkv/cairn/kv"
	"github.com/cairnkv/cairn/server"
)

// TestExactlyOnceSessionExpiry: sessions live 300ms of log time and the
// clients do not keep them alive, while workers now and then pause up to
// 800ms, replies are lost and stale copies replayed late. Writes meet
// expired sessions all the time: one whose earlier attempts surely did not
// execute is run again on a new session; one that may have executed ends
// with an unknown outcome. Either way nothing may apply twice (appends
// exactly once, in order) and the history must be linearizable.
func TestExactlyOnceSessionExpiry(t *testing.T) {
	limits := kv.DefaultLimits
	limits.SessionTTL = 300 * time.Millisecond
	h := newHarness(t, testcluster.Options{Configure: func(cfg *server.Config) {
		cfg.InitialLimits = &limits
	}})
	cf := newClientFaults(t, h.seed, clientRules{
		LoseReply:   0.1,
		Replay:      0.2,
		ReplayDelay: time.Second,
	})
	h.clientFlt = append(h.clientFlt, cf)
	var sessions sessionEvents
	wl := defaultWorkload()
	wl.MaxPause = 800 * time.Millisecond
	wl.Clients, wl.Workers = 9, 1 // a paused worker leaves its session idle
	wl.Configure = func(cfg *client.Config) {
		cfg.DialOptions = append(cfg.DialOptions, cf.DialOption())
		cfg.KeepAliveInterval = 10 * time.Second // never, in this run
		cfg.Logger = slog.New(&sessions)
	}
	run := h.start(wl)
	h.sleep(runDuration(5 * time.Second))
	run.end()
	t.Logf("client faults: %v; sessions opened %d, found expired %d", cf, sessions.opened.Load(), sessions.expired.Load())
	if sessions.expired.Load() == 0 {
		t.Errorf("no session expired: the run tested nothing")
	}
	h.finish(wl)
}

// sessionEvents is a slog.Handler counting the client's session events.
type sessionEvents struct{ opened, expired atomic.Int64 }

func (*sessionEvents) Enabled(context.Context, slog.Level) bool { return true }
func (s *sessionEvents) Handle(_ context.Context, r slog.Record) error {
	switch r.Message {
	case "session opened":
		s.opened.Add(1)
	case "session expired":
		s.expired.Add(1)
	}
	return nil
}
func (s *sessionEvents) WithAttrs([]slog.Attr) slog.Handler { return s }
func (s *sessionEvents) WithGroup(string) slog.Handler      { return s }
