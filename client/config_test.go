package client

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	cfg := Config{
		Endpoints:         []string{"a:1", "a:1", " "},
		AttemptTimeout:    -time.Second,
		MaxInflight:       -1,
		KeepAliveInterval: time.Hour,
		Retry:             RetryPolicy{BaseBackoff: time.Second, MaxBackoff: time.Millisecond, MaxAttempts: -2},
	}.withDefaults()
	err := cfg.Validate()
	if err == nil {
		t.Fatal("Validate accepted a bad config")
	}
	for _, want := range []string{
		`endpoint "a:1" listed twice`,
		"empty endpoint",
		"AttemptTimeout -1s is negative",
		"MaxInflight -1 below 1",
		"KeepAliveInterval 1h0m0s not below SessionTTL 1m0s",
		"Retry.MaxBackoff 1ms below Retry.BaseBackoff 1s",
		"Retry.MaxAttempts -2 is negative",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate's error %q lacks %q", err, want)
		}
	}
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "no endpoints") {
		t.Errorf("New(Config{}) = %v, want an error about endpoints", err)
	}
}

func TestConfigDefaults(t *testing.T) {
	cfg := Config{Endpoints: []string{"a:1"}}.withDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.RequestTimeout != DefaultRequestTimeout || cfg.MaxInflight != DefaultMaxInflight ||
		cfg.Retry.BaseBackoff != DefaultBaseBackoff || cfg.Logger == nil {
		t.Errorf("defaults not filled: %+v", cfg)
	}
}
