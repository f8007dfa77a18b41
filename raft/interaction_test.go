package raft

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
)

// TestInteraction runs the scripted scenarios in testdata/*.txt (see
// interactionEnv for the commands), one fresh group per file. Regenerate
// the golden output with
//
//	go test ./raft -run TestInteraction -rewrite
//
// and then read the diff: every file must show what the paper requires.
func TestInteraction(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no scenarios in testdata/")
	}
	for _, path := range files {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txt"), func(t *testing.T) {
			env := newInteractionEnv()
			datadriven.RunTest(t, path, env.handle)
		})
	}
}
