// Package loadgen is cairn's load generator: it runs a key-value workload
// against any store behind a small Driver interface, and measures throughput,
// latency percentiles and the servers' CPU time. `cairn bench` drives cairn
// with it, bench/cmd/etcdbench drives etcd with the same code, and
// bench/vs-etcd.sh puts the two side by side.
//
// # The model
//
// A workload is Config.Clients closed-loop clients sharing Config.Conns
// connections (client i uses connection i mod Conns). Each client has at most
// one operation outstanding: it picks a key uniformly from a key space of
// Config.Keys keys, makes the operation a Get with probability
// Config.ReadFraction (at Config.ReadLevel) and a Put of Config.ValueSize
// bytes otherwise, waits for the answer, records its latency and goes again.
// Closed loop means the offered load adapts to the store: throughput is what
// the store sustains with that many outstanding requests, and latency is
// service time as those clients see it (a fixed-rate open-loop generator
// would be needed to see queueing beyond that).
//
// A run has up to three phases: preload (write every key once, so that Gets
// find values), warmup (the workload, not recorded) and measure (recorded,
// for Config.Duration or Config.Ops operations). Only the measured phase
// counts: an operation is recorded if it was issued after the measured phase
// began, and the phase ends when the last such operation returns. The
// servers' CPU time (user + system, from /proc/<pid>/stat of
// Config.ServerPIDs) is read at the start and end of that phase and reported
// per 1,000 operations.
//
// Latencies go into one HDR histogram per client (three significant digits,
// 1ns to 60s), merged at the end, so recording costs no locks; a progress
// report, built from per-client atomic counters, is handed to
// Config.Progress once a second.
//
// # Plugging in a store
//
// A store needs a Driver (Put, Get at a ReadLevel, Close, safe for
// concurrent use) and a Dialer that opens one per connection:
//
//	dial := func(ctx context.Context, conn int) (loadgen.Driver, error) {
//		return mystore.Open(ctx, endpoints) // one connection each call
//	}
//	cfg := loadgen.Config{Target: "mystore", Workload: "put-c16", Clients: 16, Duration: 10 * time.Second}
//	cfg.Progress = loadgen.ProgressPrinter(os.Stderr, false)
//	res, err := loadgen.Run(ctx, cfg, dial)
//	if err != nil { ... }
//	res.WriteJSON(os.Stdout)
//
// Commands bind the workload flags with RegisterFlags so that every bench
// command takes the same flags, wait for a fresh cluster with WaitReady, and
// write Result as JSON; WriteComparisonTable turns two systems' results into
// the table bench/vs-etcd.sh prints. MemDriver is an in-memory Driver for
// tests and for measuring the generator's own ceiling.
package loadgen
