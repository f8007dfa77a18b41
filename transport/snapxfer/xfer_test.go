package snapxfer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cairnkv/cairn/raft"
	"github.com/cairnkv/cairn/transport/snapxfer"
)

func TestTransferSizes(t *testing.T) {
	for _, size := range []int{0, 1, testChunk - 1, testChunk, testChunk + 1, 3*testChunk + 5, 40 * testChunk} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n, a, b, rec := pair(t)
				m, data := snapMsg(1, 2, 10), payload(size, uint64(size))
				if err := <-send(a, m, data); err != nil {
					t.Fatal(err)
				}
				checkReceived(t, rec, m, data)
				// The sender never ran more than a window ahead of the
				// receiver's acknowledgements: its memory is bounded.
				if n.maxAhead > testWin*testChunk {
					t.Fatalf("sender ran %d bytes ahead of the acks, window is %d", n.maxAhead, testWin*testChunk)
				}
				sa, sb := a.Stats(), b.Stats()
				chunks := uint64(size/testChunk + 1)
				if sa.ChunksSent != chunks || sa.ChunksResent != 0 || sa.SentOK != 1 || sb.ChunksAccepted != chunks || sb.ReceivedOK != 1 {
					t.Fatalf("stats: sender %+v receiver %+v", sa, sb)
				}
			})
		})
	}
}

// dropOnce drops the first chunk for which pick is true.
func dropOnce(pick func(c *snapxfer.Chunk) bool) func(c *snapxfer.Chunk) (verdict, []*snapxfer.Chunk) {
	dropped := false
	return func(c *snapxfer.Chunk) (verdict, []*snapxfer.Chunk) {
		if !dropped && pick(c) {
			dropped = true
			return drop, nil
		}
		return deliver, nil
	}
}

// A lost chunk in the middle of the window is detected by the receiver
// (the next chunk arrives beyond its offset) and the sender resumes from
// the receiver's acknowledged offset: nothing before it is sent again.
func TestLostChunkResumes(t *testing.T) {
	for _, dupAcks := range []bool{false, true} {
		t.Run(fmt.Sprintf("dupAcks=%t", dupAcks), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n, a, _, rec := pair(t)
				const lost = 5 * testChunk
				n.setChunkFault(dropOnce(func(c *snapxfer.Chunk) bool { return c.Offset == lost }))
				if dupAcks {
					// Every ack twice: a repeated resume request must not
					// make the sender rewind twice.
					n.setAckFault(func(*snapxfer.Ack) int { return 2 })
				}
				m, data := snapMsg(1, 2, 10), payload(20*testChunk+17, 1)
				start := time.Now()
				if err := <-send(a, m, data); err != nil {
					t.Fatal(err)
				}
				checkReceived(t, rec, m, data)
				for off := uint64(0); off < lost; off += testChunk {
					if k := n.sends(off); k != 1 {
						t.Fatalf("chunk at %d sent %d times: the transfer restarted instead of resuming", off, k)
					}
				}
				if k := n.sends(lost); k != 2 {
					t.Fatalf("lost chunk sent %d times, want 2", k)
				}
				// The receiver asked for the resume at once: no
				// retransmission timeout was needed.
				if d := time.Since(start); d >= testRTO {
					t.Fatalf("took %v: waited for a timeout instead of resuming on the receiver's request", d)
				}
				if st := a.Stats(); st.Rewinds != 1 {
					t.Fatalf("rewinds %d, want 1", st.Rewinds)
				}
			})
		})
	}
}

// slowReader makes every read of the stream take d of (fake) time: a
// slow disk on the receiver.
type slowReader struct {
	r io.Reader
	d time.Duration
}

func (s slowReader) Read(p []byte) (int, error) {
	time.Sleep(s.d)
	return s.r.Read(p)
}

type slowHandler struct {
	rec *recorder
	d   time.Duration
}

func (h slowHandler) StepSnapshot(ctx context.Context, m raft.Message, data io.Reader) error {
	return h.rec.StepSnapshot(ctx, m, slowReader{data, h.d})
}

// The stall timeout bounds time without progress, not a transfer's
// length: a slow receiver whose offset keeps moving is never abandoned.
func TestSlowTransferIsNotStalled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNetwork()
		rec := &recorder{}
		a := n.add(t, 1, &recorder{}, testOptions())
		n.add(t, 2, slowHandler{rec, testRTO / 2}, testOptions())
		m, data := snapMsg(1, 2, 10), payload(60*testChunk, 17)
		start := time.Now()
		if err := <-send(a, m, data); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d <= testStall {
			t.Fatalf("took only %v; the scenario needs a transfer longer than the stall timeout", d)
		}
		checkReceived(t, rec, m, data)
	})
}

