package ociext

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
)

// DefaultMount is one line of the default mounts file: a host path
// bind-mounted read-only into every container.
type DefaultMount struct {
	Source      string `json:"source"`
	Destination string `json:"destination"`
}

// readDefaultMounts parses mounts.conf: one "src:dst" per line, both
// absolute; blank lines and lines starting with '#' are skipped. A
// missing file means no default mounts. A bad line is returned among
// the problems and skipped.
func readDefaultMounts(file string) ([]DefaultMount, []string, error) {
	if file == "" {
		return nil, nil, nil
	}
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("default mounts file: %w", err)
	}
	var out []DefaultMount
	var problems []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		src, dst, ok := strings.Cut(line, ":")
		src, dst = strings.TrimSpace(src), strings.TrimSpace(dst)
		if !ok || !filepath.IsAbs(src) || !filepath.IsAbs(dst) {
			problems = append(problems, fmt.Sprintf("%s:%d: %q is not /host/path:/container/path", file, n, line))
			continue
		}
		out = append(out, DefaultMount{Source: filepath.Clean(src), Destination: filepath.Clean(dst)})
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("default mounts file %s: %w", file, err)
	}
	return out, problems, nil
}

// addDefaultMounts bind-mounts each default mount read-only into s,
// unless s already mounts something at its destination (the request's
// own mounts win) or its source does not exist on this host.
func addDefaultMounts(s *rspec.Spec, file string, log *slog.Logger) error {
	mounts, problems, err := readDefaultMounts(file)
	if err != nil {
		return err
	}
	for _, p := range problems {
		log.Warn("default mount skipped", "problem", p)
	}
	for _, m := range mounts {
		if hasMountAt(s, m.Destination) {
			continue
		}
		if _, err := os.Stat(m.Source); err != nil {
			log.Warn("default mount skipped", "source", m.Source, "error", err)
			continue
		}
		s.Mounts = append(s.Mounts, rspec.Mount{
			Destination: m.Destination, Type: "bind", Source: m.Source,
			Options: []string{"rbind", "ro", "nosuid", "nodev", "rprivate"},
		})
	}
	return nil
}

func hasMountAt(s *rspec.Spec, dst string) bool {
	for _, m := range s.Mounts {
		if filepath.Clean(m.Destination) == dst {
			return true
		}
	}
	return false
}

// MountsReport shows the default mounts file and what it holds.
type MountsReport struct {
	File     string         `json:"file"`
	Mounts   []DefaultMount `json:"mounts"`
	Problems []string       `json:"problems,omitempty"`
}

func defaultMountsReport(file string) MountsReport {
	mounts, problems, err := readDefaultMounts(file)
	if err != nil {
		problems = append(problems, err.Error())
	}
	if mounts == nil {
		mounts = []DefaultMount{}
	}
	return MountsReport{File: file, Mounts: mounts, Problems: problems}
}
