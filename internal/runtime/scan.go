package runtime

import (
	"bytes"
	"os"
	"strconv"
)

// Conmons finds the conmon processes of this node's berth: those whose
// --exit-dir is this monitor's exit dir. It returns them by their -c id.
// Recovery uses it after a crash to find conmons berth has no usable
// record of (a creation cut short) and to rebuild a torn status; it
// reads /proc once, so its cost is proportional to the node's processes,
// and it is only run when a crash left something to look for.
func (m *Monitor) Conmons() map[string]Proc {
	return FindConmons(m.cfg.ExitDir)
}

// FindConmons is Conmons for a given exit dir.
func FindConmons(exitDir string) map[string]Proc {
	out := map[string]Proc{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	self := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		id, ok := conmonID(pid, exitDir)
		if !ok {
			continue
		}
		p, err := NewProc(pid)
		if err != nil || !p.Alive() {
			continue
		}
		// The pre-daemonize launcher has the same argv; keep the real
		// conmon (the session leader after setsid) when both are seen.
		if prev, seen := out[id]; seen {
			if st, err := readStat(pid); err != nil || st.session != pid {
				continue
			}
			_ = prev
		}
		out[id] = p
	}
	return out
}

// conmonID reads /proc/<pid>/cmdline and returns the -c/--cid value of a
// conmon started with --exit-dir exitDir.
func conmonID(pid int, exitDir string) (string, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || !bytes.Contains(data, []byte(exitDir)) {
		return "", false
	}
	return parseConmonArgs(bytes.Split(bytes.TrimRight(data, "\x00"), []byte{0}), exitDir)
}

// parseConmonArgs finds the id in a conmon argv with --exit-dir exitDir.
func parseConmonArgs(args [][]byte, exitDir string) (string, bool) {
	if len(args) == 0 || !bytes.HasSuffix(args[0], []byte("conmon")) {
		return "", false
	}
	var id, dir string
	for i := 1; i < len(args); i++ {
		a := string(args[i])
		next := func() string {
			if i+1 < len(args) {
				i++
				return string(args[i])
			}
			return ""
		}
		switch {
		case a == "-c" || a == "--cid":
			id = next()
		case len(a) > 6 && a[:6] == "--cid=":
			id = a[6:]
		case a == "--exit-dir":
			dir = next()
		case len(a) > 11 && a[:11] == "--exit-dir=":
			dir = a[11:]
		}
	}
	if id == "" || dir != exitDir {
		return "", false
	}
	return id, true
}
