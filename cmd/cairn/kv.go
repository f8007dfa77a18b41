package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairnkv/cairn/client"
)

// withClient runs fn with a client for g's endpoints and a context bounded
// by --timeout, and closes the client after.
func (g *globals) withClient(cmd *cobra.Command, fn func(ctx context.Context, c *client.Client) error) error {
	c, err := client.New(client.Config{
		Endpoints:      g.endpoints,
		DialTimeout:    g.dialTimeout,
		RequestTimeout: g.timeout,
		// A CLI call that gives up should say so promptly: no attempt may
		// use up the whole --timeout on one silent node.
		AttemptTimeout: min(client.DefaultAttemptTimeout, max(g.timeout/3, 100*time.Millisecond)),
	})
	if err != nil {
		return usageErr(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), g.timeout)
	defer cancel()
	return fn(ctx, c)
}

func newPutCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "put KEY VALUE",
		Short: "Set KEY to VALUE",
		Long: `Set KEY to VALUE, exactly once (a retried request is never applied twice).
Prints the key's new version: the log index of the write.`,
		Args: argsUsage(2, 2, "KEY VALUE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				res, err := c.Put(ctx, []byte(args[0]), []byte(args[1]))
				if err != nil {
					return err
				}
				if g.output == outputJSON {
					return writeJSON(g.stdout, struct {
						Key         jsonBytes  `json:"key"`
						Version     uint64     `json:"version"`
						PrevVersion uint64     `json:"prev_version"`
						Header      jsonHeader `json:"header"`
					}{jsonBytes(args[0]), uint64(res.Version), uint64(res.PrevVersion), headerJSON(res.Header)})
				}
				prev := "new key"
				if res.PrevVersion != 0 {
					prev = fmt.Sprintf("was version %d", res.PrevVersion)
				}
				fmt.Fprintf(g.stdout, "OK version %d (%s)\n", res.Version, prev)
				return nil
			})
		},
	}
}

func newGetCmd(g *globals) *cobra.Command {
	var valueOnly bool
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "Read KEY",
		Long: `Read KEY at the --consistency level (linearizable by default).
Exits with status 3 if the key does not exist.`,
		Args: argsUsage(1, 1, "KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				res, err := c.Get(ctx, []byte(args[0]), client.WithConsistency(g.consistency.c))
				if errors.Is(err, client.ErrKeyNotFound) {
					return &exitError{code: exitNotFound, err: fmt.Errorf("%s: no such key", printable([]byte(args[0])))}
				}
				if err != nil {
					return err
				}
				switch {
				case g.output == outputJSON:
					return writeJSON(g.stdout, struct {
						jsonKV
						Header jsonHeader `json:"header"`
					}{jsonKV{res.Key, jsonBytes(res.Value), uint64(res.Version)}, headerJSON(res.Header)})
				case valueOnly:
					_, err := g.stdout.Write(append(bytes.Clone(res.Value), '\n'))
					return err
				}
				t := newTable(g.stdout, "KEY", "VERSION", "VALUE")
				t.row(printable(res.Key), strconv.FormatUint(uint64(res.Version), 10), printable(res.Value))
				return t.flush()
			})
		},
	}
	cmd.Flags().BoolVar(&valueOnly, "value-only", false, "print only the value, as it is, and a newline")
	return cmd
}

func newDelCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "del KEY",
		Aliases: []string{"delete", "rm"},
		Short:   "Delete KEY",
		Long:    `Delete KEY, exactly once. Deleting an absent key succeeds and says so.`,
		Args:    argsUsage(1, 1, "KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				res, err := c.Delete(ctx, []byte(args[0]))
				if err != nil {
					return err
				}
				if g.output == outputJSON {
					return writeJSON(g.stdout, struct {
						Key         jsonBytes  `json:"key"`
						Deleted     bool       `json:"deleted"`
						PrevVersion uint64     `json:"prev_version"`
						Header      jsonHeader `json:"header"`
					}{jsonBytes(args[0]), res.Deleted, uint64(res.PrevVersion), headerJSON(res.Header)})
				}
				if res.Deleted {
					fmt.Fprintf(g.stdout, "deleted (was version %d)\n", res.PrevVersion)
				} else {
					fmt.Fprintln(g.stdout, "not found: nothing to delete")
				}
				return nil
			})
		},
	}
}

