package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// LinkMode is what the network does to one direction of the traffic
// between two nodes (the connections node A opens to node B carry exactly
// the A→B direction of Raft traffic; see transport/grpcnet, "Wire").
type LinkMode int

const (
	// LinkUp forwards bytes as they come.
	LinkUp LinkMode = iota
	// LinkDropped closes the link's connections and resets every new one
	// at once: the dialer sees a reset connection, as if the peer's host
	// refused it.
	LinkDropped
	// LinkBlackholed is a silent network: the link's connections stop
	// moving bytes in both directions, and new connections are accepted
	// but not forwarded. The sender sees nothing; its writes pile up until
	// TCP or a keepalive gives up. On LinkUp the held connections resume
	// (their bytes arrive late, in order) or, if either end broke
	// meanwhile, close.
	LinkBlackholed
)

func (m LinkMode) String() string {
	switch m {
	case LinkUp:
		return "up"
	case LinkDropped:
		return "dropped"
	case LinkBlackholed:
		return "blackholed"
	}
	return fmt.Sprintf("LinkMode(%d)", int(m))
}

// proxyBufSize is the buffer of one direction of one connection.
const proxyBufSize = 32 << 10

// proxyDialTimeout bounds the proxy's dial of its target (on 127.0.0.1 a
// dial is answered at once, unless the target's backlog is full).
const proxyDialTimeout = 5 * time.Second

// proxy is a fault-injecting TCP proxy: it accepts connections on its own
// listener (on 127.0.0.1) and forwards each to target, subject to its
// LinkMode. Each accepted connection is a pair (the dialer's connection
// and the proxy's own to the target) served by two goroutines, one per
// direction; each reads into its buffer and, before writing it on, waits
// while the link is blackholed. So a stream is either delivered whole and
// in order, or its connections are closed: never cut in the middle of a
// write, never reordered.
type proxy struct {
	name   string // for log lines, e.g. "n1->n2"
	target string
	ln     net.Listener
	log    *slog.Logger

	// ctx ends the proxy's dials at close.
	ctx    context.Context
	cancel context.CancelFunc
	// wg counts the accept loop and each pair's goroutines.
	wg sync.WaitGroup

	mu sync.Mutex
	// cond is broadcast when mode changes, or a pair or the proxy closes:
	// the blackhole gates wait on it.
	cond   *sync.Cond
	mode   LinkMode
	closed bool
	pairs  map[*proxyPair]struct{}
}

// proxyPair is one connection through the proxy.
type proxyPair struct {
	down   net.Conn           // accepted from the dialer
	cancel context.CancelFunc // ends the dial of up

	// Guarded by proxy.mu.
	up     net.Conn // to the target; nil until dialed
	closed bool
}

// newProxy listens on 127.0.0.1 on a port of the system's choice and
// forwards what it accepts to target.
func newProxy(name, target string, log *slog.Logger) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("chaos: proxy %s: %w", name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &proxy{
		name:   name,
		target: target,
		ln:     ln,
		log:    log,
		ctx:    ctx,
		cancel: cancel,
		pairs:  map[*proxyPair]struct{}{},
	}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr is the address the proxy listens on.
func (p *proxy) Addr() string { return p.ln.Addr().String() }

// Mode returns the link's mode.
func (p *proxy) Mode() LinkMode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// SetMode changes the link's mode; live connections obey it at once.
func (p *proxy) SetMode(m LinkMode) {
	p.mu.Lock()
	if p.closed || p.mode == m {
		p.mu.Unlock()
		return
	}
	p.mode = m
	var drop []*proxyPair
	if m == LinkDropped {
		for pr := range p.pairs {
			drop = append(drop, pr)
		}
	}
	p.cond.Broadcast()
	p.mu.Unlock()
	// No pair is admitted after the unlock while the mode is LinkDropped,
	// so these are all of them.
	for _, pr := range drop {
		p.closePair(pr, true)
	}
}

// Close stops accepting, closes every connection and waits for every
// goroutine of the proxy to end.
func (p *proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.wg.Wait()
		return nil
	}
	p.closed = true
	all := make([]*proxyPair, 0, len(p.pairs))
	for pr := range p.pairs {
		all = append(all, pr)
	}
	p.cond.Broadcast()
	p.mu.Unlock()

	err := p.ln.Close()
	p.cancel()
	for _, pr := range all {
		p.closePair(pr, false)
	}
	p.wg.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("chaos: proxy %s: %w", p.name, err)
	}
	return nil
}

