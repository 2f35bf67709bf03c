//go:build e2enode

package e2enode

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"os"
	"sort"
	"strings"
)

// junitSuites is the part of the suite's JUnit report (its
// --report-dir/junit_01.xml) read here.
type junitSuites struct {
	Suites []struct {
		Cases []junitCase `xml:"testcase"`
	} `xml:"testsuite"`
}

type junitCase struct {
	Name    string    `xml:"name,attr"`
	Time    float64   `xml:"time,attr"`
	Failure *struct{} `xml:"failure"`
	Error   *struct{} `xml:"error"`
	Skipped *struct {
		Message string `xml:"message,attr"`
	} `xml:"skipped"`
}

// results sorts the report's specs ("[It] ...") by outcome. The report
// also lists the suite's setup and teardown nodes
// ([SynchronizedBeforeSuite] etc.): they count only when they fail (a
// failed BeforeSuite must show).
type results struct {
	Passed, Failed, Skipped []string
	// NotSelected counts the specs focus and skip left out (the report
	// lists them as skipped with the message "skipped").
	NotSelected int
	// skipReason is the skip message of specs skipped at run time (not by
	// focus/skip, which leave none).
	skipReason map[string]string
}

func readJUnit(path string) (*results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s junitSuites
	if err := xml.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	r := &results{skipReason: map[string]string{}}
	for _, suite := range s.Suites {
		for _, c := range suite.Cases {
			failed := c.Failure != nil || c.Error != nil
			if !strings.HasPrefix(c.Name, "[It] ") && !failed {
				continue
			}
			switch {
			case failed:
				r.Failed = append(r.Failed, c.Name)
			case c.Skipped != nil && c.Skipped.Message == "skipped":
				r.NotSelected++
			case c.Skipped != nil:
				r.Skipped = append(r.Skipped, c.Name)
				r.skipReason[c.Name] = c.Skipped.Message
			default:
				r.Passed = append(r.Passed, c.Name)
			}
		}
	}
	sort.Strings(r.Failed)
	return r, nil
}

// readKnown reads spec names, one a line ('#' starts a comment), whose
// failure has a documented cause. A missing path means none.
func readKnown(path string) (map[string]bool, error) {
	known := map[string]bool{}
	if path == "" {
		return known, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("known failures: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l != "" && !strings.HasPrefix(l, "#") {
			known[l] = true
		}
	}
	return known, sc.Err()
}

// unexpected are the failures not in known.
func (r *results) unexpected(known map[string]bool) []string {
	var out []string
	for _, n := range r.Failed {
		if !known[n] {
			out = append(out, n)
		}
	}
	return out
}

// table lists every non-passing spec: failures (marked when known) and
// specs skipped at run time with the reason the spec gave.
func (r *results) table(known map[string]bool) string {
	var b strings.Builder
	for _, n := range r.Failed {
		mark := "FAILED"
		if known[n] {
			mark = "FAILED (known)"
		}
		fmt.Fprintf(&b, "%-15s %s\n", mark, n)
	}
	for _, n := range r.Skipped {
		if why := r.skipReason[n]; why != "" {
			fmt.Fprintf(&b, "%-15s %s: %s\n", "SKIPPED", n, firstLine(why))
		}
	}
	return b.String()
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
