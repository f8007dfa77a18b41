package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/cairnkv/cairn/client"
)

// outputFormat is --output: how verbs print their results.
type outputFormat int

const (
	outputTable outputFormat = iota
	outputJSON
)

func (f outputFormat) String() string {
	if f == outputJSON {
		return "json"
	}
	return "table"
}

// Set implements pflag.Value.
func (f *outputFormat) Set(s string) error {
	switch s {
	case "table", "simple":
		*f = outputTable
	case "json":
		*f = outputJSON
	default:
		return fmt.Errorf("output must be table or json, not %q", s)
	}
	return nil
}

// Type implements pflag.Value.
func (f *outputFormat) Type() string { return "table|json" }

// consistencyFlag is --consistency.
type consistencyFlag struct{ c client.Consistency }

func (f *consistencyFlag) String() string { return f.c.String() }

// Set implements pflag.Value.
func (f *consistencyFlag) Set(s string) error {
	c, err := parseConsistency(s)
	if err != nil {
		return err
	}
	f.c = c
	return nil
}

// Type implements pflag.Value.
func (f *consistencyFlag) Type() string { return "level" }

func parseConsistency(s string) (client.Consistency, error) {
	switch s {
	case "linearizable", "lin", "":
		return client.Linearizable, nil
	case "lease":
		return client.Lease, nil
	case "serializable", "ser":
		return client.Serializable, nil
	}
	return 0, fmt.Errorf("consistency must be linearizable, lease or serializable, not %q", s)
}

// printable renders bytes for a terminal: as they are if they are
// printable UTF-8 without spaces at the edges, else Go-quoted.
func printable(b []byte) string {
	s := string(b)
	if s != "" && utf8.ValidString(s) && strings.TrimSpace(s) == s && strconv.CanBackquote(s) && !strings.ContainsAny(s, "`\t") {
		return s
	}
	return strconv.Quote(s)
}

// jsonBytes is a key or value in JSON output: a string when it is valid
// UTF-8, else an object {"base64": "..."}.
type jsonBytes []byte

func (b jsonBytes) MarshalJSON() ([]byte, error) {
	if utf8.Valid(b) {
		return json.Marshal(string(b))
	}
	return json.Marshal(map[string]string{"base64": base64.StdEncoding.EncodeToString(b)})
}

// jsonHeader is a response header in JSON output.
type jsonHeader struct {
	Node         uint64 `json:"node"`
	Group        uint64 `json:"group"`
	AppliedIndex uint64 `json:"applied_index"`
	Term         uint64 `json:"term,omitempty"`
}

func headerJSON(h client.Header) jsonHeader {
	return jsonHeader{Node: uint64(h.Node), Group: uint64(h.Group), AppliedIndex: uint64(h.AppliedIndex), Term: uint64(h.Term)}
}

// jsonKV is one key in JSON output.
type jsonKV struct {
	Key     jsonBytes `json:"key"`
	Value   jsonBytes `json:"value,omitempty"`
	Version uint64    `json:"version"`
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes aligned columns.
type table struct {
	tw *tabwriter.Writer
}

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	if len(header) > 0 {
		t.row(header...)
	}
	return t
}

func (t *table) row(cells ...string) {
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }
