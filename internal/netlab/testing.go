package netlab

import (
	"os"
	"testing"
)

// RequireRoot skips t unless the process runs as root (euid 0), which
// real-kernel tests need to create network namespaces. Under root such tests
// run and should treat any kernel refusal as a failure.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root: creates network namespaces (euid is %d)", os.Geteuid())
	}
}
