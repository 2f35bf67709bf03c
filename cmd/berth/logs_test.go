package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// criLine formats one line of the CRI log format.
func criLine(ts time.Time, stream, tag, text string) string {
	return fmt.Sprintf("%s %s %s %s\n", ts.Format(time.RFC3339Nano), stream, tag, text)
}

func TestLogParser(t *testing.T) {
	p := &logParser{}
	ts := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, whole, err := p.parse(strings.TrimSuffix(criLine(ts, "stdout", "P", "hel"), "\n")); whole || err != nil {
		t.Fatalf("partial line: whole=%v err=%v", whole, err)
	}
	e, whole, err := p.parse(strings.TrimSuffix(criLine(ts.Add(time.Second), "stdout", "F", "lo world"), "\n"))
	if !whole || err != nil || e.text != "hello world" || !e.ts.Equal(ts) || e.stream != "stdout" {
		t.Fatalf("joined: %+v %v %v", e, whole, err)
	}
	if e, whole, _ := p.parse(ts.Format(time.RFC3339Nano) + " stderr F"); !whole || e.text != "" {
		t.Fatalf("empty line: %+v", e)
	}
	if _, _, err := p.parse("garbage"); err == nil {
		t.Fatal("garbage parsed")
	}
}

// safeBuffer is a bytes.Buffer safe for one writer and one reader.
type safeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestReadLogTailSinceTimestamps(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "0.log")
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var content string
	for i := range 5 {
		stream := "stdout"
		if i == 3 {
			stream = "stderr"
		}
		content += criLine(base.Add(time.Duration(i)*time.Minute), stream, "F", fmt.Sprintf("line %d", i))
	}
	if err := os.WriteFile(path, []byte(content+"not a log line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	never := func() bool { return false }
	for _, tc := range []struct {
		opts           logOptions
		stdout, stderr string
	}{
		{logOptions{tail: -1}, "line 0\nline 1\nline 2\nline 4\n", "line 3\n"},
		{logOptions{tail: 2}, "line 4\n", "line 3\n"},
		{logOptions{tail: 0}, "", ""},
		{logOptions{tail: -1, sinceTime: base.Add(150 * time.Second)}, "line 4\n", "line 3\n"},
		{logOptions{tail: 1, timestamps: true}, "2025-01-01T00:04:00.000000000Z line 4\n", ""},
	} {
		var out, errOut bytes.Buffer
		o := tc.opts
		if err := readLog(path, &o, &out, &errOut, never); err != nil {
			t.Fatal(err)
		}
		if out.String() != tc.stdout || errOut.String() != tc.stderr {
			t.Errorf("%+v: stdout %q stderr %q; want %q %q", tc.opts, out.String(), errOut.String(), tc.stdout, tc.stderr)
		}
	}
}

// TestReadLogFollowRotation follows a log while it is written to, renamed
// away and recreated (what ReopenContainerLog does), and stops once the
// container is no longer running.
func TestReadLogFollowRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "0.log")
	now := time.Now()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(f, criLine(now, "stdout", "F", "before"))
	var running atomic.Bool
	running.Store(true)
	out := &safeBuffer{}
	done := make(chan error, 1)
	go func() {
		o := &logOptions{follow: true, tail: -1, poll: 10 * time.Millisecond}
		done <- readLog(path, o, out, out, running.Load)
	}()
	waitFor := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(out.String(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("never saw %q; output %q", want, out.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor("before\n")
	// A line written in two writes is printed once whole.
	line := criLine(now, "stdout", "F", "split")
	fmt.Fprint(f, line[:len(line)-4])
	time.Sleep(30 * time.Millisecond)
	fmt.Fprint(f, line[len(line)-4:])
	waitFor("split\n")
	// Rotate: rename, keep writing to the old file, then reopen.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(f, criLine(now, "stdout", "F", "old file after rename"))
	f.Close()
	time.Sleep(30 * time.Millisecond)
	if err := os.WriteFile(path, []byte(criLine(now, "stdout", "F", "new file")), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor("new file\n")
	running.Store(false)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follow did not stop after the container exited")
	}
	if got := out.String(); got != "before\nsplit\nold file after rename\nnew file\n" {
		t.Errorf("output %q", got)
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	if got, err := parseSince("10m", now); err != nil || !got.Equal(now.Add(-10*time.Minute)) {
		t.Errorf("10m: %v %v", got, err)
	}
	if got, err := parseSince("2025-01-01T11:00:00Z", now); err != nil || got.Hour() != 11 {
		t.Errorf("rfc3339: %v %v", got, err)
	}
	if _, err := parseSince("yesterday", now); err == nil {
		t.Error("yesterday accepted")
	}
}

// TestLogTimestampsKeepNineDigits: `logs -t` prints nine fractional
// digits even when the last ones are zeros, as crictl does.
func TestLogTimestampsKeepNineDigits(t *testing.T) {
	var out bytes.Buffer
	lp := &logPrinter{o: &logOptions{timestamps: true}, stdout: &out, stderr: &out}
	lp.print(logEntry{ts: time.Date(2026, 12, 3, 14, 20, 35, 993141850, time.UTC), stream: "stdout", text: "x"})
	if want := "2026-12-03T14:20:35.993141850Z x\n"; out.String() != want {
		t.Fatalf("got %q, want %q", out.String(), want)
	}
}
