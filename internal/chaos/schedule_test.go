package chaos

import (
	"reflect"
	"testing"
	"time"
)

// A schedule is a pure function of its seed, length, size and faults:
// the same inputs give the same steps, other seeds other steps.
func TestScheduleFromSeed(t *testing.T) {
	a := NewSchedule(42, 3, 30*time.Second)
	b := NewSchedule(42, 3, 30*time.Second)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("same seed, different schedules:\n%v\n%v", a, b)
	}
	if c := NewSchedule(43, 3, 30*time.Second); reflect.DeepEqual(a.Steps, c.Steps) {
		t.Fatalf("seeds 42 and 43 drew the same steps:\n%v", a)
	}
	if only := NewSchedule(42, 3, 30*time.Second, PauseLeader); len(only.Steps) == 0 {
		t.Fatal("a schedule of one fault has no steps")
	} else {
		for _, st := range only.Steps {
			if st.Fault != PauseLeader {
				t.Fatalf("asked for pause-leader only, got %v", st)
			}
		}
	}
}

// Steps fit the run: none before the warm-up, each held at least minHold,
// none overlapping the next, all healed before the fault-free tail; and a
// handful of seeds covers every fault.
func TestScheduleShape(t *testing.T) {
	seen := map[Fault]bool{}
	for seed := uint64(1); seed <= 10; seed++ {
		d := 30 * time.Second
		s := NewSchedule(seed, 3, d)
		if len(s.Steps) < 4 {
			t.Errorf("seed %d: only %d faults in %v:\n%v", seed, len(s.Steps), d, s)
		}
		end := warmup
		for _, st := range s.Steps {
			if st.At < end || st.For < minHold || st.At+st.For > d-tail {
				t.Errorf("seed %d: step %v does not fit after %v in a run of %v", seed, st, end, d)
			}
			end = st.At + st.For
			seen[st.Fault] = true
		}
	}
	for _, f := range AllFaults() {
		if !seen[f] {
			t.Errorf("ten seeds never drew %v", f)
		}
		if g, err := ParseFault(f.String()); err != nil || g != f {
			t.Errorf("ParseFault(%q) = %v, %v", f, g, err)
		}
	}
	if _, err := ParseFault("no-such-fault"); err == nil {
		t.Error("ParseFault accepted an unknown name")
	}
}
