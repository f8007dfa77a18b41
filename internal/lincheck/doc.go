// Package lincheck records what concurrent clients did to a cairn cluster
// and checks it for linearizability with porcupine
// (github.com/anishathalye/porcupine). The in-process cluster tests
// (lincheck/clustertest) and the chaos runner use it alike.
//
// # Usage
//
//	rec := lincheck.NewRecorder()
//	kv := lincheck.NewKV(rec, cl, worker)        // one per worker goroutine
//	kv.Put(ctx, "k1", "w3-17")                   // recorded, whatever happens
//	kv.CompareAndSwap(ctx, "k1", "w3-17", "w3-18")
//	kv.Append(ctx, "log", "w3-19;")
//	...
//	hist := rec.History()                        // in-flight ops are open-ended
//	res := lincheck.Check(hist, lincheck.Options{Timeout: time.Minute})
//	if err := res.Err(); err != nil {            // Illegal and Unknown both fail
//		t.Fatal(err)                             // names the visualization file
//	}
//	err = lincheck.CheckAppends(hist, finalValues)
//
// Workload drives the standard mix for one worker: gets (a share at lease
// consistency), puts, compare-and-swaps and deletes on register keys, and
// appends of unique tokens (and reads) on append keys, until stopped. The
// caller decides how many clients and workers run, gives each worker its
// own KV and random source, and reads the append keys at the end (with a
// KV, so that the reads are recorded) for CheckAppends:
//
//	wl := lincheck.DefaultWorkload()
//	for w := range workers {
//		kv := lincheck.NewKV(rec, clients[w%len(clients)], w)
//		rng := rand.New(rand.NewPCG(seed, uint64(w)+1))
//		wg.Go(func() { wl.Run(stop, kv, rng) })
//	}
//	...                                          // inject faults
//	close(stop)                                  // in-flight ops finish
//	wg.Wait()
//	log.Print(lincheck.Summary(rec.History()))   // ops by kind and outcome
//
// # The model
//
// One sequential specification covers every key: a key is absent or holds
// a byte string. Get reads it; Put sets it; Delete removes it (and says
// whether it was there); CompareAndSwap by value (or on absence) sets it
// if the condition holds and otherwise reports the current state; Append
// concatenates and reports the new length. Keys are independent, so a
// history is linearizable if and only if each key's sub-history is: Check
// partitions by key (porcupine's Partition), which keeps each search
// small. Register workloads (get, put, compare-and-swap, delete on a few
// keys) and append workloads (each append's value a unique token, so a
// read shows every append exactly once and in order) are both histories
// of this one model; CheckAppends adds direct, readable checks for the
// latter.
//
// # Outcomes
//
// Every call is recorded, with its call and return times on one monotonic
// clock, and never dropped. What it returned decides how the checker sees
// it (Classify maps the client's typed errors):
//
//	OK          the call's result, checked against the model
//	CASFailed   a compare-and-swap whose condition did not hold, with the
//	            current state the server reported: checked, no effect
//	NotApplied  a definitive "nothing was applied" (INVALID_ARGUMENT, a
//	            write that gave up before any attempt could execute): no
//	            effect, anywhere within its interval
//	Unknown     a write whose outcome is unknown (ErrOutcomeUnknown, a
//	            timeout), a read that failed, or a call still in flight
//	            when the history was taken: open-ended. Its return time is
//	            Open (after everything), so it may take effect at any point
//	            after its call, or never; any output is accepted.
//
// # Keeping the search small
//
// Open-ended operations are concurrent with everything after them, which
// is what makes linearizability checking expensive. Before checking, Check
// removes operations that provably cannot change the verdict, and closes
// open-ended ones whose effect a later operation saw (at that operation's
// return); prune.go states each rule with its argument, and a property
// test checks them against porcupine on the unpruned history. In short:
// reads and not-applied operations are removed when they observed
// nothing; an open-ended write is closed when its (unique) value was read,
// and removed when nobody could ever have seen it; an open-ended
// compare-and-swap whose expected value was gone for good before its call
// is removed; on append-only keys, an open-ended append is closed at the
// first read that shows its token, and removed if a read after everything
// else does not show it. Workloads should still keep each key's
// concurrency modest (about 8 operations pending at once) by spreading
// clients over keys, use a unique value for every write, and read their
// append keys now and then. Result.MaxConcurrency reports what the checker
// faced.
//
// # Verdicts
//
// Check returns Ok, Illegal (with porcupine's visualization of the
// offending keys written to an HTML file whose path the Result names) or
// Unknown (the checker ran out of time). Result.Err treats Unknown as a
// failure: a check that could not decide proves nothing.
package lincheck