// The first chunk carries the snapshot's metadata: if it is lost, the
// receiver knows nothing of the transfer, says so, and the sender starts
// over from offset 0, which it still holds.
func TestLostFirstChunkRestarts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n, a, _, rec := pair(t)
		n.setChunkFault(dropOnce(func(c *snapxfer.Chunk) bool { return c.Offset == 0 }))
		m, data := snapMsg(1, 2, 10), payload(10*testChunk, 2)
		if err := <-send(a, m, data); err != nil {
			t.Fatal(err)
		}
		checkReceived(t, rec, m, data)
		if k := n.sends(0); k != 2 {
			t.Fatalf("first chunk sent %d times, want 2", k)
		}
	})
}

// A lost last chunk prompts no gap at the receiver; the sender's
// retransmission timeout resends it.
func TestLostLastChunk(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n, a, _, rec := pair(t)
		n.setChunkFault(dropOnce(func(c *snapxfer.Chunk) bool { return c.Last }))
		m, data := snapMsg(1, 2, 10), payload(6*testChunk+100, 3)
		start := time.Now()
		if err := <-send(a, m, data); err != nil {
			t.Fatal(err)
		}
		checkReceived(t, rec, m, data)
		if d := time.Since(start); d < testRTO || d >= 2*testRTO {
			t.Fatalf("took %v, want one retransmission timeout (%v)", d, testRTO)
		}
	})
}

// Lost acknowledgements, including the final one: the sender resends, the
// receiver answers duplicates from what it accepted (or remembers how the
// transfer ended), and the handler sees the snapshot exactly once.
func TestLostAcks(t *testing.T) {
	for _, tc := range []struct {
		name string
		drop func(a *snapxfer.Ack, k int) bool
	}{
		{"every other progress", func(a *snapxfer.Ack, k int) bool { return a.Kind == snapxfer.AckProgress && k%2 == 0 }},
		{"a run of progress", func(a *snapxfer.Ack, k int) bool { return a.Kind == snapxfer.AckProgress && k >= 3 && k < 12 }},
		{"the done ack", func(a *snapxfer.Ack, k int) bool { return a.Kind == snapxfer.AckDone }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n, a, b, rec := pair(t)
				k, dropped := 0, 0
				n.setAckFault(func(ack *snapxfer.Ack) int {
					k++
					if tc.drop(ack, k) && dropped < 10 {
						dropped++
						return 0
					}
					return 1
				})
				m, data := snapMsg(1, 2, 10), payload(12*testChunk+1, 4)
				if err := <-send(a, m, data); err != nil {
					t.Fatal(err)
				}
				if dropped == 0 {
					t.Fatal("no ack was dropped: the scenario tests nothing")
				}
				checkReceived(t, rec, m, data)
				if st := b.Stats(); st.ReceivedOK != 1 {
					t.Fatalf("receiver stats %+v", st)
				}
			})
		})
	}
}

// Every chunk duplicated and neighbours swapped: the receiver accepts each
// byte once and in order.
func TestDuplicatedAndReorderedChunks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n, a, b, rec := pair(t)
		var held *snapxfer.Chunk
		n.setChunkFault(func(c *snapxfer.Chunk) (verdict, []*snapxfer.Chunk) {
			dup := c.Clone()
			if held == nil && !c.Last && c.Offset != 0 {
				held = dup
				return drop, nil // deliver it after the next one
			}
			extra := []*snapxfer.Chunk{dup}
			if held != nil {
				extra = append(extra, held)
				held = nil
			}
			return deliver, extra
		})
		m, data := snapMsg(1, 2, 10), payload(25*testChunk+3, 5)
		if err := <-send(a, m, data); err != nil {
			t.Fatal(err)
		}
		checkReceived(t, rec, m, data)
		st := b.Stats()
		if st.ChunksDup == 0 || st.ChunksGap == 0 {
			t.Fatalf("the scenario produced no duplicates or gaps: %+v", st)
		}
		if st.ChunksAccepted != 26 {
			t.Fatalf("accepted %d chunks, want each of 26 once", st.ChunksAccepted)
		}
	})
}