func newCASCmd(g *globals) *cobra.Command {
	var (
		expectValue   string
		expectVersion uint64
		expectAbsent  bool
		del           bool
	)
	cmd := &cobra.Command{
		Use:   "cas KEY [NEW] (--expect-value V | --expect-version N | --expect-absent) [--delete]",
		Short: "Compare-and-swap: set KEY to NEW only if it holds what you expect",
		Long: `Set KEY to NEW (or delete it, with --delete) only if the key's current
state is the expected one: exactly one of
  --expect-value V     its value is V
  --expect-version N   its version is N (0: absent)
  --expect-absent      it does not exist
If the condition does not hold, nothing is written, the key's current state
is printed, and the exit status is 4.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if del {
				return argsUsage(1, 1, "KEY (with --delete)")(cmd, args)
			}
			return argsUsage(2, 2, "KEY NEW")(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var expect client.Expect
			n := 0
			if cmd.Flags().Changed("expect-value") {
				n++
				expect = client.IfValue([]byte(expectValue))
			}
			if cmd.Flags().Changed("expect-version") {
				n++
				expect = client.IfVersion(client.Version(expectVersion))
			}
			if expectAbsent {
				n++
				expect = client.IfAbsent()
			}
			if n != 1 {
				return usageErr(errors.New("give exactly one of --expect-value, --expect-version, --expect-absent"))
			}
			key := []byte(args[0])
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				var (
					res *client.CASResult
					err error
				)
				if del {
					res, err = c.CompareAndDelete(ctx, key, expect)
				} else {
					res, err = c.CompareAndSwap(ctx, key, expect, []byte(args[1]))
				}
				var failed *client.CASFailedError
				if errors.As(err, &failed) && g.output == outputJSON {
					out := struct {
						Key       jsonBytes  `json:"key"`
						Succeeded bool       `json:"succeeded"`
						Current   *jsonKV    `json:"current"`
						Header    jsonHeader `json:"header"`
					}{Key: key, Header: headerJSON(failed.Header)}
					if cur := failed.Current; cur != nil {
						out.Current = &jsonKV{cur.Key, cur.Value, uint64(cur.Version)}
					}
					if werr := writeJSON(g.stdout, out); werr != nil {
						return werr
					}
					return &exitError{code: exitCASFailed, err: err, quiet: true}
				}
				if err != nil {
					return err
				}
				if g.output == outputJSON {
					return writeJSON(g.stdout, struct {
						Key       jsonBytes  `json:"key"`
						Succeeded bool       `json:"succeeded"`
						Version   uint64     `json:"version"`
						Deleted   bool       `json:"deleted,omitempty"`
						Header    jsonHeader `json:"header"`
					}{key, true, uint64(res.Version), del, headerJSON(res.Header)})
				}
				if del {
					fmt.Fprintln(g.stdout, "OK deleted")
				} else {
					fmt.Fprintf(g.stdout, "OK version %d\n", res.Version)
				}
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&expectValue, "expect-value", "", "swap only if the current value is exactly this")
	f.Uint64Var(&expectVersion, "expect-version", 0, "swap only if the current version is this (0: absent)")
	f.BoolVar(&expectAbsent, "expect-absent", false, "swap only if the key does not exist")
	f.BoolVar(&del, "delete", false, "delete the key instead of setting it")
	return cmd
}

func newScanCmd(g *globals) *cobra.Command {
	var (
		limit    int
		prefix   bool
		keysOnly bool
	)
	cmd := &cobra.Command{
		Use:   "scan [START [END]]",
		Short: "List the keys in [START, END) in order",
		Long: `List the keys in [START, END), in ascending byte order, following the
server's continuations page after page, up to --limit keys (0: all).
No START means the first key; no END means no bound. With --prefix, END is
left out and every key starting with START is listed.
Each page is one read at --consistency; the whole listing is not a snapshot.`,
		Args: argsUsage(0, 2, "[START [END]]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var start, end []byte
			if len(args) > 0 {
				start = []byte(args[0])
			}
			if len(args) > 1 {
				if prefix {
					return usageErr(errors.New("--prefix takes START only"))
				}
				end = []byte(args[1])
			}
			if prefix {
				end = prefixEnd(start)
			}
			if limit < 0 {
				return usageErr(fmt.Errorf("--limit must not be negative, got %d", limit))
			}
			opts := []client.ReadOption{client.WithConsistency(g.consistency.c)}
			if keysOnly {
				opts = append(opts, client.WithKeysOnly())
			}
			if limit > 0 {
				opts = append(opts, client.WithPageSize(min(limit, 1000)))
			}
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				var kvs []client.KeyValue
				for kv, err := range c.ScanAll(ctx, start, end, opts...) {
					if err != nil {
						return err
					}
					kvs = append(kvs, kv)
					if limit > 0 && len(kvs) == limit {
						break
					}
				}
				if g.output == outputJSON {
					out := struct {
						KVs   []jsonKV `json:"kvs"`
						Count int      `json:"count"`
					}{KVs: make([]jsonKV, 0, len(kvs)), Count: len(kvs)}
					for _, kv := range kvs {
						out.KVs = append(out.KVs, jsonKV{kv.Key, kv.Value, uint64(kv.Version)})
					}
					return writeJSON(g.stdout, out)
				}
				cols := []string{"KEY", "VERSION", "VALUE"}
				if keysOnly {
					cols = cols[:2]
				}
				t := newTable(g.stdout, cols...)
				for _, kv := range kvs {
					row := []string{printable(kv.Key), strconv.FormatUint(uint64(kv.Version), 10), printable(kv.Value)}
					t.row(row[:len(cols)]...)
				}
				if err := t.flush(); err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "(%d keys)\n", len(kvs))
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.IntVar(&limit, "limit", 0, "list at most this many keys (0: all)")
	f.BoolVar(&prefix, "prefix", false, "list the keys that start with START")
	f.BoolVar(&keysOnly, "keys-only", false, "leave the values out")
	return cmd
}

// prefixEnd is the smallest key above every key that starts with p; nil
// (no bound) if there is none (p is empty or all 0xff).
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
