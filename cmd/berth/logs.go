package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// logOptions are the options of logs.
type logOptions struct {
	follow, timestamps bool
	previous, reopen   bool
	reverse            bool
	tail               int
	since              string
	sinceTime          time.Time
	poll               time.Duration
}

func logsCommand(g *globals) *cobra.Command {
	o := &logOptions{poll: 100 * time.Millisecond}
	cmd := &cobra.Command{
		Use:   "logs [flags] CONTAINER",
		Short: "Print a container's log",
		Long: `Print a container's log from the CRI log file the runtime writes. With
--follow it keeps printing as the container writes, across log rotation
(ReopenContainerLog), until the container exits. --previous prints the log
of the container's previous attempt (the one the kubelet restarted).

As in crictl, -r is --reopen here; the runtime endpoint is still
--runtime-endpoint.`,
		Example: `  berth logs 9c1e
  berth logs -f --tail 20 web
  berth logs -t --since 10m web
  berth logs --since 2024-01-02T15:04:05Z web
  berth logs -p web
  berth logs --reverse --tail 5 web
  berth logs -r web`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if o.sinceTime, err = parseSince(o.since, time.Now()); err != nil {
				return err
			}
			if o.reverse && o.follow {
				return errors.New("--reverse and --follow cannot be used together")
			}
			return g.withClient(func(c *client) error {
				st, err := c.containerStatus(args[0], false)
				if err != nil {
					return err
				}
				path := st.GetStatus().GetLogPath()
				if path == "" {
					return fmt.Errorf("container %s has no log file (its pod config sets no log_directory)", args[0])
				}
				id := st.GetStatus().GetId()
				if o.reopen {
					if _, err := call(c, "reopen the log of "+id, c.runtime.ReopenContainerLog, &runtimeapi.ReopenContainerLogRequest{ContainerId: id}); err != nil {
						return err
					}
				}
				if o.previous {
					if path, err = c.previousLogPath(st.GetStatus()); err != nil {
						return err
					}
					// The previous attempt has exited: its log ends here.
					return readLog(path, o, cmd.OutOrStdout(), cmd.ErrOrStderr(), func() bool { return false })
				}
				running := func() bool {
					s, err := call(c, "container status of "+id, c.runtime.ContainerStatus, &runtimeapi.ContainerStatusRequest{ContainerId: id})
					return err == nil && s.GetStatus().GetState() == runtimeapi.ContainerState_CONTAINER_RUNNING
				}
				return readLog(path, o, cmd.OutOrStdout(), cmd.ErrOrStderr(), running)
			})
		},
		ValidArgsFunction: completeContainers(g),
	}
	f := cmd.Flags()
	f.BoolVarP(&o.follow, "follow", "f", false, "keep printing new output until the container exits")
	f.IntVar(&o.tail, "tail", -1, "print only the last N lines (-1: all)")
	f.StringVar(&o.since, "since", "", "print only lines since a time (RFC 3339) or a duration ago (e.g. 5m)")
	f.BoolVarP(&o.timestamps, "timestamps", "t", false, "prefix each line with its timestamp")
	f.BoolVarP(&o.previous, "previous", "p", false, "print the log of the container's previous attempt")
	f.BoolVar(&o.reverse, "reverse", false, "print the newest lines first (not with --follow)")
	f.BoolVarP(&o.reopen, "reopen", "r", false, "ask the runtime to reopen the log file first (ReopenContainerLog), as after a rotation")
	localGlobal(cmd, g.flags, "runtime-endpoint")
	return cmd
}

// previousLogPath finds the log of the attempt before a container's: the
// log path of the same pod's container of that name and attempt, or,
// once that container is removed, the kubelet's layout beside the
// current log (<dir>/<attempt>.log), as crictl looks for it.
func (c *client) previousLogPath(st *runtimeapi.ContainerStatus) (string, error) {
	md := st.GetMetadata()
	if md.GetAttempt() == 0 {
		return "", fmt.Errorf("container %s has no previous attempt (its attempt is 0)", md.GetName())
	}
	list, err := call(c, "list containers", c.listContainersRPC, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return "", err
	}
	podID := ""
	for _, ctr := range list.Containers {
		if ctr.Id == st.Id {
			podID = ctr.PodSandboxId
		}
	}
	for _, ctr := range list.Containers {
		if ctr.PodSandboxId != podID || ctr.GetMetadata().GetName() != md.GetName() || ctr.GetMetadata().GetAttempt() != md.GetAttempt()-1 {
			continue
		}
		prev, err := call(c, "container status of "+ctr.Id, c.runtime.ContainerStatus, &runtimeapi.ContainerStatusRequest{ContainerId: ctr.Id})
		if err != nil {
			return "", err
		}
		if p := prev.GetStatus().GetLogPath(); p != "" {
			return p, nil
		}
	}
	path := filepath.Join(filepath.Dir(st.LogPath), fmt.Sprintf("%d%s", md.GetAttempt()-1, filepath.Ext(st.LogPath)))
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("no log of attempt %d of container %s: %w", md.GetAttempt()-1, md.GetName(), err)
	}
	return path, nil
}

