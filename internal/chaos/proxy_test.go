package chaos

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// quiet is how long a test watches for bytes that must not arrive: a
// blackholed link must show nothing for this long.
const quiet = 300 * time.Millisecond

// ptTarget is a proxy's target in the tests: it hands over the server
// side of every connection it accepts.
type ptTarget struct {
	ln       net.Listener
	accepted chan net.Conn
	done     chan struct{}
}

func newPTTarget(t *testing.T) *ptTarget {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tg := &ptTarget{ln: ln, accepted: make(chan net.Conn, 16), done: make(chan struct{})}
	go func() {
		defer close(tg.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tg.accepted <- c
		}
	}()
	t.Cleanup(tg.close)
	return tg
}

func (tg *ptTarget) addr() string { return tg.ln.Addr().String() }

// next returns the next connection the target accepted.
func (tg *ptTarget) next(t *testing.T) net.Conn {
	t.Helper()
	select {
	case c := <-tg.accepted:
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("the target accepted no connection")
		return nil
	}
}

// none checks that the target accepts no connection for a while.
func (tg *ptTarget) none(t *testing.T) {
	t.Helper()
	select {
	case c := <-tg.accepted:
		c.Close()
		t.Fatal("the target accepted a connection through a blackholed link")
	case <-time.After(quiet):
	}
}

func (tg *ptTarget) close() {
	tg.ln.Close()
	<-tg.done
	for {
		select {
		case c := <-tg.accepted:
			c.Close()
		default:
			return
		}
	}
}

func newTestProxy(t *testing.T, target string) *proxy {
	t.Helper()
	p, err := newProxy("test", target, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

func dialProxy(t *testing.T, p *proxy) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readFull reads len(want) bytes from c within 5s and compares them.
func readFull(t *testing.T, c net.Conn, want []byte) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes that differ from those written", len(got))
	}
}

// nothing checks that c receives nothing for a while.
func nothing(t *testing.T, c net.Conn) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(quiet)); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	n, err := c.Read(b[:])
	if n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read through a blackholed link: %d bytes, %v; want a timeout", n, err)
	}
}

// resetSoon checks that c is reset (or closed) within 5s, with nothing
// to read.
func resetSoon(t *testing.T, c net.Conn) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	n, err := c.Read(b[:])
	if n > 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read: %d bytes, %v; want the connection reset", n, err)
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Logf("connection ended with %v (not a reset)", err)
	}
}

// dialReset checks that a new connection through p is reset at once: at
// the dial already (the reset can beat the end of the connect), or at the
// first read.
func dialReset(t *testing.T, p *proxy) {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second)
	if err != nil {
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("dial: %v; want a reset", err)
		}
		return
	}
	defer c.Close()
	resetSoon(t, c)
}

func write(t *testing.T, c net.Conn, b []byte) {
	t.Helper()
	if _, err := c.Write(b); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{1})
	_, _ = r.Read(b)
	return b
}

func TestProxyForwards(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // registered first: runs after the other cleanups
	tg := newPTTarget(t)
	p := newTestProxy(t, tg.addr())

	for range 2 {
		c := dialProxy(t, p)
		s := tg.next(t)
		write(t, c, []byte("ping"))
		readFull(t, s, []byte("ping"))
		write(t, s, []byte("pong"))
		readFull(t, c, []byte("pong"))

		// A few MB both ways at once, delivered whole and in order.
		up, down := randomBytes(3<<20), randomBytes(2<<20)
		var wg sync.WaitGroup
		wg.Go(func() { _, _ = c.Write(up) })
		wg.Go(func() { _, _ = s.Write(down) })
		readFull(t, s, up)
		readFull(t, c, down)
		wg.Wait()

		// A close reaches the other side.
		c.Close()
		if err := s.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if n, err := s.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("after the dialer closed: read %d, %v", n, err)
		}
	}
	if got := p.Mode(); got != LinkUp {
		t.Fatalf("mode %v", got)
	}
}

