package pod

import (
	"os"
	"path/filepath"
	"testing"
)

func TestResolvConfAndHosts(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "resolv.conf")
	if err := writeResolvConf(p, &DNS{Servers: []string{"10.0.0.10"}, Searches: []string{"a.svc", "svc"}, Options: []string{"ndots:5"}}); err != nil {
		t.Fatal(err)
	}
	want := "search a.svc svc\nnameserver 10.0.0.10\noptions ndots:5\n"
	if b, _ := os.ReadFile(p); string(b) != want {
		t.Fatalf("%q", b)
	}
	h := filepath.Join(dir, "hosts")
	if err := writeHosts(h, false, "web", []string{"10.1.0.2", "fd00::2"}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(h)
	if string(b) != hostsHeader+"10.1.0.2\tweb\nfd00::2\tweb\n" {
		t.Fatalf("%q", b)
	}
}
