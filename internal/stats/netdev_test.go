package stats

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

const netDevFixture = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     560       8    0    0    0     0          0         0      560       8    0    0    0     0       0          0
  eth0: 1234567    890    1    2    0     0          0         3   765432     321    4    5    0     0       0          0
`

func TestParseNetDev(t *testing.T) {
	ifs, err := parseNetDev([]byte(netDevFixture))
	if err != nil {
		t.Fatal(err)
	}
	want := []Interface{
		{Name: "lo", RxBytes: 560, RxPackets: 8, TxBytes: 560, TxPackets: 8},
		{Name: "eth0", RxBytes: 1234567, RxPackets: 890, RxErrors: 1, RxDropped: 2, TxBytes: 765432, TxPackets: 321, TxErrors: 4, TxDropped: 5},
	}
	if fmt.Sprint(ifs) != fmt.Sprint(want) {
		t.Fatalf("got  %+v\nwant %+v", ifs, want)
	}
	if _, err := parseNetDev([]byte("hdr|\nhdr|\n eth0: 1 2 3\n")); err == nil {
		t.Fatal("short line parsed")
	}
	nu := networkUsage(netSample{ifs: append(ifs, Interface{Name: "net1", RxBytes: 9})})
	if nu.GetDefaultInterface().GetName() != "eth0" || nu.GetDefaultInterface().GetRxBytes().GetValue() != 1234567 ||
		len(nu.GetInterfaces()) != 1 || nu.GetInterfaces()[0].GetName() != "net1" {
		t.Fatalf("network usage: %v", nu)
	}
}

// TestReadNetNSLive reads eth0's counters inside a network namespace
// after sending it traffic over a veth pair from the host.
func TestReadNetNSLive(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("no ip command")
	}
	n := os.Getpid() % 10000
	ns, host := fmt.Sprintf("berthstats%d", n), fmt.Sprintf("bst%da", n)
	sub := fmt.Sprintf("169.254.%d.", os.Getpid()%250+1)
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ip("netns", "add", ns)
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", host).Run()
		exec.Command("ip", "netns", "del", ns).Run()
	})
	peer := fmt.Sprintf("bst%db", n)
	ip("link", "add", host, "type", "veth", "peer", "name", peer)
	ip("link", "set", peer, "netns", ns)
	ip("-n", ns, "link", "set", peer, "name", "eth0")
	ip("-n", ns, "addr", "add", sub+"2/30", "dev", "eth0")
	ip("-n", ns, "link", "set", "eth0", "up")
	ip("addr", "add", sub+"1/30", "dev", host)
	ip("link", "set", host, "up")

	before, err := readNetNS("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("udp", sub+"2:9")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rx := func(ifs []Interface) uint64 {
		for _, i := range ifs {
			if i.Name == "eth0" {
				return i.RxBytes
			}
		}
		t.Fatalf("no eth0 in %+v", ifs)
		return 0
	}
	// Send until 50 kB arrived: the first packets wait for the link and
	// ARP, and some may be dropped meanwhile.
	payload := make([]byte, 1000)
	deadline := time.Now().Add(10 * time.Second)
	for {
		for range 20 {
			conn.Write(payload)
		}
		after, err := readNetNS("/run/netns/" + ns)
		if err != nil {
			t.Fatal(err)
		}
		if rx(after)-rx(before) >= 50_000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("eth0 received only %d bytes in 10s", rx(after)-rx(before))
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The reading thread went back: this process still sees the host's
	// interfaces, not the namespace's.
	own, err := os.ReadFile("/proc/self/net/dev")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(own), host+":") {
		t.Fatalf("host interface %s missing from own /proc/net/dev", host)
	}
	if _, err := readNetNS("/run/netns/no-such-ns"); err == nil {
		t.Fatal("reading a missing namespace succeeded")
	}
}

// BenchmarkReadNetNS is the on-demand cost of one pod's network
// counters: a thread entering and leaving a namespace.
func BenchmarkReadNetNS(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	ns := fmt.Sprintf("berthstatsb%d", os.Getpid()%10000)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		b.Skipf("ip netns add: %v: %s", err, out)
	}
	defer exec.Command("ip", "netns", "del", ns).Run()
	for range b.N {
		if _, err := readNetNS("/run/netns/" + ns); err != nil {
			b.Fatal(err)
		}
	}
}