func TestProxyDropped(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // registered first: runs after the other cleanups
	tg := newPTTarget(t)
	p := newTestProxy(t, tg.addr())

	c := dialProxy(t, p)
	s := tg.next(t)
	write(t, c, []byte("hello"))
	readFull(t, s, []byte("hello"))

	p.SetMode(LinkDropped)
	if got := p.Mode(); got != LinkDropped {
		t.Fatalf("mode %v", got)
	}
	resetSoon(t, c) // the live connection, both sides
	resetSoon(t, s)
	dialReset(t, p) // a new one: accepted by the kernel, reset at once

	p.SetMode(LinkUp)
	c3 := dialProxy(t, p)
	s3 := tg.next(t)
	write(t, c3, []byte("again"))
	readFull(t, s3, []byte("again"))

	// Blackholed, then dropped: the held connections are reset too.
	p.SetMode(LinkBlackholed)
	c4 := dialProxy(t, p)
	p.SetMode(LinkDropped)
	resetSoon(t, c3)
	resetSoon(t, c4)
}

func TestProxyTargetDown(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // registered first: runs after the other cleanups
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	p := newTestProxy(t, addr)
	dialReset(t, p)
}

func TestProxyBlackhole(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // registered first: runs after the other cleanups
	tg := newPTTarget(t)
	p := newTestProxy(t, tg.addr())

	c := dialProxy(t, p)
	s := tg.next(t)
	write(t, c, []byte("before"))
	readFull(t, s, []byte("before"))

	p.SetMode(LinkBlackholed)
	if got := p.Mode(); got != LinkBlackholed {
		t.Fatalf("mode %v", got)
	}
	// Both directions of the live connection hold their bytes: more than
	// the proxy's and the kernel's buffers, so the writer blocks.
	up := randomBytes(4 << 20)
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = c.Write(up) })
	write(t, s, []byte("reply"))
	nothing(t, s)
	nothing(t, c)
	// A new connection is accepted but not forwarded.
	c2 := dialProxy(t, p)
	write(t, c2, []byte("late"))
	tg.none(t)

	// Up: everything arrives, late, whole and in order.
	p.SetMode(LinkUp)
	readFull(t, s, up)
	readFull(t, c, []byte("reply"))
	wg.Wait()
	s2 := tg.next(t)
	readFull(t, s2, []byte("late"))
	write(t, s2, []byte("ack"))
	readFull(t, c2, []byte("ack"))
}

func TestProxyBlackholeBroken(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // registered first: runs after the other cleanups
	tg := newPTTarget(t)
	p := newTestProxy(t, tg.addr())

	c := dialProxy(t, p)
	s := tg.next(t)
	write(t, c, []byte("x"))
	readFull(t, s, []byte("x"))

	p.SetMode(LinkBlackholed)
	write(t, s, []byte("last words"))
	s.Close() // the target's end breaks while the link is silent
	nothing(t, c)

	p.SetMode(LinkUp)
	// What was sent before the close arrives, then the close.
	readFull(t, c, []byte("last words"))
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("after the target closed: read %d, %v; want the connection closed", n, err)
	}
}

func TestProxyClose(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // registered first: runs after the other cleanups
	tg := newPTTarget(t)
	p, err := newProxy("test", tg.addr(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	live := dialProxy(t, p)
	s := tg.next(t)
	write(t, live, []byte("x"))
	readFull(t, s, []byte("x"))
	p.SetMode(LinkBlackholed)
	held := dialProxy(t, p) // waiting at the gate, never dialed
	write(t, live, []byte("stuck"))

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil { // again: nothing
		t.Fatal(err)
	}
	for _, c := range []net.Conn{live, held} {
		if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("after Close: read %d, %v; want the connection closed", n, err)
		}
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		t.Fatal("the proxy still accepts connections after Close")
	}
	p.SetMode(LinkUp) // after Close: nothing, no panic
}
