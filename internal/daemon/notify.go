package daemon

import (
	"fmt"
	"net"
	"os"
	"strings"
)

// notifier reports berthd's state to systemd over the datagram socket
// named by $NOTIFY_SOCKET (sd_notify(3), for a Type=notify unit); without
// one it does nothing.
type notifier struct{ addr string }

// takeNotifySocket reads $NOTIFY_SOCKET and removes it from berthd's
// environment: conmon and runc inherit that environment, and a runc that
// sees NOTIFY_SOCKET passes it into the container and waits for the
// container to report ready.
func takeNotifySocket() notifier {
	addr := os.Getenv("NOTIFY_SOCKET")
	os.Unsetenv("NOTIFY_SOCKET")
	return notifier{addr: addr}
}

// notify sends one state message, e.g. "READY=1". A path starting with
// '@' is an abstract socket, which the net package understands.
func (n notifier) notify(state string) error {
	if n.addr == "" {
		return nil
	}
	if !strings.HasPrefix(n.addr, "/") && !strings.HasPrefix(n.addr, "@") {
		return fmt.Errorf("NOTIFY_SOCKET %q: only unix sockets are supported", n.addr)
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: n.addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify systemd at %s: %w", n.addr, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("notify systemd at %s: %w", n.addr, err)
	}
	return nil
}
