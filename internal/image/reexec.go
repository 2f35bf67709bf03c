package image

import (
	"os"

	"go.podman.io/storage/pkg/reexec"
)

// containers/storage unpacks layers (and mounts overlays with long option
// strings) in a child process: it re-executes the running binary with
// argv[0] set to a registered name such as "storage-untar", and panics if
// the binary never called reexec.Init. Every binary that opens storage
// links this package, so it handles the re-exec here, before main runs:
// berthd, the berth CLI and the test binaries then all work without each
// main having to remember. For an ordinary start argv[0] matches no
// registered name and this does nothing.
func init() {
	if reexec.Init() {
		// The registered function normally exits itself; make sure the
		// child never goes on to run main.
		os.Exit(0)
	}
}