// A chunk whose data is damaged on the way fails its CRC: the receiver
// drops it as lost, never hands its bytes on, and the transfer resumes.
func TestCorruptChunkRejected(t *testing.T) {
	for _, field := range []string{"data", "offset", "meta"} {
		t.Run(field, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n, a, b, rec := pair(t)
				flipped := false
				n.setChunkFault(func(c *snapxfer.Chunk) (verdict, []*snapxfer.Chunk) {
					if flipped {
						return deliver, nil
					}
					switch {
					case field == "data" && c.Offset == 3*testChunk:
						c.Data[100] ^= 0x10
					case field == "offset" && c.Offset == 3*testChunk:
						c.Offset += testChunk
					case field == "meta" && c.Msg != nil:
						c.Msg.Snapshot.Index++
					default:
						return deliver, nil
					}
					flipped = true
					return deliver, nil
				})
				m, data := snapMsg(1, 2, 10), payload(8*testChunk, 6)
				if err := <-send(a, m, data); err != nil {
					t.Fatal(err)
				}
				checkReceived(t, rec, m, data)
				if st := b.Stats(); st.ChunksCorrupt != 1 {
					t.Fatalf("corrupt chunks %d, want 1", st.ChunksCorrupt)
				}
			})
		})
	}
}

// A sender whose stream checksum disagrees with its chunks (a bug, or
// memory corruption before the chunk CRC was computed) gets the transfer
// refused, and the receiver's handler discards what it staged.
func TestStreamChecksumMismatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n, a, _, rec := pair(t)
		n.setChunkFault(func(c *snapxfer.Chunk) (verdict, []*snapxfer.Chunk) {
			if c.Last {
				c.StreamCRC++
				c.Seal()
			}
			return deliver, nil
		})
		err := <-send(a, snapMsg(1, 2, 10), payload(5*testChunk, 7))
		var rej *snapxfer.RejectedError
		if !errors.As(err, &rej) || rej.Reason != snapxfer.ReasonChecksum || !errors.Is(err, snapxfer.ErrRejected) {
			t.Fatalf("sender: %v, want rejected for a checksum", err)
		}
		if f := rec.failures(); len(f) != 1 || !errors.Is(f[0], snapxfer.ErrChecksum) || len(rec.snapshots()) != 0 {
			t.Fatalf("handler: failures %v, staged %d", f, len(rec.snapshots()))
		}
	})
}

// A transfer whose peer goes silent is abandoned by both sides after the
// stall timeout: the sender reports ErrStalled (the leader then retries
// later), the receiver's handler discards its staged data, and a later
// transfer over the healed link succeeds.
func TestStalledTransferAbandonedThenRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNetwork()
		rec := &recorder{}
		a := n.add(t, 1, &recorder{}, testOptions())
		// The receiver waits longer than the sender, so the sender is the
		// first to notice (and its abort is lost with the link).
		slow := testOptions()
		slow.StallTimeout = 2 * testStall
		b := n.add(t, 2, rec, slow)
		dead := true
		n.setChunkFault(func(c *snapxfer.Chunk) (verdict, []*snapxfer.Chunk) {
			if dead && c.Offset >= 3*testChunk {
				return drop, nil // the link dies mid-transfer, aborts included
			}
			return deliver, nil
		})
		m, data := snapMsg(1, 2, 10), payload(10*testChunk, 8)
		start := time.Now()
		err := <-send(a, m, data)
		if !errors.Is(err, snapxfer.ErrStalled) {
			t.Fatalf("sender: %v, want ErrStalled", err)
		}
		if d := time.Since(start); d < testStall || d > testStall+testRTO {
			t.Fatalf("sender gave up after %v, want the stall timeout %v", d, testStall)
		}
		// The receiver gives up on its own (the abort was lost too).
		synctest.Wait()
		time.Sleep(slow.StallTimeout) // fake time: the receiver's deadline passes
		synctest.Wait()
		if f := rec.failures(); len(f) != 1 || !errors.Is(f[0], snapxfer.ErrStalled) || len(rec.snapshots()) != 0 {
			t.Fatalf("receiver: failures %v, staged %d", f, len(rec.snapshots()))
		}
		if st := b.Stats(); st.ReceivedFailed != 1 {
			t.Fatalf("receiver stats %+v", st)
		}

		n.mu.Lock()
		dead = false
		n.mu.Unlock()
		m2 := snapMsg(1, 2, 11)
		if err := <-send(a, m2, data); err != nil {
			t.Fatalf("retry: %v", err)
		}
		checkReceived(t, rec, m2, data)
	})
}

