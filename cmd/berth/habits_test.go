package main

import (
	"context"
	"io"
	"strings"
	"testing"

	mobyterm "github.com/moby/term"
)

func TestParseDetachKeys(t *testing.T) {
	if b, err := parseDetachKeys(defaultDetachKeys); err != nil || string(b) != "\x10\x11" {
		t.Errorf("default keys = %q, %v", b, err)
	}
	if b, err := parseDetachKeys(""); err != nil || b != nil {
		t.Errorf("empty keys = %q, %v", b, err)
	}
	if _, err := parseDetachKeys("ctrl-nope"); err == nil || !strings.Contains(err.Error(), "--detach-keys") {
		t.Errorf("bad keys: %v", err)
	}
}

// What comes before the detach keys reaches the container; the keys end
// the session (its context) rather than stdin.
func TestDetachReader(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	d := &detachReader{r: mobyterm.NewEscapeProxy(strings.NewReader("ls\r\x10x\x10\x11after"), []byte{0x10, 0x11}), cancel: cancel, done: make(chan struct{})}
	got := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(d)
		got <- string(b)
	}()
	<-ctx.Done()
	if !d.detached.Load() {
		t.Fatal("not detached")
	}
	close(d.done)
	if s := <-got; s != "ls\r\x10x" {
		t.Errorf("passed on %q", s)
	}
}

func TestParseForwardPorts(t *testing.T) {
	ports, err := parseForwardPorts([]string{"8080:80", ":5432", "9000"})
	if err != nil || len(ports) != 3 || ports[0] != (forwardedPort{8080, 80}) || ports[1] != (forwardedPort{0, 5432}) || ports[2] != (forwardedPort{9000, 9000}) {
		t.Errorf("ports = %v, %v", ports, err)
	}
	for _, bad := range []string{"80:0", "x:80", "1:2:3", "70000"} {
		if _, err := parseForwardPorts([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if hosts, err := listenHosts([]string{"localhost", "0.0.0.0"}); err != nil || strings.Join(hosts, ",") != "127.0.0.1,::1,0.0.0.0" {
		t.Errorf("hosts = %v, %v", hosts, err)
	}
	if _, err := listenHosts([]string{"example.com"}); err == nil {
		t.Error("a host name accepted")
	}
}
