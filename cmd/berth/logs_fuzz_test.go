package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeCRILog writes text as conmon does: lines of at most chunk bytes,
// all but the last of each line tagged P (partial), the last F.
func writeCRILog(ts time.Time, stream, text string, chunk int) string {
	var b strings.Builder
	for _, line := range strings.Split(text, "\n") {
		for len(line) > chunk {
			fmt.Fprintf(&b, "%s %s P %s\n", ts.Format(time.RFC3339Nano), stream, line[:chunk])
			line = line[chunk:]
		}
		fmt.Fprintf(&b, "%s %s F %s\n", ts.Format(time.RFC3339Nano), stream, line)
	}
	return b.String()
}

// FuzzCRILog writes text in the CRI log format (as conmon does, cut into
// partial lines) followed by arbitrary bytes, and reads it back with
// `berth logs`' reader, with and without --tail. The reader must never
// panic, must give back exactly the text written before the garbage,
// and must skip malformed lines rather than fail.
func FuzzCRILog(f *testing.F) {
	f.Add("hello\nworld", uint8(3), false, "")
	f.Add("", uint8(1), true, "not a log line\n2024-13-45T99:99:99Z stdout F x\n")
	f.Add("a b  c", uint8(0), false, "2024-01-01T00:00:00Z stdout P\n2024-01-01T00:00:00Z stdout")
	f.Add(strings.Repeat("x", 300), uint8(17), true, "2024-01-01T00:00:00.000000000+00:00 stderr F:extra y\n")
	dir := f.TempDir()
	ts := time.Date(2024, 1, 1, 0, 0, 0, 123, time.UTC)
	f.Fuzz(func(t *testing.T, text string, chunk uint8, stderr bool, garbage string) {
		text = strings.ReplaceAll(text, "\r", "")
		stream := "stdout"
		if stderr {
			stream = "stderr"
		}
		path := filepath.Join(dir, "ctr.log")
		content := writeCRILog(ts, stream, text, int(chunk)+1)
		if err := os.WriteFile(path, []byte(content+"\n"+garbage), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, tail := range []int{-1, 1} {
			var out, errOut bytes.Buffer
			if err := readLog(path, &logOptions{tail: tail}, &out, &errOut, func() bool { return false }); err != nil {
				t.Fatalf("readLog: %v", err)
			}
			got := out.String()
			if stderr {
				got = errOut.String()
			}
			if tail < 0 && garbage == "" && got != text+"\n" {
				t.Fatalf("read back %q, wrote %q", got, text)
			}
		}
	})
}
