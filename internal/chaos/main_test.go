package chaos

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test stops what it starts: processes, proxies, clients.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
