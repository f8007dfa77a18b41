package client

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairnkv/cairn/api/kvpb"
)

// session is one server session: its id, its seq window, and its TTL.
// A session ends when the server says it expired, or when the client
// closes; writes already holding one of its seqs finish on it, and new
// writes go to the next session.
type session struct {
	id  SessionID
	win *window
	ttl atomic.Int64 // nanoseconds; from the server's answers

	endOnce sync.Once
	// done is closed when the session ends; it stops its keep-alive loop.
	done chan struct{}
}

func newSession(id SessionID, ttl time.Duration, maxInflight int) *session {
	s := &session{id: id, win: newWindow(maxInflight), done: make(chan struct{})}
	s.ttl.Store(int64(ttl))
	return s
}

func (s *session) end() {
	s.endOnce.Do(func() {
		close(s.done)
		s.win.close()
	})
}

func (s *session) ended() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// opening is one OpenSession in progress, which callers needing a session
// wait for.
type opening struct {
	done chan struct{}
	// Set before done is closed: the session, or why there is none.
	sess *session
	err  error
}

// sessionManager owns the client's current session: it opens one when a
// write first needs it (one opener at a time, however many writes wait),
// keeps it alive, and forgets it when it expires, so that the next write
// opens another.
type sessionManager struct {
	c *Client

	// Invariant: cur and open are never both set: an open starts only
	// when there is no live session, and installs its session as it ends.
	mu struct {
		sync.Mutex
		// cur is the live session, nil if none.
		cur *session
		// open is the OpenSession in progress, nil if none.
		open *opening
		// lastErr is the last failed OpenSession attempt's error, for
		// callers that give up waiting.
		lastErr error
		closed  bool
	}
}

func newSessionManager(c *Client) *sessionManager {
	return &sessionManager{c: c}
}

// get returns the live session, opening one if need be. It fails when
// ctx ends first, when opening failed for good (attempts ran out, or a
// definitive refusal), or after close.
func (m *sessionManager) get(ctx context.Context) (*session, error) {
	m.mu.Lock()
	if m.mu.closed {
		m.mu.Unlock()
		return nil, openSessionError(unavailable(ErrClosed, nil))
	}
	if s := m.mu.cur; s != nil {
		m.mu.Unlock()
		return s, nil
	}
	op := m.mu.open
	if op == nil {
		op = &opening{done: make(chan struct{})}
		m.mu.open = op
		m.c.wg.Add(1)
		go m.runOpen(op)
	}
	m.mu.Unlock()

	select {
	case <-op.done:
		if op.sess != nil {
			return op.sess, nil
		}
		return nil, op.err
	case <-ctx.Done():
		m.mu.Lock()
		last := m.mu.lastErr
		m.mu.Unlock()
		return nil, openSessionError(unavailable(context.Cause(ctx), last))
	}
}

// runOpen opens a session, retrying (RetryPolicy) until a leader answers,
// the attempts run out or the client closes; installs it and starts its
// keep-alive loop. It runs on its own goroutine, under the client's
// lifetime rather than any caller's context, so that one caller giving up
// does not fail the others waiting.
//
// OpenSession is not exactly-once: a retried open may leave a session the
// client never learns of, which the server expires after its TTL.
func (m *sessionManager) runOpen(op *opening) {
	defer m.c.wg.Done()
	c := m.c
	var resp *kvpb.OpenSessionResponse
	out := c.do(c.lifetime, call{
		op:    "open session",
		route: toLeader,
		onAttemptErr: func(err error) {
			m.mu.Lock()
			m.mu.lastErr = err
			m.mu.Unlock()
		},
	}, func(ctx context.Context, kv kvpb.KVClient) (*kvpb.ResponseHeader, error) {
		r, err := kv.OpenSession(ctx, &kvpb.OpenSessionRequest{GroupId: uint64(c.cfg.Group)})
		if err != nil {
			return nil, err
		}
		resp = r
		return r.GetHeader(), nil
	})

	var s *session
	if out.err == nil {
		ttl := c.cfg.SessionTTL
		if ms := resp.GetTtlMs(); ms > 0 {
			ttl = time.Duration(ms) * time.Millisecond
		}
		s = newSession(SessionID(resp.GetSessionId()), ttl, c.cfg.MaxInflight)
	}

	m.mu.Lock()
	m.mu.open = nil
	switch {
	case out.err != nil:
		op.err = openSessionError(answerError(out.err))
	case m.mu.closed:
		// Close came first; the server expires the session.
		s.end()
		op.err = openSessionError(unavailable(ErrClosed, nil))
	default:
		m.mu.cur = s
		op.sess = s
		m.c.wg.Add(1)
		go m.keepAlive(s)
	}
	m.mu.Unlock()
	close(op.done)

	if s != nil && op.sess == s {
		c.log.Info("session opened", "session", s.id, "ttl", time.Duration(s.ttl.Load()))
	} else {
		c.log.Warn("session open failed", "err", op.err)
	}
}

