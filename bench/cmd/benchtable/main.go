// Command benchtable prints the comparison table of bench/vs-etcd.sh: for
// each workload, the baseline's (etcd's) and the candidate's (cairn's)
// throughput, p50, p99 and server CPU seconds per 1,000 operations, and their
// ratios. It reads the JSON results the bench commands wrote, one file per
// workload named <workload>.json in each system's directory.
//
//	benchtable -baseline-dir out/etcd -candidate-dir out/cairn \
//	    -workloads put-c1,put-c16,put-c256,get-lin-c64,get-ser-c64
//
// With no -candidate-dir (or a missing file), the candidate's cells say
// -missing (default "not built yet") and no ratio is computed.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/cairnkv/cairn/internal/loadgen"
)

func main() {
	baseDir := flag.String("baseline-dir", "", "directory of the baseline's <workload>.json results")
	candDir := flag.String("candidate-dir", "", "directory of the candidate's results (empty: not run)")
	baseName := flag.String("baseline-name", "etcd", "baseline system's name")
	candName := flag.String("candidate-name", "cairn", "candidate system's name")
	workloads := flag.String("workloads", "put-c1,put-c16,put-c256,get-lin-c64,get-ser-c64", "comma-separated workloads, in table order")
	missing := flag.String("missing", "not built yet", "what the candidate's cells say when it has no result")
	flag.Parse()
	if *baseDir == "" {
		fmt.Fprintln(os.Stderr, "benchtable: -baseline-dir is required")
		os.Exit(2)
	}

	var rows []loadgen.Comparison
	for _, w := range strings.Split(*workloads, ",") {
		w = strings.TrimSpace(w)
		if w == "" {
			continue
		}
		row := loadgen.Comparison{Workload: w, Missing: *missing}
		var err error
		if row.Baseline, err = read(*baseDir, w); err != nil {
			fmt.Fprintf(os.Stderr, "benchtable: %v\n", err)
			os.Exit(1)
		}
		if row.Candidate, err = read(*candDir, w); err != nil {
			fmt.Fprintf(os.Stderr, "benchtable: %v\n", err)
			os.Exit(1)
		}
		rows = append(rows, row)
	}
	if err := loadgen.WriteComparisonTable(os.Stdout, *baseName, *candName, rows); err != nil {
		fmt.Fprintf(os.Stderr, "benchtable: %v\n", err)
		os.Exit(1)
	}
}

// read returns dir/<workload>.json, or nil if dir is empty or the file does
// not exist (that system did not run the workload).
func read(dir, workload string) (*loadgen.Result, error) {
	if dir == "" {
		return nil, nil
	}
	r, err := loadgen.ReadResult(filepath.Join(dir, workload+".json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return r, err
}
