package lincheck

import (
	"strings"
	"testing"
)

func TestCheckAppends(t *testing.T) {
	const k = "log"
	open := func(c int, call int64, tok string) Op {
		return opOf(c, call, Open, Input{Kind: Append, Key: k, Value: tok}, Output{})
	}
	for _, tc := range []struct {
		name  string
		ops   []Op
		final string
		want  string // a substring of the error; "" for none
	}{
		{"in order", []Op{appendOp(0, 0, 1, k, "a;", 2), appendOp(0, 2, 3, k, "b;", 4)}, "a;b;", ""},
		{"concurrent, either order", []Op{appendOp(0, 0, 5, k, "a;", 4), appendOp(1, 0, 5, k, "b;", 2)}, "b;a;", ""},
		{"open-ended present", []Op{appendOp(0, 0, 1, k, "a;", 2), open(1, 2, "b;")}, "a;b;", ""},
		{"open-ended absent", []Op{appendOp(0, 0, 1, k, "a;", 2), open(1, 2, "b;")}, "a;", ""},
		{"not applied, absent", []Op{notApplied(appendOp(0, 0, 1, k, "a;", 0))}, "", ""},
		{"twice", []Op{appendOp(0, 0, 1, k, "a;", 2), appendOp(0, 2, 3, k, "b;", 4)}, "a;b;a;", "twice"},
		{"open-ended twice", []Op{open(0, 0, "a;")}, "a;a;", "twice"},
		{"lost", []Op{appendOp(0, 0, 1, k, "a;", 2), appendOp(0, 2, 3, k, "b;", 4)}, "a;", "lost \"b;\""},
		{"wrong position", []Op{appendOp(0, 0, 5, k, "a;", 2), appendOp(1, 0, 5, k, "b;", 4)}, "b;a;", "returned length"},
		{"out of order", []Op{appendOp(0, 0, 1, k, "a;", 4), appendOp(1, 2, 3, k, "b;", 2)}, "b;a;", "comes after"},
		{"not applied but present", []Op{notApplied(appendOp(0, 0, 1, k, "a;", 0))}, "a;", "not applied"},
		{"nobody appended it", []Op{appendOp(0, 0, 1, k, "a;", 2)}, "a;zz;", "nobody appended"},
		{"torn tail", []Op{appendOp(0, 0, 1, k, "a;", 2)}, "a;b", "does not end"},
		{"not a token", []Op{appendOp(0, 0, 1, k, "a", 1)}, "a", "not a token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckAppends(tc.ops, map[string]string{k: tc.final})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("CheckAppends: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("CheckAppends: %v, want an error with %q", err, tc.want)
			}
		})
	}
	if err := CheckAppends([]Op{appendOp(0, 0, 1, k, "a;", 2)}, nil); err == nil {
		t.Fatal("CheckAppends with no final value: no error")
	}
}
