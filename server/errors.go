package server

import "errors"

// Errors returned by Start and Config.Validate. Callers branch on them
// with errors.Is; the returned errors wrap them with detail (the file, the
// IDs found and expected).
var (
	// ErrInvalidConfig is wrapped by every problem Config.Validate reports
	// and by ParsePeers' errors.
	ErrInvalidConfig = errors.New("server: invalid config")

	// ErrDataDirMismatch is returned by Start when the data directory
	// belongs to another cluster or another node: starting on it would
	// make this node vote and acknowledge with another node's history.
	ErrDataDirMismatch = errors.New("server: data directory belongs to another cluster or node")

	// ErrNotDataDir is returned by Start when the data directory is not
	// empty but has no meta file: it is not a cairn data directory, or its
	// meta file was lost. The node refuses to guess.
	ErrNotDataDir = errors.New("server: not a cairn data directory")

	// ErrDataDirCorrupt is returned by Start when the data directory's
	// meta file is damaged (bad magic, size or checksum), or when a
	// group's durable state is (it then also wraps replica.ErrDataCorrupt).
	ErrDataDirCorrupt = errors.New("server: data directory is damaged")

	// ErrStopped is returned by a Node's methods once it has stopped.
	ErrStopped = errors.New("server: node stopped")
)

// dirError is an error about the data directory that matches one of the
// sentinels above, with a message that says it all (the sentinel's text is
// not repeated).
type dirError struct {
	sentinel error
	msg      string
}

func (e *dirError) Error() string { return e.msg }
func (e *dirError) Unwrap() error { return e.sentinel }