// expire ends s, which the server says has expired: the next write opens
// a new session.
func (m *sessionManager) expire(s *session, why string) {
	m.mu.Lock()
	if m.mu.cur == s {
		m.mu.cur = nil
	}
	m.mu.Unlock()
	if !s.ended() {
		m.c.log.Warn("session expired", "session", s.id, "noticed_by", why)
	}
	s.end()
}

// close ends the current session and refuses new ones; it returns the
// session it ended, if any, for the client to close on the server.
func (m *sessionManager) close() *session {
	m.mu.Lock()
	s := m.mu.cur
	m.mu.cur = nil
	m.mu.closed = true
	m.mu.Unlock()
	if s != nil {
		s.end()
	}
	return s
}

// keepAlive renews s every KeepAliveInterval (default a third of its
// TTL) until it ends, sending the lowest unacknowledged seq so that the
// server can forget results even while the client writes nothing. Each
// renewal is retried (to the leader) for up to one interval; a failed
// renewal is logged and the next one tried on schedule, so two may fail
// in a row before the TTL is at risk.
func (m *sessionManager) keepAlive(s *session) {
	defer m.c.wg.Done()
	c := m.c
	interval := func() time.Duration {
		if c.cfg.KeepAliveInterval > 0 {
			return c.cfg.KeepAliveInterval
		}
		return max(time.Duration(s.ttl.Load())/3, time.Millisecond)
	}
	t := time.NewTimer(interval())
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(c.lifetime, interval())
		var ttlMs int64
		out := c.do(ctx, call{op: "keep-alive", route: toLeader}, func(ctx context.Context, kv kvpb.KVClient) (*kvpb.ResponseHeader, error) {
			r, err := kv.KeepAlive(ctx, &kvpb.KeepAliveRequest{
				GroupId:          uint64(c.cfg.Group),
				SessionId:        uint64(s.id),
				LowestUnackedSeq: uint64(s.win.lowestUnacked()),
			})
			if err != nil {
				return nil, err
			}
			ttlMs = r.GetTtlMs()
			return r.GetHeader(), nil
		})
		cancel()
		switch {
		case out.err == nil:
			if ttlMs > 0 {
				s.ttl.Store(int64(time.Duration(ttlMs) * time.Millisecond))
			}
		case isSessionExpired(out.err):
			m.expire(s, "keep-alive")
			return
		case c.lifetime.Err() != nil:
			return
		default:
			c.log.Warn("session keep-alive failed", "session", s.id, "err", out.err)
		}
		t.Reset(interval())
	}
}

// closeSession tells the server that s is done, so that it forgets s's
// results now rather than at expiry. One short try: this is an
// optimization, and Close should not hang on a dead cluster.
func (c *Client) closeSession(s *session) {
	ctx, cancel := context.WithTimeout(context.Background(), min(c.cfg.AttemptTimeout, time.Second))
	defer cancel()
	out := c.do(ctx, call{op: "close session", route: toLeader, maxAttempts: 2}, func(ctx context.Context, kv kvpb.KVClient) (*kvpb.ResponseHeader, error) {
		r, err := kv.CloseSession(ctx, &kvpb.CloseSessionRequest{GroupId: uint64(c.cfg.Group), SessionId: uint64(s.id)})
		return r.GetHeader(), err
	})
	if out.err != nil {
		c.log.Debug("close session failed; it will expire", "session", s.id, "err", out.err)
	}
}

// openSessionError is why a session could not be opened, for a write to
// wrap with its name.
func openSessionError(err error) error {
	return fmt.Errorf("open session: %w", err)
}

// isSessionExpired says whether err is the server's SESSION_EXPIRED.
func isSessionExpired(err error) bool {
	return kvpb.DetailOf(err).GetCode() == kvpb.ErrorCode_SESSION_EXPIRED
}