// parseSince reads --since: an RFC 3339 time or a duration before now.
func parseSince(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(v); err == nil {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--since %q: want a duration such as 10m or a time such as 2024-01-02T15:04:05Z", v)
}

// logEntry is one whole line of a container's output.
type logEntry struct {
	ts     time.Time
	stream string
	text   string
}

// logParser joins the CRI log format's partial ("P") lines into whole ones.
type logParser struct {
	pending *logEntry
}

// parse takes one line of the log file (without its newline) and returns
// a whole entry when the line completes one.
func (p *logParser) parse(line string) (logEntry, bool, error) {
	// <RFC3339Nano> <stdout|stderr> <P|F[:...]> <text>
	parts := strings.SplitN(line, " ", 4)
	if len(parts) < 3 {
		return logEntry{}, false, fmt.Errorf("malformed log line %q", line)
	}
	ts, err := time.Parse(time.RFC3339Nano, parts[0])
	if err != nil {
		return logEntry{}, false, fmt.Errorf("malformed log timestamp %q", parts[0])
	}
	text := ""
	if len(parts) == 4 {
		text = parts[3]
	}
	tag, _, _ := strings.Cut(parts[2], ":")
	if p.pending == nil {
		p.pending = &logEntry{ts: ts, stream: parts[1]}
	}
	p.pending.text += text
	if tag == "P" {
		return logEntry{}, false, nil
	}
	e := *p.pending
	p.pending = nil
	return e, true, nil
}

// logPrinter writes entries to stdout or stderr by stream.
type logPrinter struct {
	o              *logOptions
	stdout, stderr io.Writer
}

// logTimestamp is how `logs -t` prints a line's time: always nine
// fractional digits, as the kubelet's log reader (and so crictl) does,
// where RFC3339Nano would drop trailing zeros.
const logTimestamp = "2006-01-02T15:04:05.000000000Z07:00"

func (lp *logPrinter) print(e logEntry) {
	if !lp.o.sinceTime.IsZero() && e.ts.Before(lp.o.sinceTime) {
		return
	}
	w := lp.stdout
	if e.stream == "stderr" {
		w = lp.stderr
	}
	if lp.o.timestamps {
		fmt.Fprintf(w, "%s %s\n", e.ts.Format(logTimestamp), e.text)
		return
	}
	fmt.Fprintln(w, e.text)
}

// logFile is an open log file read line by line; a line not yet ended by
// a newline is kept until it is.
type logFile struct {
	f       *os.File
	info    os.FileInfo
	r       *bufio.Reader
	partial string
}

func openLog(path string) (*logFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open container log: %w", err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat container log: %w", err)
	}
	return &logFile{f: f, info: info, r: bufio.NewReaderSize(f, 64<<10)}, nil
}

// drain reads every whole line now in the file, handing each to fn; it
// reports whether it read anything.
func (l *logFile) drain(fn func(string) error) (bool, error) {
	read := false
	for {
		chunk, err := l.r.ReadString('\n')
		if chunk != "" {
			read = true
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return read, fmt.Errorf("read container log: %w", err)
		}
		if !strings.HasSuffix(chunk, "\n") {
			l.partial += chunk
			return read, nil
		}
		line := strings.TrimSuffix(l.partial+chunk, "\n")
		l.partial = ""
		if line == "" {
			continue
		}
		if err := fn(line); err != nil {
			return read, err
		}
	}
}

// readLog prints the log at path per the options. When following, it
// checks every poll interval for new lines and for rotation (a new file
// at the path), and stops once the container is no longer running and
// the file holds nothing more.
func readLog(path string, o *logOptions, stdout, stderr io.Writer, running func() bool) error {
	lf, err := openLog(path)
	if err != nil {
		return err
	}
	defer func() { lf.f.Close() }()
	printer := &logPrinter{o: o, stdout: stdout, stderr: stderr}
	parser := &logParser{}
	var ring []logEntry
	keepAll := o.reverse && o.tail < 0
	emit := func(line string) error {
		e, whole, err := parser.parse(line)
		if err != nil || !whole {
			return nil // a malformed line is skipped, as the kubelet does
		}
		if keepAll {
			ring = append(ring, e)
			return nil
		}
		if o.tail < 0 {
			printer.print(e)
			return nil
		}
		if o.tail > 0 {
			ring = append(ring, e)
			if len(ring) > o.tail {
				ring = ring[1:]
			}
		}
		return nil
	}
	if _, err := lf.drain(emit); err != nil {
		return err
	}
	if o.reverse {
		slices.Reverse(ring)
	}
	for _, e := range ring {
		printer.print(e)
	}
	if !o.follow {
		return nil
	}
	o.tail = -1 // from here on, print every line
	idle := time.Now()
	for {
		read, err := lf.drain(emit)
		if err != nil {
			return err
		}
		if read {
			idle = time.Now()
			continue
		}
		if st, err := os.Stat(path); err == nil && !os.SameFile(st, lf.info) {
			// Rotated: finish the old file, then read the new one from its start.
			if _, err := lf.drain(emit); err != nil {
				return err
			}
			next, err := openLog(path)
			if err != nil {
				return err
			}
			lf.f.Close()
			lf = next
			continue
		}
		if time.Since(idle) >= 5*o.poll {
			if !running() {
				_, err := lf.drain(emit)
				return err
			}
			idle = time.Now()
		}
		time.Sleep(o.poll)
	}
}
