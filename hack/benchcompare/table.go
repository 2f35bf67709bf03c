package main

import (
	"fmt"
	"io"
	"math"
	"strings"
)

// report is what the JSON file holds.
type report struct {
	Machine string
	N, Pods int
	Columns []string
	// Results maps runtime -> row -> value (ms unless the row names
	// another unit).
	Results map[string]map[string]float64
	Floor   map[string]float64
	// Notes says why a runtime's rows are missing.
	Notes map[string]string
}

// rowOrder is the table's order; "/KIND" rows are repeated per pod kind
// and "/LEVEL" rows per density level.
func (rep report) rowOrder() []string {
	var rows []string
	perKind := []string{"RunPodSandbox", "StopPodSandbox", "RemovePodSandbox", "whole pod cycle",
		"CreateContainer", "StartContainer", "StopContainer", "RemoveContainer", "whole container cycle",
		"pod-to-running sequential", "pod-to-running 10 clients (pods/s)", "daemon CPU s per pod cycle"}
	for _, k := range podKinds {
		for _, r := range perKind {
			rows = append(rows, r+"/"+k.label)
		}
	}
	rows = append(rows, "ExecSync true", "PullImage small", "PullImage 50 MB 5 layers",
		"10 concurrent pulls, same 50 MB image", "10 concurrent pulls, 10 different images",
		"RemoveImage", "ImageStatus", "ListImages")
	for _, level := range []int{10, rep.Pods} {
		for _, r := range []string{"ListPodSandbox p50", "ListPodSandbox p99", "ListContainers p50", "ListContainers p99",
			"ListContainerStats p50", "ListContainerStats p99", "ListPodSandboxStats p50", "ListPodSandboxStats p99",
			"daemon RSS MB", "total helper RSS MB"} {
			rows = append(rows, fmt.Sprintf("%s/%d pods", r, level))
		}
	}
	return append(rows, "daemon peak RSS MB (VmHWM, whole run)", "daemon start to ready")
}

func higherIsBetter(row string) bool { return strings.Contains(row, "pods/s") }

func unit(row string) string {
	switch {
	case strings.Contains(row, "pods/s"):
		return "pods/s"
	case strings.Contains(row, "RSS MB"):
		return "MB"
	case strings.Contains(row, "CPU s"):
		return "s"
	}
	return "ms"
}

func (rep report) print(w io.Writer) {
	header := append([]string{"row"}, rep.Columns...)
	header = append(header, "berth ÷ faster containerd")
	var table [][]string
	for _, row := range rep.rowOrder() {
		name := label(row)
		if !strings.Contains(row, "(") {
			name += " (" + unit(row) + ")"
		}
		line := []string{name}
		best := math.NaN()
		for _, col := range rep.Columns {
			v, ok := rep.Results[col][row]
			if !ok {
				line = append(line, "n/a")
				continue
			}
			line = append(line, format(v))
			if strings.HasPrefix(col, "containerd") {
				if math.IsNaN(best) || (higherIsBetter(row) && v > best) || (!higherIsBetter(row) && v < best) {
					best = v
				}
			}
		}
		ratio := "n/a"
		if b, ok := rep.Results["berth"][row]; ok && !math.IsNaN(best) && best > 0 {
			ratio = fmt.Sprintf("%.2f", b/best)
		}
		table = append(table, append(line, ratio))
	}
	printTable(w, header, table)
	fmt.Fprintln(w)
	for _, row := range []string{"floor: runc create+start+kill+delete", "floor: CNI ADD+DEL"} {
		v, ok := rep.Floor[row]
		if !ok {
			fmt.Fprintf(w, "%s: n/a\n", row)
			continue
		}
		fmt.Fprintf(w, "%s: %s ms", row, format(v))
		for _, kind := range podKinds {
			key := "whole container cycle/" + kind.label
			if strings.Contains(row, "CNI") {
				key = "whole pod cycle/" + kind.label
			}
			if b, ok := rep.Results["berth"][key]; ok && v > 0 {
				fmt.Fprintf(w, "; berth %s ÷ floor = %.2f", label(key), b/v)
			}
		}
		fmt.Fprintln(w)
	}
	for col, note := range rep.Notes {
		fmt.Fprintf(w, "%s: %s\n", col, note)
	}
}

// label shows a row key "NAME/KIND" as "NAME · KIND" (NAME may hold a
// slash, as in pods/s).
func label(row string) string {
	i := strings.LastIndex(row, "/")
	if i < 0 || strings.HasSuffix(row[:i+2], "pods/s") {
		return row
	}
	return row[:i] + " · " + row[i+1:]
}

func format(v float64) string {
	if v != 0 && math.Abs(v) < 0.1 {
		return fmt.Sprintf("%.3f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func printTable(w io.Writer, header []string, rows [][]string) {
	widths := make([]int, len(header))
	for _, r := range append([][]string{header}, rows...) {
		for i, c := range r {
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	line := func(r []string) {
		for i, c := range r {
			fmt.Fprintf(w, "| %s%s ", c, strings.Repeat(" ", widths[i]-len([]rune(c))))
		}
		fmt.Fprintln(w, "|")
	}
	line(header)
	sep := make([]string, len(header))
	for i := range sep {
		sep[i] = strings.Repeat("-", widths[i])
	}
	line(sep)
	for _, r := range rows {
		line(r)
	}
}
