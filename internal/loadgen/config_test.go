package loadgen

import (
	"errors"
	"flag"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	c := Config{}.WithDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if c.Clients != 16 || c.Conns != 8 || c.Keys != 10000 || c.ValueSize != 256 ||
		c.Duration != 10*time.Second || c.Ops != 0 || c.KeyPrefix != "bench/" {
		t.Errorf("defaults = %+v", c)
	}
	if c := (Config{Clients: 3}).WithDefaults(); c.Conns != 3 {
		t.Errorf("Conns = %d with 3 clients, want 3", c.Conns)
	}
	if c := (Config{Ops: 100}).WithDefaults(); c.Duration != 0 {
		t.Errorf("Duration = %v with Ops set, want 0", c.Duration)
	}
}

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	c := Config{
		Clients: 2, Conns: 3, Keys: -1, ValueSize: -5, ReadFraction: math.NaN(), ReadLevel: 9,
		Duration: time.Second, Ops: 10, Warmup: -time.Second, OpTimeout: -1, ProgressInterval: time.Second,
		ServerPIDs: []int{0},
	}
	err := c.Validate()
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("err = %v, want ErrInvalidConfig", err)
	}
	for _, want := range []string{"conns", "keys", "value size", "read fraction", "read level",
		"not both", "warmup", "op timeout", "server pid"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q: %v", want, err)
		}
	}
}

func TestRegisterFlags(t *testing.T) {
	var c Config
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	RegisterFlags(fs, &c)
	err := fs.Parse([]string{"-clients", "64", "-conns", "4", "-keys", "500", "-value-size", "1024",
		"-read-fraction", "1", "-read-level", "serializable", "-duration", "3s", "-warmup", "1s",
		"-preload", "-server-pids", "10, 20,30", "-workload", "get-ser-c64", "-seed", "9"})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Workload: "get-ser-c64", Clients: 64, Conns: 4, Keys: 500, ValueSize: 1024,
		ReadFraction: 1, ReadLevel: Serializable, Duration: 3 * time.Second, Warmup: time.Second,
		Preload: true, Seed: 9}
	got := c
	got.ServerPIDs = nil
	if got.Workload != want.Workload || got.Clients != want.Clients || got.Conns != want.Conns ||
		got.Keys != want.Keys || got.ValueSize != want.ValueSize || got.ReadFraction != want.ReadFraction ||
		got.ReadLevel != want.ReadLevel || got.Duration != want.Duration || got.Warmup != want.Warmup ||
		got.Preload != want.Preload || got.Seed != want.Seed {
		t.Errorf("parsed %+v, want %+v", got, want)
	}
	if !slices.Equal(c.ServerPIDs, []int{10, 20, 30}) {
		t.Errorf("ServerPIDs = %v", c.ServerPIDs)
	}
	for _, bad := range [][]string{{"-read-level", "eventual"}, {"-server-pids", "1,x"}} {
		fs := flag.NewFlagSet("bench", flag.ContinueOnError)
		fs.SetOutput(&strings.Builder{})
		RegisterFlags(fs, &Config{})
		if err := fs.Parse(bad); err == nil {
			t.Errorf("%v parsed without error", bad)
		}
	}
}

func TestReadLevelText(t *testing.T) {
	for _, l := range []ReadLevel{Linearizable, Serializable} {
		b, _ := l.MarshalText()
		var back ReadLevel
		if err := back.UnmarshalText(b); err != nil || back != l {
			t.Errorf("%v → %q → %v, %v", l, b, back, err)
		}
	}
}
