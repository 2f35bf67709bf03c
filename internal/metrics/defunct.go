package metrics

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
)

// DefunctProcesses counts the zombie processes under procRoot (/proc):
// exited, but not yet waited for by their parent.
func DefunctProcesses(procRoot string) (int, error) {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return 0, fmt.Errorf("list processes: %w", err)
	}
	n := 0
	for _, e := range ents {
		name := e.Name()
		if name == "" || name[0] < '0' || name[0] > '9' {
			continue
		}
		b, err := os.ReadFile(filepath.Join(procRoot, name, "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		if processState(b) == 'Z' {
			n++
		}
	}
	return n, nil
}

// processState is the state letter of a /proc/PID/stat line: the first
// field after the command, which sits in parentheses and may itself
// contain spaces and parentheses.
func processState(stat []byte) byte {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return 0
	}
	return stat[i+2]
}