// When the sender gives up (here: it cannot read its snapshot), its abort
// frees the receiver at once rather than after the stall timeout.
func TestSenderAbortFreesReceiver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, a, b, rec := pair(t)
		broken := errors.New("disk on fire")
		data := io.MultiReader(bytes.NewReader(payload(2*testChunk+10, 9)), errReader{broken})
		done := make(chan error, 1)
		start := time.Now()
		a.Send(snapMsg(1, 2, 10), io.NopCloser(data), func(err error) { done <- err })
		if err := <-done; !errors.Is(err, broken) {
			t.Fatalf("sender: %v", err)
		}
		synctest.Wait()
		if f := rec.failures(); len(f) != 1 || !errors.Is(f[0], snapxfer.ErrAborted) {
			t.Fatalf("receiver: %v", f)
		}
		if d := time.Since(start); d != 0 {
			t.Fatalf("took %v of fake time; the abort should be immediate", d)
		}
		if st := b.Stats(); st.ReceivedFailed != 1 {
			t.Fatalf("receiver stats %+v", st)
		}
	})
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// A receiver that restarts mid-transfer has forgotten it: the sender,
// which no longer holds the start of the stream, fails the transfer so
// that the leader starts a new one.
func TestReceiverRestartFailsTransfer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n, a, b, rec := pair(t)
		// Cut the link at the eighth chunk, both ways, so that the old
		// receiver's last words are lost as in a crash.
		cut := true
		n.setChunkFault(func(c *snapxfer.Chunk) (verdict, []*snapxfer.Chunk) {
			if cut && c.Offset >= 8*testChunk {
				return drop, nil
			}
			return deliver, nil
		})
		n.setAckFault(func(a *snapxfer.Ack) int {
			if cut && a.Offset >= 8*testChunk || a.Kind == snapxfer.AckFailed {
				return 0
			}
			return 1
		})
		done := send(a, snapMsg(1, 2, 10), payload(12*testChunk, 10))
		synctest.Wait()
		b.Close()
		rec2 := &recorder{}
		n.add(t, 2, rec2, testOptions())
		n.mu.Lock()
		cut = false
		n.mu.Unlock()
		err := <-done
		var rej *snapxfer.RejectedError
		if !errors.As(err, &rej) || rej.Reason != snapxfer.ReasonUnknownTransfer {
			t.Fatalf("sender: %v, want rejected as unknown", err)
		}
		if len(rec.snapshots())+len(rec2.snapshots()) != 0 {
			t.Fatal("a receiver staged a partial snapshot")
		}
	})
}

// A receiver runs at most MaxInbound transfers; the rest are refused as
// busy, so a node's memory stays bounded however many leaders call.
func TestInboundLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNetwork()
		gate := make(chan struct{})
		rec := &recorder{gate: gate}
		opts := testOptions()
		opts.MaxInbound = 1
		n.add(t, 2, rec, opts)
		a := n.add(t, 1, &recorder{}, testOptions())
		c := n.add(t, 3, &recorder{}, testOptions())
		m1, d1 := snapMsg(1, 2, 10), payload(3*testChunk, 11)
		first := send(a, m1, d1)
		synctest.Wait() // the first transfer holds the only slot
		err := <-send(c, snapMsg(3, 2, 10), payload(3*testChunk, 12))
		var rej *snapxfer.RejectedError
		if !errors.As(err, &rej) || rej.Reason != snapxfer.ReasonBusy {
			t.Fatalf("second transfer: %v, want busy", err)
		}
		close(gate)
		if err := <-first; err != nil {
			t.Fatal(err)
		}
		checkReceived(t, rec, m1, d1)
	})
}

