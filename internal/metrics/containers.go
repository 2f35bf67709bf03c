package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// ContainerStates are the CRI container states, as the state label of
// berth_containers spells them; each is reported, 0 when none is in it.
var ContainerStates = []string{"created", "running", "exited", "unknown"}

// containersDesc describes berth_containers{state}.
var containersDesc = prometheus.NewDesc(Prefix+"containers",
	"Containers berth holds, by CRI state (created, running, exited, unknown).", []string{"state"}, nil)

// containersByState is a collector reading the counts at scrape time, so
// that nothing is kept up to date between scrapes.
type containersByState struct{ count func() map[string]int }

func (c containersByState) Describe(ch chan<- *prometheus.Desc) { ch <- containersDesc }

func (c containersByState) Collect(ch chan<- prometheus.Metric) {
	counts := c.count()
	for _, s := range ContainerStates {
		ch <- prometheus.MustNewConstMetric(containersDesc, prometheus.GaugeValue, float64(counts[s]), s)
	}
}

// CountContainersByState registers berth_containers{state}, read from
// count (state -> containers, keys from ContainerStates) at each scrape.
// Call it once, at start-up.
func (m *Metrics) CountContainersByState(count func() map[string]int) {
	if m != nil {
		m.reg.MustRegister(containersByState{count})
	}
}