func (p *proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors or the like: back off a little.
			p.log.Warn("proxy accept failed", "link", p.name, "err", err)
			t := time.NewTimer(10 * time.Millisecond)
			select {
			case <-p.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		p.admit(c)
	}
}

// admit starts serving an accepted connection, or resets it at once if
// the link is dropped.
func (p *proxy) admit(c net.Conn) {
	p.mu.Lock()
	if p.closed || p.mode == LinkDropped {
		p.mu.Unlock()
		closeConn(c, true)
		return
	}
	ctx, cancel := context.WithCancel(p.ctx)
	pr := &proxyPair{down: c, cancel: cancel}
	p.pairs[pr] = struct{}{}
	p.wg.Add(1) // the accept loop's own count is held: no race with Wait
	p.mu.Unlock()
	go p.serve(ctx, pr)
}

// serve dials the target once the link lets bytes through, then forwards
// both ways: down→up on this goroutine, up→down on a second one.
func (p *proxy) serve(ctx context.Context, pr *proxyPair) {
	defer p.wg.Done()
	defer pr.cancel()
	if !p.gate(pr) {
		return
	}
	d := net.Dialer{Timeout: proxyDialTimeout}
	up, err := d.DialContext(ctx, "tcp", p.target)
	if err != nil {
		// The target is down: the dialer sees its connection reset, as it
		// would see a refused one without the proxy.
		p.log.Debug("proxy dial failed", "link", p.name, "target", p.target, "err", err)
		p.closePair(pr, true)
		return
	}
	p.mu.Lock()
	if pr.closed {
		p.mu.Unlock()
		closeConn(up, true)
		return
	}
	pr.up = up
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		p.pipe(pr, up, pr.down)
	}()
	p.pipe(pr, pr.down, up)
}

// pipe copies src to dst until either fails or the pair closes. Between
// reading and acting on what it read (bytes to write on, or the end of
// src), it waits at the gate, so a blackholed link moves nothing (not
// even a close) and the bytes held keep their order.
func (p *proxy) pipe(pr *proxyPair, src, dst net.Conn) {
	buf := make([]byte, proxyBufSize)
	for {
		n, err := src.Read(buf)
		if !p.gate(pr) {
			return
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				p.closePair(pr, true)
				return
			}
		}
		if err != nil {
			// A clean end closes the other side cleanly (what was written
			// is delivered, then EOF); anything else resets it.
			p.closePair(pr, !errors.Is(err, io.EOF))
			return
		}
	}
}

// gate waits while the link is blackholed; it reports whether the pair
// may go on (false: it was closed).
func (p *proxy) gate(pr *proxyPair) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.mode == LinkBlackholed && !pr.closed {
		p.cond.Wait()
	}
	return !pr.closed
}

// closePair closes both connections of a pair (reset: with an RST, the
// buffered bytes discarded) and wakes its goroutines. Only the first call
// does anything.
func (p *proxy) closePair(pr *proxyPair, reset bool) {
	p.mu.Lock()
	if pr.closed {
		p.mu.Unlock()
		return
	}
	pr.closed = true
	delete(p.pairs, pr)
	up := pr.up
	p.cond.Broadcast()
	p.mu.Unlock()
	pr.cancel()
	closeConn(pr.down, reset)
	if up != nil {
		closeConn(up, reset)
	}
}

// closeConn closes c; reset makes it send an RST instead of a FIN.
func closeConn(c net.Conn, reset bool) {
	if tc, ok := c.(*net.TCPConn); ok && reset {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