// A new transfer from the same sender replaces its old one (whose sender
// has given up on it, or will be told).
func TestNewTransferSupersedesOld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n, a, _, rec := pair(t)
		var firstID snapxfer.TransferID
		n.setChunkFault(func(c *snapxfer.Chunk) (verdict, []*snapxfer.Chunk) {
			if firstID == 0 {
				firstID = c.ID
			}
			if c.ID == firstID && c.Offset > 0 {
				return drop, nil // the first transfer hangs after its first chunk
			}
			return deliver, nil
		})
		old := send(a, snapMsg(1, 2, 10), payload(5*testChunk, 13))
		synctest.Wait()
		m2, d2 := snapMsg(1, 2, 20), payload(5*testChunk, 14)
		if err := <-send(a, m2, d2); err != nil {
			t.Fatal(err)
		}
		var rej *snapxfer.RejectedError
		if err := <-old; !errors.As(err, &rej) || rej.Reason != snapxfer.ReasonSuperseded {
			t.Fatalf("old transfer: %v, want superseded", err)
		}
		if f := rec.failures(); len(f) != 1 || !errors.Is(f[0], snapxfer.ErrSuperseded) {
			t.Fatalf("handler failures: %v", f)
		}
		checkReceived(t, rec, m2, d2)
	})
}

// A handler that refuses the snapshot (a full disk, a stopped replica)
// fails the transfer with the receiver's reason.
func TestHandlerRefuses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNetwork()
		a := n.add(t, 1, &recorder{}, testOptions())
		n.add(t, 2, &recorder{refuse: errors.New("no space")}, testOptions())
		err := <-send(a, snapMsg(1, 2, 10), payload(9*testChunk, 15))
		var rej *snapxfer.RejectedError
		if !errors.As(err, &rej) || rej.Reason != snapxfer.ReasonRefused {
			t.Fatalf("sender: %v, want refused", err)
		}
	})
}

// Closing an endpoint fails its transfers in both directions and waits for
// their goroutines.
func TestCloseFailsTransfers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n, a, _, rec := pair(t)
		n.setChunkFault(func(c *snapxfer.Chunk) (verdict, []*snapxfer.Chunk) {
			if c.Offset >= 2*testChunk {
				return drop, nil
			}
			return deliver, nil
		})
		done := send(a, snapMsg(1, 2, 10), payload(9*testChunk, 16))
		synctest.Wait()
		a.Close()
		if err := <-done; !errors.Is(err, snapxfer.ErrClosed) {
			t.Fatalf("sender: %v", err)
		}
		if err := <-send(a, snapMsg(1, 2, 11), nil); !errors.Is(err, snapxfer.ErrClosed) {
			t.Fatalf("send after close: %v", err)
		}
		n.endpoint(2).Close()
		if f := rec.failures(); len(f) != 1 {
			t.Fatalf("receiver failures %v", f)
		}
	})
}

func TestSendRejectsNonSnapshot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, a, _, _ := pair(t)
		err := <-send(a, raft.Message{Type: raft.MsgApp, From: 1, To: 2}, nil)
		if !errors.Is(err, snapxfer.ErrInvalidMessage) {
			t.Fatalf("got %v", err)
		}
	})
}

// Random loss, duplication, reordering and corruption of chunks and acks,
// under many seeds: every transfer completes with exactly the data sent,
// staged once, and the sender never runs more than a window ahead.
func TestRandomFaults(t *testing.T) {
	seeds := 40
	if testing.Short() {
		seeds = 8
	}
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n, a, _, rec := pair(t)
				rng := rand.New(rand.NewPCG(seed, 99))
				var mu sync.Mutex // the fault functions run on several goroutines
				var held []*snapxfer.Chunk
				n.setChunkFault(func(c *snapxfer.Chunk) (verdict, []*snapxfer.Chunk) {
					mu.Lock()
					defer mu.Unlock()
					p := rng.Float64()
					switch {
					case p < 0.15:
						return drop, nil
					case p < 0.25:
						return deliver, []*snapxfer.Chunk{c.Clone()}
					case p < 0.35:
						held = append(held, c)
						return drop, nil
					case p < 0.40 && len(c.Data) > 0:
						c.Data[rng.IntN(len(c.Data))] ^= 1
					}
					extra := held
					held = nil
					return deliver, extra
				})
				n.setAckFault(func(*snapxfer.Ack) int {
					mu.Lock()
					defer mu.Unlock()
					switch p := rng.Float64(); {
					case p < 0.15:
						return 0
					case p < 0.25:
						return 2
					}
					return 1
				})
				m, data := snapMsg(1, 2, 10), payload(rng.IntN(30*testChunk), seed)
				if err := <-send(a, m, data); err != nil {
					t.Fatal(err)
				}
				checkReceived(t, rec, m, data)
				if n.maxAhead > testWin*testChunk {
					t.Fatalf("sender ran %d bytes ahead of the acks", n.maxAhead)
				}
			})
		})
	}
}
