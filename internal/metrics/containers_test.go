package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Every state is reported, read afresh at each scrape.
func TestContainersByState(t *testing.T) {
	m := New()
	counts := map[string]int{"running": 2, "exited": 1}
	m.CountContainersByState(func() map[string]int { return counts })
	want := func(created, running, exited, unknown string) string {
		return `# HELP berth_containers Containers berth holds, by CRI state (created, running, exited, unknown).
# TYPE berth_containers gauge
berth_containers{state="created"} ` + created + `
berth_containers{state="exited"} ` + exited + `
berth_containers{state="running"} ` + running + `
berth_containers{state="unknown"} ` + unknown + "\n"
	}
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want("0", "2", "1", "0")), "berth_containers"); err != nil {
		t.Fatal(err)
	}
	counts = map[string]int{"created": 1}
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want("1", "0", "0", "0")), "berth_containers"); err != nil {
		t.Fatal(err)
	}
}
