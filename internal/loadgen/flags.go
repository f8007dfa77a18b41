package loadgen

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
)

// RegisterFlags defines on fs one flag per workload field of c, with c's
// current values as defaults, so that every bench command (bench/cmd/etcdbench
// today, `cairn bench` later) accepts the same workload flags and
// bench/vs-etcd.sh can drive them alike:
//
//	-workload -clients -conns -keys -key-prefix -value-size -read-fraction
//	-read-level -duration -ops -warmup -preload -seed -op-timeout -server-pids
//
// A zero value means the default described on Config. Binding flags is the
// commands' business; this only keeps the names in one place. A cobra command
// can add fs with pflag's AddGoFlagSet.
func RegisterFlags(fs *flag.FlagSet, c *Config) {
	fs.StringVar(&c.Workload, "workload", c.Workload, "workload name recorded in the result (e.g. put-c16)")
	fs.IntVar(&c.Clients, "clients", c.Clients, "concurrent closed-loop clients (0: 16)")
	fs.IntVar(&c.Conns, "conns", c.Conns, "connections shared by the clients (0: min(clients, 8))")
	fs.IntVar(&c.Keys, "keys", c.Keys, "key space size (0: 10000)")
	fs.StringVar(&c.KeyPrefix, "key-prefix", c.KeyPrefix, `key prefix ("": "bench/")`)
	fs.IntVar(&c.ValueSize, "value-size", c.ValueSize, "value size in bytes (0: 256)")
	fs.Float64Var(&c.ReadFraction, "read-fraction", c.ReadFraction, "fraction of operations that are gets, in [0, 1]")
	fs.Var(&c.ReadLevel, "read-level", "consistency of gets: linearizable or serializable")
	fs.DurationVar(&c.Duration, "duration", c.Duration, "length of the measured phase (0 with -ops 0: 10s)")
	fs.Int64Var(&c.Ops, "ops", c.Ops, "number of measured operations, instead of -duration")
	fs.DurationVar(&c.Warmup, "warmup", c.Warmup, "unrecorded warmup before the measured phase")
	fs.BoolVar(&c.Preload, "preload", c.Preload, "write every key once before the warmup")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "seed for key and operation choices (0: 1)")
	fs.DurationVar(&c.OpTimeout, "op-timeout", c.OpTimeout, "timeout of each operation (0: 10s)")
	fs.Var((*pidList)(&c.ServerPIDs), "server-pids", "comma-separated PIDs of the server processes whose CPU time to measure")
}

// pidList is a flag.Value for a comma-separated list of PIDs.
type pidList []int

func (l *pidList) String() string {
	if l == nil {
		return ""
	}
	s := make([]string, len(*l))
	for i, p := range *l {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, ",")
}

func (l *pidList) Set(v string) error {
	var out []int
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := strconv.Atoi(f)
		if err != nil || p <= 0 {
			return fmt.Errorf("bad pid %q", f)
		}
		out = append(out, p)
	}
	*l = out
	return nil
}
