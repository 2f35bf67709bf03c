package pod

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

const hostResolvConf = "/etc/resolv.conf"

// writeResolvConf writes the pod's resolv.conf: from its DNSConfig, or a
// copy of the host's when it asked for nothing.
func writeResolvConf(path string, d *DNS) error {
	var data []byte
	if d == nil {
		host, err := os.ReadFile(hostResolvConf)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("read host resolv.conf: %w", err)
		}
		data = host
	} else {
		var b strings.Builder
		if len(d.Searches) > 0 {
			b.WriteString("search " + strings.Join(d.Searches, " ") + "\n")
		}
		for _, s := range d.Servers {
			b.WriteString("nameserver " + s + "\n")
		}
		if len(d.Options) > 0 {
			b.WriteString("options " + strings.Join(d.Options, " ") + "\n")
		}
		data = []byte(b.String())
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("write resolv.conf: %w", err)
	}
	return nil
}

func writeHostname(path, hostname string) error {
	if err := os.WriteFile(path, []byte(hostname+"\n"), 0o644); err != nil {
		return fmt.Errorf("write hostname: %w", err)
	}
	return nil
}

const hostsHeader = `127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
fe00::0	ip6-localnet
fe00::0	ip6-mcastprefix
fe00::1	ip6-allnodes
fe00::2	ip6-allrouters
`

// writeHosts writes the pod's /etc/hosts: the host's own for a pod on
// the host network, else localhost plus the pod's IPs under its name.
func writeHosts(path string, hostNetwork bool, hostname string, ips []string) error {
	var data []byte
	if hostNetwork {
		host, err := os.ReadFile("/etc/hosts")
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("read host /etc/hosts: %w", err)
		}
		data = host
	} else {
		var b strings.Builder
		b.WriteString(hostsHeader)
		for _, ip := range ips {
			b.WriteString(ip + "\t" + hostname + "\n")
		}
		data = []byte(b.String())
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("write hosts: %w", err)
	}
	return nil
}

// mountShm mounts the pod's /dev/shm: a tmpfs of the configured size
// that every container of the pod binds, so they share POSIX shm.
func mountShm(path string, size int64) error {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return fmt.Errorf("create shm dir: %w", err)
	}
	opts := fmt.Sprintf("mode=1777,size=%d", size)
	if err := unix.Mount("shm", path, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
		os.Remove(path)
		return fmt.Errorf("mount shm tmpfs on %s: %w", path, err)
	}
	return nil
}

// unmountShm is idempotent: a path that is no longer a mount, or gone,
// is fine.
func unmountShm(path string) error {
	if path == "" {
		return nil
	}
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount shm %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove shm dir: %w", err)
	}
	return nil
}
